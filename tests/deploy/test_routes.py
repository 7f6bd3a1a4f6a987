"""The containers' routing tables are the repository's, and the router picks up ConfigMap updates.

1. deploy/compose/routes.yaml and the `strangler-routes` ConfigMap are what
   deploy/render_routes.py makes of routes.yaml (weights aside), and the router accepts them.
2. A real router process, its routes file laid out the way the kubelet mounts a ConfigMap
   (`routes.yaml -> ..data/routes.yaml`, `..data -> ..<timestamp>/`), reloads when the
   kubelet-style update swaps the `..data` symlink, and keeps serving on a bad update.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from devstack import free_port
from router.config import parse_config
from tests.deploy.conftest import ROOT, by_kind


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_routes", ROOT / "deploy" / "render_routes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render_routes = load_script()


def without_weights(text: str) -> dict[str, Any]:
    doc = yaml.safe_load(text)
    for route in doc.get("routes") or []:
        route["backends"] = sorted(route["backends"])  # weights move at run time; backends don't
    return doc


def configmap_routes(text: str) -> str:
    (doc,) = yaml.safe_load_all(text)
    return str(doc["data"]["routes.yaml"])


def test_container_routes_are_rendered_from_the_repository_routes() -> None:
    expected = render_routes.outputs()
    compose = render_routes.COMPOSE_ROUTES
    k8s = render_routes.K8S_ROUTES
    hint = "run `python deploy/render_routes.py` after editing routes.yaml"
    assert without_weights(compose.read_text()) == without_weights(expected[compose]), hint
    assert without_weights(configmap_routes(k8s.read_text())) == without_weights(
        configmap_routes(expected[k8s])
    ), hint


def test_container_upstreams_are_the_stack_services(manifests: list[tuple[str, dict[str, Any]]], compose: dict[str, Any],
                                                    tmp_path: Path) -> None:
    k8s = mounted(tmp_path, configmap_files(render_routes.K8S_ROUTES.read_text()))
    config = parse_config((k8s / "routes.yaml").read_text(), source="configmap", base_dir=k8s)
    services = by_kind(manifests, "Service")
    for name, upstream in config.upstreams.items():
        host_port = upstream.url.removeprefix("http://")
        host, port = host_port.split(":")
        assert int(port) in [p["port"] for p in services[host]["spec"]["ports"]], name
        assert f"{port}" in compose["services"][host]["expose"], name


def mounted(tmp_path: Path, files: dict[str, str]) -> Path:
    """The folder the router sees at /etc/strangler, laid out in a temporary one."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def configmap_files(text: str) -> dict[str, str]:
    (doc,) = yaml.safe_load_all(text)
    return {str(k): str(v) for k, v in doc["data"].items()}


def test_the_router_accepts_both_copies(tmp_path: Path) -> None:
    compose = mounted(tmp_path / "compose", {
        "routes.yaml": render_routes.COMPOSE_ROUTES.read_text(),
        "ownership.yaml": render_routes.COMPOSE_OWNERSHIP.read_text()})
    config = parse_config((compose / "routes.yaml").read_text(), source="compose", base_dir=compose)
    assert config.ownership is not None and "catalog" in config.ownership.groups
    k8s = mounted(tmp_path / "k8s", configmap_files(render_routes.K8S_ROUTES.read_text()))
    config = parse_config((k8s / "routes.yaml").read_text(), source="k8s", base_dir=k8s)
    assert config.ownership is not None and "catalog" in config.ownership.groups


