"""PostgreSQL -> PostgreSQL streams, end to end, through the real `strangler cdc run` process."""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from typing import Any

import psycopg2
import pytest

from tests.cdc.conftest import Env, source_rows, sql, stream_spec, target_rows, wait_for

pytestmark = pytest.mark.postgres


def big_text(rng: random.Random) -> str:
    # incompressible, > 2 kB: stored out of line (TOAST), so unchanged updates send a placeholder
    return "".join(f"{rng.getrandbits(128):032x}" for _ in range(300))


def seed(env: Env, products: int = 1500) -> None:
    sql(env.src, "INSERT INTO catalog_category (name) SELECT 'cat ' || g FROM generate_series(1, 20) g")
    sql(env.src, f"""INSERT INTO catalog_product (category_id, name, price, description)
                     SELECT 1 + g % 20, 'product ' || g, (g % 500) + 0.99, 'short'
                     FROM generate_series(1, {products}) g""")


def workload(env: Env, stop: threading.Event, seed_: int, stats: dict[str, int]) -> None:
    """Random transactions: inserts, updates (version + 1), deletes, rollbacks, a large one, TOAST."""
    rng = random.Random(seed_)
    conn = psycopg2.connect(env.src)
    cur = conn.cursor()
    cur.execute("SELECT setseed(%s)", (rng.uniform(-1, 1),))  # the ORDER BY random() below too
    large_done = False
    while not stop.is_set():
        kind = rng.random()
        cur.execute("SELECT id FROM catalog_product ORDER BY random() LIMIT 5")
        ids = [r[0] for r in cur.fetchall()]
        if not large_done and stats["txns"] > 30:
            # a large transaction: many rows, applied in bounded batches on the other side
            cur.execute("""INSERT INTO catalog_product (category_id, name, price, description)
                           SELECT 1 + g % 20, 'bulk ' || g, 1.25, 'bulk' FROM generate_series(1, 6000) g""")
            cur.execute("UPDATE catalog_product SET version = version + 1, price = price + 1 "
                        "WHERE name LIKE 'bulk %' AND id % 3 = 0")
            large_done = True
        elif kind < 0.35:
            for _ in range(rng.randint(1, 5)):
                cur.execute("INSERT INTO catalog_product (category_id, name, price, description) "
                            "VALUES (%s, %s, %s, %s)",
                            (rng.randint(1, 20), f"new {rng.random():.6f}", rng.randint(0, 99999) / 100,
                             big_text(rng) if rng.random() < 0.3 else "plain"))
        elif kind < 0.7 and ids:
            for i in ids[: rng.randint(1, 5)]:
                if rng.random() < 0.5:  # description untouched: TOAST placeholder in the WAL
                    cur.execute("UPDATE catalog_product SET version = version + 1, price = price + 0.01 "
                                "WHERE id = %s", (i,))
                else:
                    cur.execute("UPDATE catalog_product SET version = version + 1, description = %s "
                                "WHERE id = %s", (big_text(rng), i))
        elif kind < 0.85 and ids:
            cur.execute("DELETE FROM catalog_product WHERE id = %s", (ids[0],))
        else:
            cur.execute("INSERT INTO catalog_category (name) VALUES ('doomed')")
            cur.execute("UPDATE catalog_product SET version = version + 100 WHERE id = ANY(%s)", (ids,))
            conn.rollback()  # never visible, never streamed
            stats["rollbacks"] += 1
            continue
        conn.commit()
        stats["txns"] += 1
        time.sleep(rng.random() * 0.01)
    conn.close()


def caught_up(env: Env) -> bool:
    return source_rows(env.src) == target_rows(env.tgt)


