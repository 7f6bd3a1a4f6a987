"""`admin_listen:` the admin API on its own listener; the public port hides every spelling of it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from devstack import free_port
from router.config import ConfigError, parse_config
from tests.router.conftest import ADMIN_TOKEN, ROOT, eventually
from tests.router.test_admin import CASE_VARIANTS, SPELLINGS, raw_admin


def config(ups: dict, admin_port: int) -> str:
    return f"""
ledger: ledger.jsonl
access_log: false
admin_listen: "127.0.0.1:{admin_port}"
upstreams:
  a: {{url: "{ups['a'].url}"}}
  b: {{url: "{ups['b'].url}"}}
routes:
  - name: split
    match: {{prefix: /}}
    backends: {{a: 100, b: 0}}
"""


def test_the_admin_api_moves_to_its_own_listener(upstreams, start_router, http) -> None:
    admin_port = free_port()
    router = start_router(config(upstreams, admin_port), http=http, workers=2, health_port=admin_port)
    # The public port: every spelling of /_strangler is 404 with a token or without, healthz
    # included, and nothing reaches an upstream.
    for target in ["/_strangler/healthz", "/_strangler/status", "/_strangler/metrics",
                   *SPELLINGS, *CASE_VARIANTS]:
        for token in (None, ADMIN_TOKEN):
            status, head, body = raw_admin(router.port, target, token)
            assert status == 404, (target, status, body)
            assert b"x-strangler-backend" not in head and b'"upstream"' not in body, target
            assert b"routes" not in body and b"strangler_requests_total" not in body, target
    status, _, body = raw_admin(router.port, "/_strangler/reload", ADMIN_TOKEN, "POST")
    assert status == 404, body
    # Traffic still flows on the public port ...
    for i in range(20):
        status, head, body = raw_admin(router.port, f"/echo/{i}")
        assert status == 200 and json.loads(body)["upstream"] == "a"
    # ... and the admin listener serves the admin API (tokens as before), summed over both
    # workers, and forwards nothing.
    assert raw_admin(admin_port, "/_strangler/status")[0] == 401
    status, _, body = raw_admin(admin_port, "/_strangler/healthz")
    assert status == 200 and json.loads(body) == {"ok": True}

    def both_workers() -> bool:
        return json.loads(raw_admin(admin_port, "/_strangler/status", ADMIN_TOKEN)[2])["workers"] == 2

    assert eventually(both_workers, timeout=40)
    status, _, body = raw_admin(admin_port, "/_strangler/status", ADMIN_TOKEN)
    assert status == 200 and json.loads(body)["routes"]["split"]["backends"]["a"]["requests"] == 20
    status, _, body = raw_admin(admin_port, "/api/../_strangler/routes", ADMIN_TOKEN)
    assert status == 200 and json.loads(body)["routes"][0]["name"] == "split"
    for target in ("/echo/1", "/", "/_stranglerx/routes"):
        status, head, body = raw_admin(admin_port, target, ADMIN_TOKEN)
        assert status == 404 and b"x-strangler-backend" not in head and b'"upstream"' not in body, target
    assert raw_admin(admin_port, "/_strangler/reload", ADMIN_TOKEN, "POST")[0] == 200


@pytest.mark.parametrize("value", ["9901", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "::1:x", "bad host:80"])
def test_admin_listen_must_be_host_and_port(value: str) -> None:
    text = (f'admin_listen: "{value}"\nupstreams: {{a: {{url: "http://127.0.0.1:1"}}}}\n'
            "routes: [{name: r, match: {prefix: /}, backends: {a: 100}}]\n")
    with pytest.raises(ConfigError, match=r"admin_listen: .* — fix: write host:port"):
        parse_config(text, source="routes.yaml")


def test_admin_listen_reads_ipv6_in_brackets() -> None:
    text = ('admin_listen: "[::1]:9901"\nupstreams: {a: {url: "http://127.0.0.1:1"}}\n'
            "routes: [{name: r, match: {prefix: /}, backends: {a: 100}}]\n")
    assert parse_config(text).admin_listen == ("::1", 9901)


def _router_exit(tmp_path: Path, text: str, port: int) -> tuple[int, str]:
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    out = subprocess.run([sys.executable, "-m", "router", "--config", str(path), "--host", "127.0.0.1",
                          "--port", str(port)], cwd=ROOT, capture_output=True, text=True, timeout=30)
    return out.returncode, out.stderr


def test_a_port_the_router_cannot_listen_on_is_named_with_the_fix(upstreams, tmp_path) -> None:
    """Not a traceback: which port, from which setting, and what to do (exit 2)."""
    admin_port = free_port()
    code, err = _router_exit(tmp_path, config(upstreams, admin_port), admin_port)
    assert code == 2 and f"admin_listen 127.0.0.1:{admin_port} is the public port too" in err, err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        code, err = _router_exit(tmp_path, config(upstreams, busy), free_port())
        assert code == 2 and f"cannot listen on 127.0.0.1:{busy} (admin_listen)" in err, err
        assert "Traceback" not in err
        code, err = _router_exit(tmp_path, config(upstreams, free_port()), busy)
        assert code == 2 and f"cannot listen on 127.0.0.1:{busy} (--host/--port)" in err, err
