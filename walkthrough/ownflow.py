"""Step 4 of the walkthrough: catalog writes move to the service with `strangler own`, under traffic.

`walkthrough.steps` calls these in order: `write_ownership` (the workspace's own
ownership.yaml, a copy of the repository's: the monolith owns), `enforce` once both streams
run (the catalog's copy refuses application writes from then on), `move_writes` (the flip,
as a process, exactly as a user would run it) and `prove_write` (a staff write after it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from control.errors import StackError

REPO = Path(__file__).resolve().parent.parent
GROUP = "catalog"


def write_ownership(home: Path) -> Path:
    """The demo's ownership file, beside its routes (the router and the streams read it)."""
    path = home / "ownership.yaml"
    shutil.copyfile(REPO / "ownership.yaml", path)
    return path


def enforce(streams: Path, env: dict[str, str]) -> dict[str, Any]:
    """Guards on the non-owner side's database, as `strangler up` sets them."""
    from handover.enforce import enforce_declared

    return enforce_declared(streams, env)


def move_writes(home: Path, env: dict[str, str], *, router_url: str) -> dict[str, Any]:
    """`strangler own catalog --by catalog`: hold, drain, guard, ids, reverse, flip; its JSON."""
    argv = [sys.executable, "-m", "cli.main", "own", GROUP, "--by", "catalog", "--reason",
            "demo: the catalog service takes over its writes", "--routes", str(home / "routes.yaml"),
            "--router", router_url, "--json"]
    proc = subprocess.run(argv, cwd=str(REPO), env=env, capture_output=True, text=True,
                          timeout=180, check=False)
    (home / "logs" / "own.log").write_text(proc.stderr)
    try:
        doc = dict(json.loads(proc.stdout))
    except ValueError:
        doc = {}
    if proc.returncode != 0 or doc.get("outcome") != "done":
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise StackError(f"`strangler own {GROUP} --by catalog` failed (exit {proc.returncode}): {last}; "
                         f"see {home / 'logs' / 'own.log'}")
    return doc


def prove_write(router_url: str, monolith_db: str, *, timeout: float = 30.0) -> dict[str, Any]:
    """One staff price change through the router after the flip: which backend served it, and
    how long until the monolith (orders, reports) reads it through the reverse stream, in its
    database (`monolith_db`, a SQLAlchemy URL: SQLite or PostgreSQL)."""
    import time
    from decimal import Decimal

    import httpx
    import sqlalchemy as sa

    with httpx.Client(base_url=router_url, timeout=10) as client:
        login = client.post("/api/auth/login/", json={"username": "staff1", "password": "shop-password"})
        if login.status_code != 200:
            raise StackError(f"staff1 cannot log in through the router: {login.status_code} {login.text[:200]}")
        headers = {"Authorization": f"Token {login.json()['token']}"}
        product = client.get("/api/products/", params={"ordering": "id"}).json()["results"][0]
        price = Decimal(str(product["price"])) + Decimal("0.01")
        t0 = time.monotonic()
        answer = client.patch(f"/api/products/{product['id']}/", json={"price": f"{price:.2f}"}, headers=headers)
    backend = answer.headers.get("x-strangler-backend", "?")
    if answer.status_code != 200:
        raise StackError(f"a staff price change after the flip failed: {answer.status_code} "
                         f"{answer.text[:200]} (served by {backend})")
    deadline = time.monotonic() + timeout
    # a plain read engine (the CDC sinks' takes SQLite's write lock at BEGIN); psycopg2 named,
    # as SQLAlchemy 2.1 would pick psycopg 3
    engine = sa.create_engine(monolith_db.replace("postgresql://", "postgresql+psycopg2://", 1))
    try:
        while time.monotonic() < deadline:
            with engine.connect() as db:
                seen = db.execute(sa.text("SELECT price FROM catalog_product WHERE id = :id"),
                                  {"id": product["id"]}).scalar_one()
            if Decimal(str(seen)) == price:
                return {"product": product["id"], "price": f"{price:.2f}", "served_by": backend,
                        "in_monolith_after_ms": round(1000 * (time.monotonic() - t0))}
            time.sleep(0.05)
    finally:
        engine.dispose()
    raise StackError(f"the price change of product {product['id']} (served by {backend}) did not reach "
                     f"the monolith within {timeout:.0f}s: is the reverse stream running? "
                     f"see the demo's logs/cdc-catalog_reverse.log")
