"""Step 4 end to end, as a migration engineer runs it: write ownership moves under traffic.

The real processes through the CLI (tests/cli/migration_rig.py): `strangler up --detach`
with the repository's routes (products and categories `writes: catalog`, identity),
streams and ownership files on free ports; `strangler traffic` (staff writes and customer
reads, fixed seed) through the router; a read canary; `strangler own catalog --by catalog`;
writes then land on the catalog and flow back. Meanwhile stream processes are `kill -9`ed
at seeded-random moments and restarted as the supervisor starts them. Afterwards:

- `strangler verify` both ways: 0 differing rows;
- the write log (AFTER row triggers on both databases, writer = sink or app): no change
  applied twice, no echo, no lost update, no id met on both sides, the catalog's new ids in
  its block;
- the traffic generator: failures_total == 0; writes held during the flip got 503 +
  Retry-After and were retried (held_retried).

On SQLite (direct) and on PostgreSQL over Kafka; plus the README's canary that diverged
before issue 11, as a regression test.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cdc import faults
from extracted.catalog.models import ID_BLOCK as CATALOG_BLOCK
from tests.cli.migration_rig import (
    STREAMS,
    Killer,
    Readers,
    Rig,
    Traffic,
    app_write,
    check_log,
    install_write_log,
    read_log,
)
from tests.kafka_fixtures import kafka_broker

__all__ = ["kafka_broker"]  # the session's broker, for the PostgreSQL + Kafka test

pytestmark = pytest.mark.slow

WRITE_ROUTES = ("products", "categories")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    try:
        yield r
    finally:
        r.down()


def staff_headers(rig: Rig) -> dict[str, str]:
    login = httpx.post(f"{rig.url}/api/auth/login/", json={"username": "staff1", "password": "shop-password"})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Token {login.json()['token']}"}


def held_answers(rig: Rig) -> int:
    """Write requests the router answered itself (503 writes_held: no backend) so far."""
    from control.routerapi import RouterAPI, route_entries

    token = (rig.state / "admin-token").read_text().strip()
    with RouterAPI(rig.url, token=token) as api:
        entries = route_entries(api.status())
    return sum(int((entries[r].get("backends") or {}).get("-", {}).get("requests", 0)) for r in WRITE_ROUTES)


def app_writes(rig: Rig, side: str, *, inserts: bool = False) -> int:
    from tests.cli.migration_rig import LOG, query

    where = "writer = 'app'" + (" AND op = 'i' AND tbl = 'product'" if inserts else "")
    return int(query(rig.url_of(side), f"SELECT count(*) AS n FROM {LOG} WHERE {where}")[0]["n"])


def wait_for(what: str, check: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f}s"
        time.sleep(0.1)


def flip_under_traffic(rig: Rig) -> dict[str, Any]:
    """`strangler own catalog --by catalog`, paused once held: a write then gets 503 +
    Retry-After from the router and the traffic generator's held writes are seen; then on.
    Rerun as an engineer would when a check is not met yet or the flip was undone."""
    fault_dir = rig.root / "faults"
    fault_dir.mkdir(exist_ok=True)
    env = {**rig.env, "STRANGLER_CDC_FAULTS": "own.after_hold=pause", "STRANGLER_CDC_FAULTS_DIR": str(fault_dir)}
    for _attempt in range(6):
        for old in fault_dir.iterdir():
            old.unlink()
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", "own", "catalog", "--by", "catalog",
                                 "--reason", "e2e: the catalog service takes over its writes", "--json"],
                                cwd=rig.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            while proc.poll() is None and not (fault_dir / "own.after_hold.hit").exists():
                time.sleep(0.02)
            if proc.poll() is None:  # held: the documented answer, and the generator retries it
                before = held_answers(rig)
                answer = httpx.patch(f"{rig.url}/api/products/1/", json={"price": "12.34"},
                                     headers=staff_headers(rig))
                assert answer.status_code == 503 and answer.json()["error"] == "writes_held", answer.text
                assert float(answer.headers["retry-after"]) > 0
                wait_for("a held write of the traffic generator",
                         lambda held=before + 1: held_answers(rig) > held)
                faults.release(fault_dir, "own.after_hold")
            out, err = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:  # the test failed while it was paused: stop it
                proc.kill()
                proc.wait()
        if proc.returncode == 0:
            return dict(json.loads(out), stderr=err)
        assert proc.returncode == 3 or "was undone" in err, err[-3000:]
        rig.wait_streaming(*STREAMS)
    raise AssertionError(f"strangler own did not finish in 6 attempts: {err[-3000:]}")


def migrate(rig: Rig, *, seed: int, kills: int, rate: float, writes_before: int, writes_after: int) -> None:
    rig.up()
    install_write_log(rig)
    traffic = Traffic(rig, rate=rate, seed=seed, staff_writes=0.25)
    plan = [STREAMS[i % 2] for i in range(kills)]
    random.Random(seed).shuffle(plan)
    try:
        with Killer(rig, seed=seed, plan=plan, every=(1.0, 3.0)) as killer:
            wait_for("staff writes on the monolith", lambda: app_writes(rig, "monolith") >= writes_before
                     and app_writes(rig, "monolith", inserts=True) >= 1)
            # reads first: a read canary moves product reads to the catalog (gated on lag/verify)
            rig.retried("shift", "products", "--to", "catalog", "--weight", "100", "--reason", "e2e read canary")
            flip = flip_under_traffic(rig)
            wait_for("staff writes on the catalog", lambda: app_writes(rig, "catalog") >= writes_after
                     and app_writes(rig, "catalog", inserts=True) >= 1)
        summary = traffic.stop()
    finally:
        traffic.kill()
    assert not killer.errors, killer.errors
    assert sorted(killer.kills) == sorted(plan)  # every planned kill -9 happened, and the restart
    rig.wait_streaming(*STREAMS)
    rig.drained(*STREAMS)

    assert flip["outcome"] == "done" and flip["to"] == "catalog"
    assert flip["phases"] == ["preflight", "hold", "drain", "guard", "ids", "reverse", "flip", "done"]
    # no failed request; the writes held during the flip were answered 503 and retried
    assert summary["failures_total"] == 0, (summary["failures"], {
        name: rig.process_log(name, errors_only=True) for name in ("catalog", "monolith", "router")})
    assert summary["held_retried"] >= 1
    endpoints = {e["endpoint"]: e["requests"] for e in summary["endpoints"]}
    assert endpoints.get("PATCH /api/products/{id}/", 0) > 0 and endpoints.get("POST /api/products/", 0) > 0
    # parity both ways
    for stream in STREAMS:
        doc = rig.verify(stream)
        assert doc["exit"] == 0 and doc["differing"] == 0, (stream, doc)
    # exactly once, no echo, no lost update, unique ids
    verdict = check_log(read_log(rig))
    assert verdict["problems"] == {"exactly_once": [], "foreign": [], "lost_update": [], "id_collisions": []}, \
        json.dumps(verdict, default=str)[:4000]
    counts = verdict["counts"]
    assert counts["monolith_to_catalog_applied"] > 0 and counts["catalog_to_monolith_applied"] > 0
    new_on_catalog = counts["inserted"]["catalog"]  # its products and price changes
    assert {t for t, _ in new_on_catalog} == {"product", "price_change"}
    assert all(CATALOG_BLOCK[0] <= k < CATALOG_BLOCK[1] for _, k in new_on_catalog), new_on_catalog
    assert all(k < CATALOG_BLOCK[0] for _, k in counts["inserted"]["monolith"])
    # the monolith's database now refuses what it no longer owns (but keeps its stock)
    refused = app_write(rig.url_of("monolith"), "UPDATE catalog_product SET name = 'stray' WHERE id = 1")
    assert refused is not None and "is written by catalog now" in refused
    assert app_write(rig.url_of("monolith"), "UPDATE catalog_product SET stock_count = stock_count WHERE id = 1") is None


def test_sqlite_direct_flip_under_traffic_and_kill_9(rig: Rig) -> None:
    rig.prepare()
    migrate(rig, seed=11, kills=6, rate=20, writes_before=15, writes_after=15)


def test_readme_canary_keeps_writes_on_the_owner(rig: Rig) -> None:
    """Issue 11's divergence: the canary on the shipped routes once sent staff writes to the
    catalog, which kept them (and lost them to the next CDC upsert). Now writes stay on the
    owner, the copy equals the monolith, and the copy's database refuses application writes."""
    rig.prepare()
    rig.up()
    install_write_log(rig)
    traffic = Traffic(rig, rate=20, seed=3, staff_writes=0.25)
    try:
        with Readers(rig.url) as readers:  # fixed cohorts: every step sees catalog reads
            canary = rig.cli("canary", "products", "--to", "catalog", "--steps", "10,50,100", "--interval", "2s",
                             "--min-requests", "5", "--max-p99-ratio", "1000", "--json")
            wait_for("staff writes", lambda: app_writes(rig, "monolith") >= 10
                     and app_writes(rig, "monolith", inserts=True) >= 1)
        summary = traffic.stop()
    finally:
        traffic.kill()
    assert json.loads(canary.stdout)["outcome"] == "promoted"
    assert summary["failures_total"] == 0, summary["failures"]
    assert readers.failed == 0 and readers.sent > 0
    rig.drained("catalog")
    doc = rig.verify("catalog")
    assert doc["exit"] == 0 and doc["differing"] == 0, doc
    verdict = check_log(read_log(rig))
    assert verdict["counts"]["catalog_app_writes"] == 0  # every write went to the owner
    assert verdict["problems"] == {"exactly_once": [], "foreign": [], "lost_update": [], "id_collisions": []}
    refused = app_write(rig.url_of("catalog"), "UPDATE products SET name = 'stray' WHERE id = 1")
    assert refused is not None and "is written by monolith now" in refused


@pytest.mark.postgres
@pytest.mark.kafka
def test_postgres_over_kafka_flip_under_traffic_and_kill_9(rig: Rig, pg_server: Any, kafka_broker: Any) -> None:
    """`up --real` on the session's PostgreSQL (STRANGLER_PG_DSN) and Kafka broker: leaner, one kill."""
    rig.real, rig.kafka_bootstrap = True, kafka_broker.bootstrap
    rig.prepare()
    rig.env["STRANGLER_PG_DSN"] = pg_server.dsn
    try:
        migrate(rig, seed=5, kills=1, rate=15, writes_before=8, writes_after=8)
    finally:
        rig.down()
        drop_databases(pg_server.dsn, "monolith", "catalog")  # and their slots: no WAL pinned


def drop_databases(dsn: str, *names: str) -> None:
    import psycopg2

    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                        "WHERE database = ANY(%s) AND NOT active", (list(names),))
            for name in names:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()
