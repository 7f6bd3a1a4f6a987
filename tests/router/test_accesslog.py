"""router/accesslog.py: each line is exactly what json.dumps of the entry would write."""

from __future__ import annotations

import json

import pytest

from router.accesslog import AccessLog


@pytest.mark.parametrize("path, route, backend, error", [
    ("/api/products/1", "products", "app", None),
    ('/odd/"quoted"/back\\slash/é/\x01', None, None, "no_route"),
    ("/x", "r", None, "upstream_connect"),
])
def test_a_line_is_the_entry_as_json(tmp_path, path: str, route: str | None, backend: str | None,
                                     error: str | None) -> None:
    target = tmp_path / "access.log"
    log = AccessLog(str(target))
    log.write(request_id="0123abcd", method="GET", path=path, route=route, backend=backend,
              status=502 if error else 200, ms=1.23456, error=error)
    log.close()
    line = target.read_text().strip()
    entry = json.loads(line)
    expected = {"ts": entry["ts"], "request_id": "0123abcd", "method": "GET", "path": path,
                "route": route, "backend": backend, "status": 502 if error else 200,
                "duration_ms": 1.235}
    if error:
        expected["error"] = error
    assert line == json.dumps(expected, separators=(",", ":"))