@pytest.mark.slow
def test_random_workload_with_kills_stays_equal_and_applies_nothing_twice(cdc_env: Env) -> None:
    env = cdc_env
    seed(env)
    rng = random.Random(4)
    stats = {"txns": 0, "rollbacks": 0}
    stop = threading.Event()
    proc = env.start()
    time.sleep(0.3)  # first kill lands during the initial copy (chunks of 300 rows)
    worker = threading.Thread(target=workload, args=(env, stop, 7, stats))
    worker.start()
    kills = 0
    try:
        for _ in range(10):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            proc = env.start()
            time.sleep(rng.uniform(0.4, 1.6))
    finally:
        stop.set()
        worker.join()
    assert kills >= 10 and stats["txns"] > 30 and stats["rollbacks"] > 0
    wait_for(lambda: caught_up(env), 90, "the target to equal the source")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, env.log_text()[-3000:]

    # row for row, directly
    assert source_rows(env.src) == target_rows(env.tgt)
    # nothing applied twice: every (row, version) the sink wrote, it wrote once
    dupes = sql(env.tgt, "SELECT id, version, count(*) FROM applied_log GROUP BY 1, 2 HAVING count(*) > 1")
    assert dupes == []
    # and verify agrees
    out = env.cli("verify", env.name, "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["equal"] is True
    # the slot is acknowledged up to what is durable, never beyond the server
    slot = sql(env.src, "SELECT confirmed_flush_lsn <= pg_current_wal_lsn() FROM pg_replication_slots "
                        "WHERE database = current_database()")
    assert slot == [(True,)]


def test_poison_event_goes_to_dead_letter_and_stream_continues(cdc_env: Env) -> None:
    env = cdc_env
    seed(env, products=10)
    proc = env.start()
    wait_for(lambda: caught_up(env), 30, "initial copy")
    sql(env.src, "INSERT INTO catalog_product (id, category_id, name, price) VALUES (9001, 1, 'bad', -5)")
    sql(env.src, "INSERT INTO catalog_product (id, category_id, name, price) VALUES (9002, 1, 'good', 5)")
    wait_for(lambda: sql(env.tgt, "SELECT count(*) FROM products WHERE id = 9002") == [(1,)], 30,
             "the event after the poison one")
    dead = sql(env.tgt, "SELECT source_table, op, reason, event FROM strangler_cdc_dead_letter")
    assert len(dead) == 1
    table, op, reason, event = dead[0]
    assert (table, op) == ("catalog_product", "c") and "check" in reason.lower()
    assert json.loads(event)["after"]["id"] == 9001
    wait_for(lambda: (json.loads(env.cli("cdc", "status", env.name, "--json").stdout)["streams"][0]
                      .get("running") or {}).get("dead_letters") == 1, 30, "status to show it")
    status = json.loads(env.cli("cdc", "status", env.name, "--json").stdout)["streams"][0]
    assert status["dead_letters"] == 1 and status["position"]
    assert status["running"]["state"] == "streaming" and status["running"]["events"] >= 12
    assert status["slot"]["active"] is True and isinstance(status["slot"]["wal_bytes_behind"], int)
    # the run's own file carries the slot's health too (the dashboard reads it from there)
    run = json.loads((env.folder / "state" / "cdc" / f"{env.name}.json").read_text())
    assert run["slot"]["wal_status"] == "reserved" and run["slot"]["active"] is True
    assert status["snapshot"] == {"catalog_category": "done", "catalog_product": "done"}
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def test_idle_slot_follows_the_server(cdc_env: Env, pg_server: Any) -> None:
    env = cdc_env
    seed(env, products=5)
    proc = env.start()
    wait_for(lambda: caught_up(env), 30, "initial copy")
    other = pg_server.create_database(f"other_{id(env) % 100000}")
    sql(other, "CREATE TABLE noise (x int)")
    sql(other, "INSERT INTO noise SELECT generate_series(1, 20000)")  # WAL the stream does not want
    head = sql(env.src, "SELECT pg_current_wal_lsn()::text")[0][0]
    wait_for(lambda: sql(env.src, "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots "
                                  "WHERE database = current_database()", (head,)) == [(True,)], 30,
             "the idle slot to confirm the server's position")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def test_schema_change_stops_clearly_and_restarts_after_fix(cdc_env: Env) -> None:
    env = cdc_env
    seed(env, products=5)
    proc = env.start()
    wait_for(lambda: caught_up(env), 30, "initial copy")
    sql(env.src, "UPDATE catalog_product SET name = 'before ddl' WHERE id = 1")
    wait_for(lambda: caught_up(env), 30, "the change before the DDL")
    position = sql(env.tgt, "SELECT lsn, seq FROM strangler_cdc_position WHERE source_table = ''")
    sql(env.src, "ALTER TABLE catalog_product ADD COLUMN color text")
    sql(env.src, "INSERT INTO catalog_product (category_id, name, price, color) VALUES (1, 'after', 1, 'red')")
    assert proc.wait(30) == 1
    log = env.log_text()
    assert "catalog_product" in log and "new column 'color'" in log and "streams.yaml" in log
    # position intact: the change after the DDL was not applied and is not lost
    assert sql(env.tgt, "SELECT lsn, seq FROM strangler_cdc_position WHERE source_table = ''") == position
    assert sql(env.tgt, "SELECT count(*) FROM products WHERE title = 'after'") == [(0,)]
    # fix the mapping (the service does not want the colour), restart: it arrives
    spec = stream_spec(env.src, env.tgt)
    spec["tables"]["catalog_product"]["drop"] = ["color"]
    env.write_streams(spec)
    proc = env.start()
    wait_for(lambda: sql(env.tgt, "SELECT count(*) FROM products WHERE title = 'after'") == [(1,)], 30,
             "the change after the DDL")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def test_table_without_key_is_refused_at_configuration(cdc_env: Env) -> None:
    env = cdc_env
    sql(env.src, "CREATE TABLE audit_log (at timestamptz, message text)")
    sql(env.tgt, "CREATE TABLE audit (at timestamptz, message text)")
    spec = stream_spec(env.src, env.tgt)
    spec["tables"]["audit_log"] = {"target": "audit"}
    env.write_streams(spec)
    out = env.cli("cdc", "run", env.name, timeout=60)
    assert out.returncode == 2
    assert "audit_log" in out.stderr and "no primary key" in out.stderr
    # nothing was created on the source
    assert sql(env.src, "SELECT count(*) FROM pg_replication_slots WHERE database = current_database()") == [(0,)]


def test_mistyped_stream_and_table_say_what_exists(cdc_env: Env) -> None:
    out = cdc_env.cli("cdc", "run", "shpo")
    assert out.returncode == 2 and "shop" in out.stderr
    out = cdc_env.cli("cdc", "snapshot", "shop", "catalog_prodcut")
    assert out.returncode == 2 and "catalog_product" in out.stderr


def test_verify_names_differing_keys_like_a_full_comparison(cdc_env: Env) -> None:
    env = cdc_env
    seed(env, products=2500)
    proc = env.start()
    wait_for(lambda: caught_up(env), 60, "initial copy")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    out = env.cli("verify", env.name, "--json", "--chunk", "700")
    assert out.returncode == 0 and json.loads(out.stdout)["equal"], out.stdout + out.stderr
    # diverge behind the stream's back
    sql(env.tgt, "DELETE FROM products WHERE id = 17")
    sql(env.tgt, "UPDATE products SET price_cents = price_cents + 1 WHERE id = 1234")
    sql(env.tgt, "INSERT INTO products (id, title, price_cents, version) VALUES (99999, 'ghost', 1, 1)")
    sql(env.tgt, "UPDATE categories SET name = 'renamed' WHERE id = 3")
    out = env.cli("verify", env.name, "--json", "--chunk", "700", "--recheck-wait", "0.1")
    assert out.returncode == 3
    report = {t["table"]: t for t in json.loads(out.stdout)["tables"]}
    # the same answer as comparing everything directly
    src, tgt = source_rows(env.src), target_rows(env.tgt)
    for table, target in (("catalog_product", "products"), ("catalog_category", "categories")):
        a = {r[0]: r for r in src[target]}
        b = {r[0]: r for r in tgt[target]}
        assert sorted(k[0] for k in report[table]["missing"]) == sorted(set(a) - set(b))
        assert sorted(k[0] for k in report[table]["extra"]) == sorted(set(b) - set(a))
        assert sorted(k[0] for k in report[table]["different"]) == sorted(k for k in a if k in b and a[k] != b[k])
    assert report["catalog_product"]["missing"] == [[17]]
    assert report["catalog_product"]["extra"] == [[99999]]
    assert report["catalog_product"]["different"] == [[1234]]
