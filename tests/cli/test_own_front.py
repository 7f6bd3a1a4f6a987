"""handover/front.py: how `strangler own` hears from a data plane (its applied.json) — served,
refused, still draining, silent — without a server: the file is what dataplane/follow.py
writes (tests/cli/test_own.py runs the flip through real nginx and HAProxy)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from dataplane.follow import APPLIED
from handover.errors import PhaseFailed
from handover.front import PlaneFront, find_front

SHA = "ab" * 32


def applied(folder: Path, **doc: object) -> PlaneFront:
    (folder / APPLIED).write_text(json.dumps({"sha256": "r" * 64, "how": "reload", **doc}))
    return PlaneFront("haproxy", folder, folder / "routes.yaml")


def test_a_plane_serving_the_file_confirms_it(tmp_path: Path) -> None:
    front = applied(tmp_path, ownership_sha256=SHA)
    assert front.confirm(SHA, "catalog", drained=True, timeout=0.1) == 1
    assert not front.needs_token


def test_a_refused_ownership_file_fails_at_once_with_the_plane_s_reason(tmp_path: Path) -> None:
    front = applied(tmp_path, ownership_sha256="old", refused={"ownership_sha256": SHA, "error": "haproxy -c: line 9"})
    with pytest.raises(PhaseFailed, match="refused the new ownership.yaml and keeps the old one: haproxy -c: line 9"):
        front.confirm(SHA, "catalog", drained=True, timeout=30)


def test_old_workers_still_finishing_are_not_drained(tmp_path: Path) -> None:
    front = applied(tmp_path, ownership_sha256=SHA, how="reload (old workers still finishing long requests)")
    with pytest.raises(PhaseFailed, match="a write of catalog may still be in flight"):
        front.confirm(SHA, "catalog", drained=True, timeout=0.1)
    assert front.confirm(SHA, "catalog", drained=False, timeout=0.1) == 1  # a release need not drain


def test_a_silent_plane_fails_after_the_timeout_saying_where_to_look(tmp_path: Path) -> None:
    front = applied(tmp_path, ownership_sha256="old")
    with pytest.raises(PhaseFailed, match=r"did not confirm ownership abababababab within 0.2 s .*strangler logs haproxy"):
        front.confirm(SHA, "catalog", drained=False, timeout=0.2)


def test_the_front_is_the_router_if_one_answers_else_the_stack_s_plane(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRANGLER_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("STRANGLER_ROUTER_URL", raising=False)
    assert find_front(None) is None
    (tmp_path / "run").mkdir(exist_ok=True)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        (tmp_path / "run" / "stack.json").write_text(json.dumps({
            "router_url": None, "routes": str(tmp_path / "routes.yaml"),
            "processes": [{"name": "nginx", "role": "dataplane", "port": port}]}))
        front = find_front(None)
        assert isinstance(front, PlaneFront) and front.name == "nginx"
        assert front.folder == tmp_path / "dataplane" / "nginx" and front.routes == tmp_path / "routes.yaml"
    assert find_front(None) is None  # a plane that no longer answers (stack.json left behind) is no front
