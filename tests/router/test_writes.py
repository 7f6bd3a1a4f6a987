"""Write ownership at the router: a route's writes go to its group's owner, are held during a
flip, never reach a non-owner, and every worker says what it applied and what is in flight."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

import ownership
from devstack import free_port
from router.config import load_config, parse_config
from router.edit import set_weight
from router.errors import ConfigError
from tests.router.conftest import AUTH, eventually

OWNERSHIP = """\
version: 1
groups:
  shop:
    owner: monolith
    sides:
      monolith: {stream: shop, tables: [shop_item]}
      catalog: {stream: shop_reverse, tables: [items]}
"""


LEGACY = """
  - name: legacy
    match: {prefix: /legacy}
    backends: {monolith: 100, catalog: 0}"""


def routes(monolith: str, catalog: str, *, legacy: bool = True) -> str:
    """`items` reads go to the catalog (weight 100); its writes follow ownership. `legacy`
    carries writes without `writes:`: valid only while its weights keep them on the owner."""
    return f"""
ledger: ledger.jsonl
access_log: false
ownership: ownership.yaml
upstreams:
  monolith: {{url: "{monolith}", connect_timeout: 1}}
  catalog: {{url: "{catalog}"}}
routes:
  - name: items
    match: {{prefix: /items}}
    writes: shop
    backends: {{monolith: 0, catalog: 100}}
    cohort: {{header: X-User}}
    override: {{header: X-Try, candidate: catalog}}
    fallback: catalog
    retries: 1
    retry: {{idempotent: [PUT, DELETE]}}{LEGACY if legacy else ""}
  - name: monolith
    match: {{prefix: /}}
    backends: {{monolith: 100}}
