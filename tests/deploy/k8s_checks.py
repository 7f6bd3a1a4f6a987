"""Checks of Kubernetes manifests: the API's OpenAPI schemas, then what they can't see.

``schema_errors`` validates one resource against the schemas ``kubernetes-validate`` ships
(so this runs offline; its own ``validate`` reloads them per call, hence the cache here), in
strict mode, so a misspelt field is an error rather than
silently dropped. ``semantic_problems`` looks across all resources at once: every container
has probes and limits, selectors match pod labels, and every ConfigMap, Secret and Service a
pod names exists (with the key or port it asks for).

Every function returns a list of human-readable problems; an empty list means clean.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from kubernetes_validate import utils as kv
from referencing import Registry, Resource

KUBERNETES_VERSION = "1.37"  # the newest release whose schemas kubernetes-validate ships here

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")
_HOST_PORT = re.compile(r"(?:^|[/@])(?P<host>[a-z0-9]([-a-z0-9]*[a-z0-9])?)(?:\.[-a-z0-9.]+)?:(?P<port>\d+)")


def load(paths: Iterable[Path]) -> list[tuple[str, dict[str, Any]]]:
    """(where, resource) for every document in the files, where = 'file#index kind/name'."""
    out = []
    for path in paths:
        for i, doc in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8"))):
            if doc is None:
                continue
            kind = doc.get("kind", "?")
            name = (doc.get("metadata") or {}).get("name", "?")
            out.append((f"{path.name}#{i} {kind}/{name}", doc))
    return out


@cache
def _validator(kind: str, api_version: str, version: str) -> Any:
    """kubernetes-validate's strict validator for one kind, built once (its schemas are large)."""
    version = [v for v in kv.all_versions() if kv.major_minor(v) <= kv.major_minor(version)][-1]
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)  # apps/v1 -> apps-v1
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    schema = kv.schema_contents(f"{folder}/{kind.lower()}-{group}.json", version)
    definitions = kv.schema_contents(f"{folder}/_definitions.json", version)
    registry: Registry[Any] = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(definitions) @ registry
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def schema_errors(resource: dict[str, Any], version: str = KUBERNETES_VERSION) -> list[str]:
    """Violations of the Kubernetes schema for the resource's kind and apiVersion."""
    try:
        validator = _validator(resource["kind"], resource["apiVersion"], version)
    except FileNotFoundError:
        return [f"no schema for {resource['kind']} {resource['apiVersion']} in Kubernetes {version}"]
    errors = sorted(validator.iter_errors(resource), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{'.'.join(map(str, e.absolute_path)) or '$'}: {e.message}" for e in errors]


def pod_template(resource: dict[str, Any]) -> dict[str, Any] | None:
    if resource.get("kind") not in WORKLOADS:
        return None
    return (resource.get("spec") or {}).get("template")


def containers(pod_spec: dict[str, Any], *, init: bool = False) -> Iterator[dict[str, Any]]:
    yield from pod_spec.get("containers") or []
    if init:
        yield from pod_spec.get("initContainers") or []


def semantic_problems(resources: list[tuple[str, dict[str, Any]]]) -> list[str]:
    problems: list[str] = []
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for _, res in resources:
        by_kind.setdefault(res["kind"], {})[res["metadata"]["name"]] = res

    # The pods each workload makes: (workload name, labels, pod spec).
    pods = []
    for where, res in resources:
        template = pod_template(res)
        if template is None:
            continue
        labels = (template.get("metadata") or {}).get("labels") or {}
        spec = template.get("spec") or {}
        pods.append((res["metadata"]["name"], labels, spec))
        problems += _workload_problems(where, res, labels, spec)
        claims = {t["metadata"]["name"] for t in res["spec"].get("volumeClaimTemplates") or []}
        problems += _reference_problems(where, spec, by_kind, claims)

    for where, res in resources:
        kind = res["kind"]
        if kind == "Service":
            problems += _service_problems(where, res, pods)
        elif kind == "PodDisruptionBudget":
            selector = (res["spec"].get("selector") or {}).get("matchLabels") or {}
            if not any(_matches(selector, labels) for _, labels, _ in pods):
                problems.append(f"{where}: selector {selector} matches no pod template")
        elif kind == "HorizontalPodAutoscaler":
            problems += _hpa_problems(where, res, by_kind)
        elif kind in ("ConfigMap", "Secret"):
            data = {**(res.get("data") or {}), **(res.get("stringData") or {})}
            if kind == "Secret":
                data = dict(res.get("stringData") or {})  # `data` is base64: nothing to read
            for key, text in data.items():
                problems += _host_problems(f"{where} data.{key}", str(text), by_kind)
        elif kind == "StatefulSet":
            name = res["spec"].get("serviceName")
            if name and name not in by_kind.get("Service", {}):
                problems.append(f"{where}: serviceName {name!r} is not a Service in the manifests")
    return problems


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _workload_problems(where: str, res: dict[str, Any], labels: dict[str, str], spec: dict[str, Any]) -> list[str]:
    problems = []
    selector = (res["spec"].get("selector") or {}).get("matchLabels") or {}
    if res["kind"] != "Job" and not _matches(selector, labels):
        problems.append(f"{where}: spec.selector {selector} does not match the pod labels {labels}")
    for c in containers(spec, init=True):
        cw = f"{where} container {c.get('name')}"
        is_init = c in (spec.get("initContainers") or [])
        if not is_init and res["kind"] != "Job":
            for probe in ("livenessProbe", "readinessProbe"):
                if not c.get(probe):
                    problems.append(f"{cw}: no {probe}")
                else:
                    problems += _probe_port_problems(cw, probe, c)
        resources = c.get("resources") or {}
        for section in ("requests", "limits"):
            for unit in ("cpu", "memory"):
                if unit not in (resources.get(section) or {}):
                    problems.append(f"{cw}: no resources.{section}.{unit}")
    return problems


def _probe_port_problems(where: str, probe: str, container: dict[str, Any]) -> list[str]:
    spec = container[probe]
    action = spec.get("httpGet") or spec.get("tcpSocket") or spec.get("grpc")
    if not action:
        return []
    port = action.get("port")
    named = {p.get("name") for p in container.get("ports") or []}
    numbered = {p.get("containerPort") for p in container.get("ports") or []}
    if isinstance(port, str) and port not in named:
        return [f"{where}: {probe} names port {port!r}, which the container does not declare"]
    if isinstance(port, int) and port not in numbered:
        return [f"{where}: {probe} probes port {port}, which the container does not declare"]
    return []


def _reference_problems(
    where: str, spec: dict[str, Any], by_kind: dict[str, dict[str, Any]], claims: set[str]
) -> list[str]:
    problems: list[str] = []

    def need(kind: str, name: str, key: str | None, what: str, optional: bool = False) -> None:
        if optional:
            return
        res = by_kind.get(kind, {}).get(name)
        if res is None:
            problems.append(f"{where} {what}: no {kind} named {name!r} in the manifests")
            return
        if key is not None:
            data = {**(res.get("data") or {}), **(res.get("stringData") or {}), **(res.get("binaryData") or {})}
            if key not in data:
                problems.append(f"{where} {what}: {kind} {name!r} has no key {key!r}")

    for vol in spec.get("volumes") or []:
        if "configMap" in vol:
            cm = vol["configMap"]
            need("ConfigMap", cm["name"], None, f"volume {vol['name']}", cm.get("optional", False))
            for item in cm.get("items") or []:
                need("ConfigMap", cm["name"], item["key"], f"volume {vol['name']}", cm.get("optional", False))
        if "secret" in vol:
            sec = vol["secret"]
            need("Secret", sec["secretName"], None, f"volume {vol['name']}", sec.get("optional", False))
    volume_names = {v["name"] for v in spec.get("volumes") or []} | claims  # StatefulSet PVCs

    for c in containers(spec, init=True):
        cw = f"container {c.get('name')}"
        for mount in c.get("volumeMounts") or []:
            if mount["name"] not in volume_names:
                problems.append(f"{where} {cw}: mounts volume {mount['name']!r}, which the pod does not define")
        for env in c.get("env") or []:
            src = env.get("valueFrom") or {}
            if "configMapKeyRef" in src:
                r = src["configMapKeyRef"]
                need("ConfigMap", r["name"], r["key"], f"{cw} env {env['name']}", r.get("optional", False))
            if "secretKeyRef" in src:
                r = src["secretKeyRef"]
                need("Secret", r["name"], r["key"], f"{cw} env {env['name']}", r.get("optional", False))
            if "value" in env:
                problems += _host_problems(f"{where} {cw} env {env['name']}", str(env["value"]), by_kind)
        for env_from in c.get("envFrom") or []:
            if "configMapRef" in env_from:
                r = env_from["configMapRef"]
                need("ConfigMap", r["name"], None, f"{cw} envFrom", r.get("optional", False))
            if "secretRef" in env_from:
                r = env_from["secretRef"]
                need("Secret", r["name"], None, f"{cw} envFrom", r.get("optional", False))
    return problems


def _host_problems(where: str, text: str, by_kind: dict[str, dict[str, Any]]) -> list[str]:
    """Every in-cluster 'host:port' in a value must be a Service of these manifests with that port.

    A host is in-cluster when it is a bare name or a '<name>.<namespace>.svc...' name; anything
    with a public-looking domain (or loopback) is left alone.
    """
    problems = []
    services = by_kind.get("Service", {})
    for m in _HOST_PORT.finditer(text):
        full = text[m.start("host") : m.start("port") - 1]
        host, port = m.group("host"), int(m.group("port"))
        if host in ("localhost",) or (full != host and ".svc" not in full):
            continue
        if host.isdigit():
            continue
        svc = services.get(host)
        if svc is None:
            problems.append(f"{where}: refers to {full}:{port} but there is no Service named {host!r}")
            continue
        ports = {p["port"] for p in svc["spec"].get("ports") or []}
        if port not in ports:
            problems.append(f"{where}: Service {host!r} has no port {port} (it has {sorted(ports)})")
    return problems


def _service_problems(where: str, svc: dict[str, Any], pods: list[tuple[str, dict[str, str], dict[str, Any]]]) -> list[str]:
    selector = svc["spec"].get("selector") or {}
    matched = [(name, spec) for name, labels, spec in pods if _matches(selector, labels)]
    if not matched:
        return [f"{where}: selector {selector} matches no pod template"]
    problems = []
    for port in svc["spec"].get("ports") or []:
        target = port.get("targetPort", port["port"])
        for name, spec in matched:
            declared = [p for c in containers(spec) for p in c.get("ports") or []]
            if isinstance(target, str):
                ok = any(p.get("name") == target for p in declared)
            else:
                ok = any(p.get("containerPort") == target for p in declared)
            if not ok:
                problems.append(f"{where}: targetPort {target!r} is not a container port of {name}")
    return problems


def _hpa_problems(where: str, hpa: dict[str, Any], by_kind: dict[str, dict[str, Any]]) -> list[str]:
    ref = hpa["spec"]["scaleTargetRef"]
    target = by_kind.get(ref["kind"], {}).get(ref["name"])
    if target is None:
        return [f"{where}: scaleTargetRef {ref['kind']}/{ref['name']} is not in the manifests"]
    problems = []
    uses_cpu = any(
        (m.get("resource") or {}).get("name") == "cpu" for m in hpa["spec"].get("metrics") or []
    )
    if uses_cpu:
        for c in containers(target["spec"]["template"]["spec"]):
            if "cpu" not in ((c.get("resources") or {}).get("requests") or {}):
                problems.append(f"{where}: scales on CPU but container {c['name']} has no cpu request")
    if hpa["spec"].get("minReplicas", 1) > hpa["spec"]["maxReplicas"]:
        problems.append(f"{where}: minReplicas is above maxReplicas")
    return problems
