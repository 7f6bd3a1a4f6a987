"""The proof of issue 18: one routes.yaml, three data planes, every user on the same backend.

10,000 synthetic users (fixed ids) go through the nginx and the HAProxy that `strangler
export` renders (real servers, started by dataplane.run) and through Strangler's own
router (router.balance for all of them, plus a sample through a real router process), at
weights 0, 1, 10, 37, 50, 99, 100 and a three-way split: each user lands on the same
backend everywhere; raising a weight only adds users; 0 and 100 are exact.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dataplane import model, run
from dataplane.errors import ExportError
from devstack import free_port
from router import balance
from tests.conftest import service_missing
from tests.dataplane.wire import backends_seen, named_upstreams, router_process

WEIGHTS = (0, 1, 10, 37, 50, 99, 100)
THREE = {"monolith": 50, "catalog": 20, "search": 30}
USERS = [f"user-{i:05d}" for i in range(10_000)]  # fixed ids: the same run every time


def routes_yaml(ports: dict[str, int]) -> str:
    ups = "\n".join(f"  {n}: {{url: http://127.0.0.1:{p}}}" for n, p in ports.items())
    routes = "\n".join(
        f"  - {{name: w{w}, match: {{prefix: /w{w}}}, salt: products, cohort: {{header: X-User}},"
        f" backends: {{monolith: {100 - w}, catalog: {w}}}}}" for w in WEIGHTS)
    three = ", ".join(f"{k}: {v}" for k, v in THREE.items())
    return (f"ledger: ledger.jsonl\naccess_log: false\nupstreams:\n{ups}\nroutes:\n{routes}\n"
            f"  - {{name: three, match: {{prefix: /three}}, salt: products, cohort: {{header: X-User}},"
            f" backends: {{{three}}}}}\n")


def expected(backends: dict[str, int]) -> list[str]:
    return [balance.choose(list(backends.items()), salt="products", key=u) for u in USERS]


def requests_for(path: str) -> list[tuple[str, dict[str, str]]]:
    return [(f"{path}/x", {"X-User": u}) for u in USERS]


@pytest.mark.slow
def test_every_user_lands_on_the_same_backend_on_nginx_haproxy_and_the_router(tmp_path: Path) -> None:
    for target in ("nginx", "haproxy"):
        try:
            run.binary(target)
        except ExportError as exc:
            service_missing(target, exc)
    with named_upstreams(("monolith", "catalog", "search")) as ports:
        routes = tmp_path / "routes.yaml"
        routes.write_text(routes_yaml(ports))
        plan = model.load_plan(routes)
        want = {f"w{w}": expected({"monolith": 100 - w, "catalog": w}) for w in WEIGHTS}
        want["three"] = expected(THREE)
        planes: dict[str, dict[str, list[str]]] = {}
        for target in ("nginx", "haproxy"):
            with run.start(target, plan, port=free_port()) as server:
                planes[target] = {route: backends_seen(server.port, requests_for(f"/{route}"))
                                  for route in want}
        sample = router_sample(routes, tmp_path)

    for target, seen in planes.items():
        for route, names in seen.items():
            moved = [(u, w, s) for u, w, s in zip(USERS, want[route], names, strict=True) if w != s]
            assert not moved, f"{target} {route}: {len(moved)} users elsewhere than the router, e.g. {moved[:3]}"
    for route, names in sample.items():
        assert names == want[route][:len(names)], f"the router process disagrees with router.balance on {route}"

    # The guarantees, seen on the planes (all equal by now): 0 and 100 exact, monotone.
    nginx = planes["nginx"]
    assert set(nginx["w0"]) == {"monolith"} and set(nginx["w100"]) == {"catalog"}
    for low, high in zip(WEIGHTS, WEIGHTS[1:], strict=False):
        back = [u for u, a, b in zip(USERS, nginx[f"w{low}"], nginx[f"w{high}"], strict=True)
                if a == "catalog" and b != "catalog"]
        assert not back, f"raising catalog {low} → {high} % moved users back: {back[:3]}"
    for w in WEIGHTS[1:-1]:
        share = nginx[f"w{w}"].count("catalog") / len(USERS)
        assert abs(share - w / 100) < 0.02, f"catalog at {w} % got {share:.3f} of the users"
    three = {n: nginx["three"].count(n) / len(USERS) for n in THREE}
    assert all(abs(three[n] - THREE[n] / 100) < 0.02 for n in THREE), three


def router_sample(routes: Path, tmp_path: Path, n: int = 150) -> dict[str, list[str]]:
    """The first `n` users through a real router process, on every route."""
    with router_process(routes, tmp_path / "router.log") as port:
        return {route: backends_seen(port, requests_for(f"/{route}")[:n])
                for route in [*(f"w{w}" for w in WEIGHTS), "three"]}