def test_kubernetes_ledger_is_on_a_writable_mount(manifests: list[tuple[str, dict[str, Any]]], tmp_path: Path) -> None:
    k8s = mounted(tmp_path, configmap_files(render_routes.K8S_ROUTES.read_text()))
    config = parse_config((k8s / "routes.yaml").read_text(), source="k8s", base_dir=k8s)
    (container,) = by_kind(manifests, "Deployment")["router"]["spec"]["template"]["spec"]["containers"]
    writable = [m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")]
    assert any(str(config.ledger_path).startswith(path + "/") for path in writable), config.ledger_path


def test_render_names_services_and_keeps_ports_and_comments() -> None:
    text = "# about\nversion: 1\nupstreams:\n  billing:\n    url: http://127.0.0.1:9000  \n# keep me\n"
    out = render_routes.render(text, ledger="/x/ledger.jsonl")
    assert "    url: http://billing:9000\n" in out and "# keep me" in out and "# about" not in out
    assert out.splitlines()[2] == "ledger: /x/ledger.jsonl"


def test_render_refuses_an_upstream_it_cannot_name() -> None:
    text = "version: 1\nupstreams:\n  billing:\n    url: https://billing.example.com\nroutes: []\n"
    with pytest.raises(SystemExit, match="billing"):
        render_routes.render(text)


# --- the ConfigMap symlink swap, against a real router -----------------------------------


class KubeletVolume:
    """A folder laid out like a mounted ConfigMap, updated the way the kubelet's AtomicWriter does."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.generation = 0

    def publish(self, files: dict[str, str]) -> None:
        self.generation += 1
        stamp = f"..2026_11_27_00_00_{self.generation:02d}.{os.getpid()}"
        target = self.root / stamp
        target.mkdir()
        for name, text in files.items():
            (target / name).write_text(text)
        old = os.readlink(self.root / "..data") if (self.root / "..data").is_symlink() else None
        tmp = self.root / "..data_tmp"
        os.symlink(stamp, tmp)
        os.rename(tmp, self.root / "..data")  # the atomic step
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                os.symlink(f"..data/{name}", link)
        if old is not None:
            shutil.rmtree(self.root / old)


def get(url: str) -> dict[str, Any]:
    # The router's admin reads need a token: the one the fixture starts it with.
    request = urllib.request.Request(url, headers={"Authorization": "Bearer t"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return dict(json.load(response))


def poll(url: str, predicate: Any, seconds: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            last = get(url)
            if predicate(last):
                return last
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} never satisfied the condition within {seconds}s; last answer: {last}")


@pytest.fixture
def configmap_router(tmp_path: Path) -> Iterator[tuple[KubeletVolume, str, str]]:
    volume_dir = tmp_path / "etc-strangler"
    volume_dir.mkdir()
    files = configmap_files(render_routes.K8S_ROUTES.read_text())
    text = files["routes.yaml"].replace("ledger: /app/.strangler/ledger.jsonl", f"ledger: {tmp_path}/ledger.jsonl")
    volume = KubeletVolume(volume_dir)
    volume.publish({**files, "routes.yaml": text})
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "router", "--config", str(volume_dir / "routes.yaml"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
        env={**os.environ, "STRANGLER_ADMIN_TOKEN": "t", "STRANGLER_IDENTITY_SECRET": "s"},
    )
    try:
        base = f"http://127.0.0.1:{port}/_strangler"
        poll(f"{base}/routes", lambda doc: bool(doc.get("routes")))
        yield volume, text, base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def weights(doc: dict[str, Any], route: str) -> dict[str, int]:
    return next(r["weights"] for r in doc["routes"] if r["name"] == route)


@pytest.mark.slow
def test_router_reloads_when_the_configmap_symlink_is_swapped(
    configmap_router: tuple[KubeletVolume, str, str],
) -> None:
    volume, text, base = configmap_router
    files = configmap_files(render_routes.K8S_ROUTES.read_text())  # ownership.yaml beside it
    assert weights(get(f"{base}/routes"), "products") == {"monolith": 100, "catalog": 0}

    shifted = text.replace("backends: {monolith: 100, catalog: 0}", "backends: {monolith: 75, catalog: 25}", 1)
    assert shifted != text
    volume.publish({**files, "routes.yaml": shifted})
    doc = poll(f"{base}/routes", lambda d: weights(d, "products") == {"monolith": 75, "catalog": 25})
    assert weights(doc, "categories") == {"monolith": 100, "catalog": 0}  # only what changed

    # A broken update is refused; the router keeps serving the last good table.
    volume.publish({**files, "routes.yaml": shifted.replace("routes:", "routez:", 1)})
    status = poll(f"{base}/status", lambda s: s["config"]["last_reload"]["ok"] is False)
    assert "routez" in status["config"]["last_reload"]["error"] or status["config"]["last_reload"]["error"]
    assert weights(get(f"{base}/routes"), "products") == {"monolith": 75, "catalog": 25}