"""


def flip(path: Path, owner: str, hold: ownership.Hold | None = None) -> str:
    """Rewrite the ownership file the way `strangler own` does; returns its new sha."""
    current = ownership.load(path)
    new = ownership.with_hold(ownership.with_owner(current, "shop", owner), "shop", hold)
    return ownership.write(path, new).sha256


def reload(router) -> dict:  # type: ignore[no-untyped-def]
    r = httpx.post(f"{router.url}/_strangler/reload", headers=AUTH, timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json())


def answered_by(client: httpx.Client, method: str, path: str, **kw: object) -> str:
    r = client.request(method, path, **kw)  # type: ignore[arg-type]
    assert r.status_code == 200, (method, path, r.status_code, r.text)
    assert r.json()["upstream"] == {"monolith": "a", "catalog": "b"}[r.headers["x-strangler-backend"]]
    return str(r.headers["x-strangler-backend"])


# --- routing ----------------------------------------------------------------------------

def test_writes_go_to_the_owner_whatever_the_weights_and_follow_a_flip(upstreams, start_router,
                                                                       tmp_path: Path) -> None:
    (tmp_path / "ownership.yaml").write_text(OWNERSHIP)
    router = start_router(routes(upstreams["a"].url, upstreams["b"].url, legacy=False))
    with router.client() as client:
        for i in range(12):
            user = {"X-User": f"u{i}"}
            assert answered_by(client, "GET", "/items/1", headers=user) == "catalog"
            for method in ("POST", "PUT", "PATCH", "DELETE"):
                # the override forces the catalog and the weights send it all: writes stay put
                assert answered_by(client, method, "/items/1", headers={**user, "X-Try": "always"},
                                   content=b'{"n": 1}' if method != "DELETE" else None) == "monolith"
        sha = flip(router.config.with_name("ownership.yaml"), "catalog")
        assert reload(router)["ownership_sha256"] == sha
        assert {answered_by(client, m, "/items/2") for m in ("POST", "PUT", "PATCH", "DELETE")} == {"catalog"}
        assert answered_by(client, "GET", "/items/2", headers={"X-Try": "never"}) == "monolith"
        # and back, by the file watch alone (no reload call)
        sha = flip(router.config.with_name("ownership.yaml"), "monolith")
        assert eventually(lambda: router.status()["ownership"]["sha256"] == sha)
        assert answered_by(client, "POST", "/items/3", content=b"{}") == "monolith"
        # the catch-all names one side only: its writes are the monolith's, owner or not
        assert answered_by(client, "POST", "/orders/1", content=b"{}") == "monolith"
    status = router.status()
    assert status["ownership"]["groups"] == {"shop": {"owner": "monolith", "held": False, "retry_after": 0}}
    assert status["routes"]["items"]["writes"] == "shop" and status["routes"]["monolith"]["writes"] is None


def test_a_write_never_falls_back_to_a_side_that_does_not_own_it(upstreams, start_router,
                                                                  tmp_path: Path) -> None:
    (tmp_path / "ownership.yaml").write_text(OWNERSHIP)
    dead = f"http://127.0.0.1:{free_port()}"  # the owner is down
    router = start_router(routes(dead, upstreams["b"].url))
    with router.client() as client:
        # an idempotent PUT without a body may be retried and fall back — but not to a non-owner
        r = client.put("/items/1")
        assert r.status_code == 502 and r.json()["upstream"] == "monolith", r.text
        r = client.delete("/items/1")
        assert r.status_code == 502 and r.json()["upstream"] == "monolith", r.text
        # a read whose backend is down still falls back as before
        r = client.get("/items/1", headers={"X-Try": "never"})
        assert r.status_code == 200 and r.headers["x-strangler-backend"] == "catalog"


def test_a_hold_answers_writes_503_with_retry_after_reads_flow_and_it_ends_by_itself(
        upstreams, start_router, tmp_path: Path) -> None:
    path = tmp_path / "ownership.yaml"
    path.write_text(OWNERSHIP)
    router = start_router(routes(upstreams["a"].url, upstreams["b"].url, legacy=False))
    now = time.time()
    flip(path, "monolith", ownership.Hold(since=now, until=now + 60, reason="moving to catalog"))
    reload(router)
    with router.client() as client:
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            r = client.request(method, "/items/1")
            assert r.status_code == 503, r.text
            assert 1 <= int(r.headers["retry-after"]) <= 5
            body = r.json()
            assert body["error"] == "writes_held"
            assert "ownership of shop is moving (moving to catalog)" in body["detail"]
            assert f"retry after {r.headers['retry-after']} s" in body["detail"]
        assert answered_by(client, "GET", "/items/1") == "catalog"  # reads flow
        assert answered_by(client, "POST", "/orders/1") == "monolith"  # not a `writes:` route
        group = router.status()["ownership"]["groups"]["shop"]
        assert group["held"] is True and 1 <= group["retry_after"] <= 5
        held = router.status()["routes"]["items"]["backends"]["-"]
        assert held["errors"] == {"writes_held": 4} and held["statuses"] == {"5xx": 4}
        # a hold left behind (a crashed flip) ends at its `until`: writes go to the owner again
        now = time.time()
        flip(path, "monolith", ownership.Hold(since=now - 5, until=now + 0.5, reason="crashed"))
        reload(router)
        r = eventually(lambda: client.post("/items/1").status_code == 200, timeout=20)
        assert r, "the hold never ended"
        assert answered_by(client, "POST", "/items/1") == "monolith"
        assert router.status()["ownership"]["groups"]["shop"]["held"] is False


# --- refusals -----------------------------------------------------------------------------

def write_files(tmp_path: Path, text: str, own: str | None = OWNERSHIP) -> Path:
    if own is not None:
        (tmp_path / "ownership.yaml").write_text(own)
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    return path


LEGACY_TO_CATALOG = ("route legacy carries writes (no match.methods) and would send them to catalog "
                     "(weight 10), which does not own ownership group shop (owner: monolith) — fix: "
                     "add `writes: shop` to the route so writes follow ownership, or limit "
                     "match.methods to GET, HEAD")


def test_a_route_that_could_send_writes_to_a_non_owner_is_refused(tmp_path: Path) -> None:
    good = routes("http://127.0.0.1:1", "http://127.0.0.1:2")
    path = write_files(tmp_path, good)
    load_config(path)
    bad = good.replace("backends: {monolith: 100, catalog: 0}", "backends: {monolith: 90, catalog: 10}")
    path.write_text(bad)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert LEGACY_TO_CATALOG in str(exc.value) and exc.value.key_path == "routes[1].backends.catalog"
    # reads only: fine
    path.write_text(bad.replace("match: {prefix: /legacy}", "match: {prefix: /legacy, methods: [GET, HEAD]}"))
    load_config(path)
    legacy = "match: {prefix: /legacy}\n    backends: {monolith: 100, catalog: 0}"
    cases = {
        "override": (legacy + "\n    override: {header: X-Try}", "routes[1].override.candidate",
                     "(the override candidate)"),
        "fallback": (legacy + "\n    fallback: catalog", "routes[1].fallback", "(the fallback)"),
        "header route": (legacy + "\n    header_routes: [{name: t, header: X-T, exact: '1', to: catalog}]",
                         "routes[1].header_routes[0].to", "(header route t)"),
        "methods": ("match: {prefix: /legacy, methods: [GET, DELETE]}\n    backends: {catalog: 100, monolith: 0}",
                    "routes[1].backends.catalog", "carries writes (match.methods has DELETE)"),
        "shadow": (legacy + "\n    shadow: {to: catalog, percent: 5, methods: [GET, POST]}",
                   "routes[1].shadow.methods", "mirrors writes (POST) to catalog"),
    }
    for name, (new, key, words) in cases.items():
        path.write_text(good.replace(legacy, new))
        with pytest.raises(ConfigError) as exc:
            load_config(path)
        assert exc.value.key_path == key and words in str(exc.value), (name, str(exc.value))
    # a new owner can be checked against the routes before it is written: legacy would now
    # send writes to the monolith, which no longer owns the group
    new = ownership.with_owner(ownership.load(tmp_path / "ownership.yaml"), "shop", "catalog")
    path.write_text(good)
    with pytest.raises(ConfigError, match="would send them to monolith"):
        load_config(path, ownership=new)
    # a route naming one side only (the monolith's catch-all) is its own business, owner or not
    path.write_text(routes("http://127.0.0.1:1", "http://127.0.0.1:2", legacy=False))
    sha = flip(tmp_path / "ownership.yaml", "catalog")
    assert load_config(path).ownership_sha256 == sha


def test_writes_needs_a_declared_group_with_an_upstream_per_side(tmp_path: Path) -> None:
    good = routes("http://127.0.0.1:1", "http://127.0.0.1:2")
    path = write_files(tmp_path, good.replace("ownership: ownership.yaml\n", ""), own=None)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.key_path == "routes[0].writes" and "no ownership file is loaded" in str(exc.value)
    write_files(tmp_path, good)
    path.write_text(good.replace("writes: shop", "writes: shops"))
    with pytest.raises(ConfigError, match="no ownership group 'shops'.*use one of: shop"):
        load_config(path)
    (tmp_path / "ownership.yaml").write_text(OWNERSHIP.replace("catalog:", "search:"))
    path.write_text(good)
    with pytest.raises(ConfigError, match="has side 'search' but this file has no upstream 'search'"):
        load_config(path)
    # a broken ownership file is refused like a broken routes file, naming both key paths
    (tmp_path / "ownership.yaml").write_text(OWNERSHIP.replace("owner: monolith", "owner: nobody"))
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.key_path == "ownership" and "groups.shop.owner" in str(exc.value)
    (tmp_path / "ownership.yaml").unlink()
    with pytest.raises(ConfigError, match="routes.yaml:4: ownership: no ownership file at"):
        load_config(path)
    # no `ownership:` key and no file beside it: no ownership declared, writes follow weights
    plain = parse_config(good.replace("ownership: ownership.yaml\n", "").replace("    writes: shop\n", ""),
                         base_dir=tmp_path)
    assert plain.ownership is None and plain.ownership_path == tmp_path / "ownership.yaml"


def test_set_weight_refuses_a_change_that_sends_writes_to_a_non_owner(tmp_path: Path) -> None:
    path = write_files(tmp_path, routes("http://127.0.0.1:1", "http://127.0.0.1:2"))
    before = path.read_bytes()
    with pytest.raises(ConfigError) as exc:
        set_weight(path, route="legacy", backend="catalog", weight=10, actor="t", reason="canary")
    assert LEGACY_TO_CATALOG in str(exc.value)
    assert path.read_bytes() == before and not (tmp_path / "ledger.jsonl").exists()
    # reads move on a `writes:` route; its writes do not
    set_weight(path, route="items", backend="monolith", weight=50, actor="t", reason="canary")


def test_the_admin_api_and_strangler_shift_show_the_refusal(upstreams, start_router,
                                                             tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    (tmp_path / "ownership.yaml").write_text(OWNERSHIP)
    router = start_router(routes(upstreams["a"].url, upstreams["b"].url))
    before = router.config.read_bytes()
    r = httpx.post(f"{router.url}/_strangler/routes/legacy/weights", headers=AUTH,
                   json={"backend": "catalog", "weight": 10, "reason": "canary"})
    assert r.status_code == 422 and LEGACY_TO_CATALOG in r.json()["detail"], r.text
    # --streams names no file: the read gate (control/readgate.py) has no stream to check here
    result = CliRunner().invoke(app, ["shift", "legacy", "--to", "catalog", "--weight", "10",
                                      "--router", router.url, "--streams", str(tmp_path / "none.yaml")],
                                env={"STRANGLER_ADMIN_TOKEN": AUTH["Authorization"].split()[1]})
    assert result.exit_code == 1, result.output
    assert "add `writes: shop` to the route" in " ".join(result.output.split())
    assert router.config.read_bytes() == before
    # a hand edit doing the same is refused on reload; the running config stays
    router.write_config(before.decode().replace("{monolith: 100, catalog: 0}", "{monolith: 90, catalog: 10}"))
    r = httpx.post(f"{router.url}/_strangler/reload", headers=AUTH)
    assert r.status_code == 422 and LEGACY_TO_CATALOG in r.json()["error"]
    with router.client() as client:
        assert {answered_by(client, "POST", f"/legacy/{i}") for i in range(20)} == {"monolith"}


# --- what `strangler own` waits on --------------------------------------------------------

class Gate:
    """A loopback upstream whose answers to POST wait until the test opens the gate."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.arrived = threading.Semaphore(0)
        gate = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                size = int(self.headers.get("content-length") or 0)
                self.rfile.read(size)
                if self.command == "POST":
                    gate.arrived.release()
                    gate.open.wait(60)
                body = json.dumps({"upstream": "a", "method": self.command}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.open.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gate() -> Iterator[Gate]:
    g = Gate()
    yield g
    g.close()


def test_status_reports_every_workers_ownership_and_writes_in_flight(upstreams, start_router, gate,
                                                                     tmp_path: Path) -> None:
    path = tmp_path / "ownership.yaml"
    path.write_text(OWNERSHIP)
    sha = ownership.load(path).sha256
    router = start_router(routes(gate.url, upstreams["b"].url), workers=2)

    def workers() -> list[dict]:
        return list(router.status()["ownership"]["workers"])

    assert eventually(lambda: len(workers()) == 2, timeout=40)
    assert all(w["sha256"] == sha and w["inflight_writes"] == {"shop": 0} for w in workers())
    answers: list[httpx.Response] = []
    slow = threading.Thread(target=lambda: answers.append(
        httpx.post(f"{router.url}/items/1", content=b"{}", timeout=60)))
    slow.start()
    try:
        assert gate.arrived.acquire(timeout=30), "the write never reached the owner"
        counts = eventually(lambda: sorted(w["inflight_writes"]["shop"] for w in workers()) == [0, 1])
        assert counts, workers()
        # the hold goes in while that write is still being answered: every worker applies it,
        # and the write admitted before stays counted until its response ends
        now = time.time()
        held = flip(path, "monolith", ownership.Hold(since=now, until=now + 60, reason="flip"))
        reload(router)  # this worker, then the supervisor tells its siblings (SIGHUP)
        assert eventually(lambda: all(w["sha256"] == held for w in workers()), timeout=20), workers()
        doc = router.status()["ownership"]
        assert doc["sha256"] == held and doc["groups"]["shop"]["held"] is True
        assert sorted(w["inflight_writes"]["shop"] for w in doc["workers"]) == [0, 1]
        assert httpx.post(f"{router.url}/items/2").status_code == 503
    finally:
        gate.open.set()
        slow.join(60)
    assert answers and answers[0].status_code == 200 and answers[0].headers["x-strangler-backend"] == "monolith"
    assert eventually(lambda: all(w["inflight_writes"] == {"shop": 0} for w in workers())), workers()
    # a worker that died is not listed (its replacement is, once it serves)
    victim = workers()[0]["pid"]
    os.kill(victim, signal.SIGKILL)
    assert eventually(lambda: victim not in [w["pid"] for w in workers()] and len(workers()) == 2,
                      timeout=40), workers()
    assert all(w["sha256"] == held for w in workers())
