"""deploy/k8s: valid for the targeted Kubernetes release, self-consistent, and what the issue asks.

Validated here, never applied here: these machines have no cluster.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy import k8s_checks
from tests.deploy.conftest import K8S_DIR, by_kind

Resources = list[tuple[str, dict[str, Any]]]


def test_kustomization_lists_every_manifest_file(kustomization: dict[str, Any]) -> None:
    on_disk = {p.name for p in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk


@pytest.mark.parametrize("version", [k8s_checks.KUBERNETES_VERSION, "1.25"])
def test_every_manifest_matches_the_kubernetes_schema(manifests: Resources, version: str) -> None:
    """The targeted release, and the oldest one shipped (the README promises nothing newer)."""
    problems = [f"{where}: {p}" for where, res in manifests for p in k8s_checks.schema_errors(res, version)]
    assert problems == []


def test_semantics_the_schema_cannot_see(manifests: Resources) -> None:
    """Probes and limits everywhere, selectors match, every reference resolves."""
    assert k8s_checks.semantic_problems(manifests) == []


def test_no_resource_hardcodes_a_namespace(manifests: Resources, kustomization: dict[str, Any]) -> None:
    # kustomize sets it once; a hardcoded one would silently split the stack
    assert kustomization["namespace"] == "strangler"
    assert [w for w, r in manifests if r["kind"] != "Namespace" and "namespace" in r["metadata"]] == []


@pytest.mark.parametrize("name", ["router", "catalog"])
def test_router_and_catalog_autoscale_on_cpu(manifests: Resources, name: str) -> None:
    hpa = by_kind(manifests, "HorizontalPodAutoscaler")[name]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    assert hpa["spec"]["minReplicas"] >= 2  # never a single point of failure
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]


def test_router_has_a_disruption_budget_it_can_honour(manifests: Resources) -> None:
    pdb = by_kind(manifests, "PodDisruptionBudget")["router"]
    hpa = by_kind(manifests, "HorizontalPodAutoscaler")["router"]
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]  # else a drain never ends


def test_routes_configmap_is_mounted_so_updates_reach_the_router(manifests: Resources) -> None:
    router = by_kind(manifests, "Deployment")["router"]
    spec = router["spec"]["template"]["spec"]
    volume = next(v for v in spec["volumes"] if "configMap" in v)
    assert volume["configMap"]["name"] == "strangler-routes"
    (container,) = spec["containers"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
    # a subPath mount is a copy made at start: ConfigMap updates would never arrive
    assert "subPath" not in mount
    argv = container["command"]
    assert argv[argv.index("--config") + 1] == f"{mount['mountPath']}/routes.yaml"
    assert "routes.yaml" in by_kind(manifests, "ConfigMap")["strangler-routes"]["data"]


def test_cdc_workers_are_single_replica_recreate(manifests: Resources) -> None:
    cdc = {n: d for n, d in by_kind(manifests, "Deployment").items() if n.startswith("cdc-")}
    assert cdc
    for name, dep in cdc.items():
        assert dep["spec"]["replicas"] == 1, name
        assert dep["spec"]["strategy"] == {"type": "Recreate"}, name
        assert name not in by_kind(manifests, "HorizontalPodAutoscaler")
    text = (K8S_DIR / "cdc.yaml").read_text()
    assert "one consumer at a time" in text  # the why, for the next person tempted to scale it


def test_app_pods_run_unprivileged(manifests: Resources) -> None:
    for name in ("monolith", "catalog", "router", "cdc-catalog"):
        spec = by_kind(manifests, "Deployment")[name]["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] == 10001, name  # the image's user
        for c in spec["containers"] + spec.get("initContainers", []):
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, name
            # a read-only root needs a writable /tmp and state folder
            assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}, name


def test_router_rolls_out_without_losing_capacity(manifests: Resources) -> None:
    strategy = by_kind(manifests, "Deployment")["router"]["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


def test_postgres_is_set_up_for_logical_decoding(manifests: Resources) -> None:
    pg = by_kind(manifests, "StatefulSet")["postgres"]["spec"]["template"]["spec"]["containers"][0]
    assert "wal_level=logical" in pg["args"]
    assert "max_slot_wal_keep_size=2GB" in pg["args"]


def test_every_image_is_pinned_after_kustomize(manifests: Resources, kustomization: dict[str, Any]) -> None:
    tagged_by_kustomize = {
        i["name"] for i in kustomization.get("images", []) if i.get("newTag") or i.get("digest")
    }
    unpinned = []
    for where, res in manifests:
        template = k8s_checks.pod_template(res)
        if template is None:
            continue
        for c in k8s_checks.containers(template["spec"], init=True):
            image = c["image"]
            last = image.rsplit("/", 1)[-1]
            pinned = "@sha256:" in image or (":" in last and not last.endswith(":latest"))
            if not pinned and image not in tagged_by_kustomize:
                unpinned.append(f"{where}: {image}")
    assert unpinned == []
