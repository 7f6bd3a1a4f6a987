"""One source of truth: compose, Kubernetes and the image run what `strangler up --real` runs.

`stack/model.py` describes every process of the local stack (name, argv, port, env, readiness
path). Here it is built for a container's filesystem and compared, process by process, with
docker-compose.yml, deploy/k8s and the Dockerfile. The only differences allowed are the
ones containers need, listed below; anything else is drift and fails.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from cli.up import DEFAULT_PORTS, settings_for, stream_names
from stack.model import Process, Stack, Task, build_stack, stream_process
from tests.deploy import dockerfile_checks
from tests.deploy.conftest import DOCKERFILE, ROOT, by_kind

# Allowed differences: containers listen on every interface, not loopback...
CONTAINER_HOST = "0.0.0.0"
# ...and may add these variables: the Kafka address and the Kafka transport for streams.yaml
# (`up --real` writes `transport: kafka` into its own copy of the file instead), and a real
# Django secret key (`up` leaves the monolith on its dev-only default).
CONTAINER_ONLY_ENV = {"STRANGLER_KAFKA_BOOTSTRAP", "STRANGLER_CDC_TRANSPORT", "MONOLITH_SECRET_KEY"}
# Variables whose values differ by design: secrets, and database URLs (service names and
# passwords instead of loopback ports); for URLs the scheme and database name must agree.
SECRET_ENV = {"STRANGLER_ADMIN_TOKEN", "STRANGLER_IDENTITY_SECRET"}
URL_ENV = {"DATABASE_URL", "MONOLITH_DATABASE_URL", "CATALOG_DATABASE_URL"}
# ...and the router's addresses, whose X-Forwarded-* the services believe: loopback for `up`,
# the private network in containers (the router is not on their loopback there). Each must be
# set, parse, and name only private or loopback networks: never everyone.
TRUSTED_PROXY_ENV = {"MONOLITH_TRUSTED_PROXIES", "CATALOG_TRUSTED_PROXIES"}
# Setup tasks Kubernetes leaves out: demo data is no production step.
K8S_SKIPS = {"monolith-seed"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    """What `strangler up --real` would run (its own `settings_for`), placed in the images."""
    mp = pytest.MonkeyPatch()
    mp.setenv("STRANGLER_STATE_DIR", str(tmp_path_factory.mktemp("state")))  # up's state goes there
    try:
        settings = settings_for(
            routes=ROOT / "routes.yaml", streams=ROOT / "streams.yaml", port=DEFAULT_PORTS["router"],
            seed="small", cdc=True,
            monolith_db="postgresql://u:p@127.0.0.1:5432/monolith",
            service_dbs={"catalog": "postgresql://u:p@127.0.0.1:5432/catalog"},
        )
    finally:
        mp.undo()
    # The images' filesystem: interpreter on PATH, files where the Dockerfile puts them.
    settings = dataclasses.replace(
        settings, python="python", state=Path("/app/.strangler"),
        routes=Path("/etc/strangler/routes.yaml"), streams=Path("/app/streams.yaml"),
    )
    return build_stack(settings, mode="real")


def in_container(argv: tuple[str, ...]) -> list[str]:
    out = list(argv)
    if "--host" in out:
        out[out.index("--host") + 1] = CONTAINER_HOST
    return out


def env_problems(where: str, local: dict[str, str], container: dict[str, str]) -> list[str]:
    problems = []
    missing = set(local) - set(container)
    extra = set(container) - set(local) - CONTAINER_ONLY_ENV
    if missing:
        problems.append(f"{where}: lacks {sorted(missing)}, which `strangler up` sets")
    if extra:
        problems.append(f"{where}: sets {sorted(extra)}, which `strangler up` does not")
    for key in set(local) & set(container):
        a, b = local[key], container[key]
        if key in SECRET_ENV:
            continue
        if key in TRUSTED_PROXY_ENV:
            problems += proxy_problems(f"{where}: {key}", b)
        elif key in URL_ENV:
            a_parts, b_parts = urlsplit(a), urlsplit(b)
            if (a_parts.scheme, a_parts.path) != (b_parts.scheme, b_parts.path):
                problems.append(f"{where}: {key} is {b!r}; `strangler up` uses the {a_parts.path} database")
        elif a != b:
            problems.append(f"{where}: {key}={b!r}, `strangler up` has {a!r}")
    return problems


def proxy_problems(where: str, value: str) -> list[str]:
    try:
        networks = [ipaddress.ip_network(part.strip()) for part in value.split(",") if part.strip()]
    except ValueError as exc:
        return [f"{where}={value!r} does not parse: {exc}"]
    if not networks:
        return [f"{where} is empty: the services would believe no router"]
    public = [str(n) for n in networks if not (n.is_private or n.is_loopback)]
    return [f"{where} trusts public networks {public}"] if public else []


def url_path(url: str) -> str:
    return urlsplit(url).path


# --- docker-compose.yml -----------------------------------------------------------------


def compose_env(svc: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in (svc.get("environment") or {}).items()}


def test_compose_runs_every_process_with_the_same_command(stack: Stack, compose: dict[str, Any]) -> None:
    services = compose["services"]
    problems = []
    for proc in stack.processes:
        svc = services.get(proc.name)
        if svc is None:
            problems.append(f"compose has no service {proc.name!r}")
            continue
        if svc.get("command") != in_container(proc.argv):
            problems.append(f"{proc.name}: command {svc.get('command')} != {in_container(proc.argv)}")
    assert problems == []


def test_compose_runs_every_setup_task_once_before_its_service(stack: Stack, compose: dict[str, Any]) -> None:
    services = compose["services"]
    for task in stack.setup:
        svc = services[task.name]
        assert svc["command"] == list(task.argv), task.name
        assert svc["restart"] == "no", task.name
    migrate = stack.setup[0]
    assert services["monolith"]["depends_on"][migrate.name]["condition"] == "service_completed_successfully"


def test_compose_ports_and_readiness_match(stack: Stack, compose: dict[str, Any]) -> None:
    for proc in stack.processes:
        svc = compose["services"][proc.name]
        if proc.port is None:
            assert "expose" not in svc and "ports" not in svc, proc.name
            continue
        exposed = {int(p) for p in svc.get("expose", [])} | {
            int(str(p).rsplit(":", 1)[-1]) for p in svc.get("ports", [])
        }
        assert exposed == {proc.port}, proc.name
        url = svc["healthcheck"]["test"][-1]
        assert url == f"http://127.0.0.1:{proc.port}{proc.ready_path}", proc.name


def test_compose_environment_matches(stack: Stack, compose: dict[str, Any]) -> None:
    problems = []
    items: list[Process | Task] = [*stack.processes, *stack.setup]
    for item in items:
        svc = compose["services"][item.name]
        problems += env_problems(f"compose {item.name}", dict(item.env), compose_env(svc))
    assert problems == []


def test_compose_has_no_process_the_stack_lacks(stack: Stack, compose: dict[str, Any]) -> None:
    ours = {name for name, svc in compose["services"].items() if "build" in svc}
    known = {p.name for p in stack.processes} | {t.name for t in stack.setup}
    optional = {name for name, svc in compose["services"].items() if "traffic" in (svc.get("profiles") or [])}
    assert ours - known - optional == set()


# --- the Dockerfile ---------------------------------------------------------------------


def dockerfile_target(proc: Process) -> str:
    return "cdc" if proc.role == "stream" else proc.name


def test_image_commands_ports_and_healthchecks_match(stack: Stack) -> None:
    stages = dockerfile_checks.parse(DOCKERFILE.read_text())
    for proc in stack.processes:
        stage = stages[dockerfile_target(proc)]
        if proc.role == "stream":
            continue  # one image for every stream: see the next test
        assert stage.resolved("cmd") == in_container(proc.argv), proc.name
        assert stage.expose == [proc.port], proc.name
        healthcheck = stage.resolved("healthcheck")
        assert isinstance(healthcheck, list)
        assert healthcheck[-1] == f"http://127.0.0.1:{proc.port}{proc.ready_path}", proc.name


def test_image_cdc_default_is_a_declared_stream(stack: Stack) -> None:
    stage = dockerfile_checks.parse(DOCKERFILE.read_text())["cdc"]
    stream_argvs = [in_container(p.argv) for p in stack.processes if p.role == "stream"]
    assert stage.cmd in stream_argvs


# --- deploy/k8s -------------------------------------------------------------------------


def k8s_env(container: dict[str, Any], manifests: list[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    """The container's environment with ConfigMap/Secret references resolved."""
    configmaps, secrets = by_kind(manifests, "ConfigMap"), by_kind(manifests, "Secret")
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        src = item.get("valueFrom") or {}
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif "configMapKeyRef" in src:
            ref = src["configMapKeyRef"]
            env[item["name"]] = configmaps[ref["name"]]["data"][ref["key"]]
        elif "secretKeyRef" in src:
            ref = src["secretKeyRef"]
            env[item["name"]] = secrets[ref["name"]]["stringData"][ref["key"]]
    assert "envFrom" not in container, "envFrom hands a pod every key; reference keys one by one"
    return env


def test_k8s_runs_every_process_alike(stack: Stack, manifests: list[tuple[str, dict[str, Any]]]) -> None:
    deployments = by_kind(manifests, "Deployment")
    services = by_kind(manifests, "Service")
    problems = []
    for proc in stack.processes:
        dep = deployments.get(proc.name)
        if dep is None:
            problems.append(f"no Deployment {proc.name!r}")
            continue
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        if container["command"] != in_container(proc.argv):
            problems.append(f"{proc.name}: command {container['command']} != {in_container(proc.argv)}")
        problems += env_problems(f"k8s {proc.name}", dict(proc.env), k8s_env(container, manifests))
        if proc.port is None:
            continue
        ports = [p["containerPort"] for p in container.get("ports") or []]
        if ports != [proc.port]:
            problems.append(f"{proc.name}: container ports {ports} != [{proc.port}]")
        if container["readinessProbe"]["httpGet"]["path"] != proc.ready_path:
            problems.append(f"{proc.name}: readiness path != {proc.ready_path}")
        svc = services.get(proc.name)
        if svc is None or [p["port"] for p in svc["spec"]["ports"]] != [proc.port]:
            problems.append(f"{proc.name}: needs a Service {proc.name!r} on port {proc.port}")
    assert problems == []


def test_k8s_runs_setup_tasks_as_init_containers(stack: Stack, manifests: list[tuple[str, dict[str, Any]]]) -> None:
    inits: dict[str, dict[str, Any]] = {}
    for dep in by_kind(manifests, "Deployment").values():
        for c in dep["spec"]["template"]["spec"].get("initContainers") or []:
            inits[c["name"]] = c
    problems = []
    for task in stack.setup:
        if task.name in K8S_SKIPS:
            continue
        c = inits.get(task.name)
        if c is None:
            problems.append(f"no init container {task.name!r}")
            continue
        if c["command"] != list(task.argv):
            problems.append(f"{task.name}: command {c['command']} != {list(task.argv)}")
        problems += env_problems(f"k8s init {task.name}", dict(task.env), k8s_env(c, manifests))
    assert problems == []


def test_the_stack_builder_is_what_this_test_thinks(stack: Stack) -> None:
    """Guard: if stack/model.py grows a process kind, this file must learn it."""
    assert {p.role for p in stack.processes} <= {"service", "router", "stream"}
    assert all(isinstance(t, Task) for t in stack.setup)
    assert [p.name for p in stack.processes if p.role == "stream"] == [
        stream_process(s) for s in stream_names(ROOT / "streams.yaml")
    ]


def test_each_cdc_worker_probes_its_own_stream(
    stack: Stack, compose: dict[str, Any], manifests: list[tuple[str, dict[str, Any]]]
) -> None:
    """A probe naming another stream would keep a dead worker 'healthy'."""
    deployments = by_kind(manifests, "Deployment")
    for proc in stack.processes:
        if proc.role != "stream":
            continue
        stream = proc.argv[-1]
        assert compose["services"][proc.name]["healthcheck"]["test"][-1] == stream, proc.name
        (container,) = deployments[proc.name]["spec"]["template"]["spec"]["containers"]
        for probe in ("livenessProbe", "readinessProbe"):
            assert container[probe]["exec"]["command"][-1] == stream, (proc.name, probe)
