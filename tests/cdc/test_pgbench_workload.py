"""A workload nobody here wrote: pgbench drives the source while `strangler cdc run` is killed -9.

Two clients run a fixed-seed custom script: inserts of rows with a large (out-of-line
TOASTed) text, updates that leave it untouched, key changes of those rows, deletes, and
updates that move rows between the partitions of a partitioned table. The stream runs as a
real process and is killed -9 during each phase; after the last restart has caught up, both
sides are compared by md5 of their ordered rows (not with `strangler verify`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from devstack.postgres import find_bindir
from tests.cdc.conftest import Env, sql, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

# one pgbench phase per seed, a kill in each; the rate limit (total tps) keeps a phase ~1.5 s
CLIENTS, TRANSACTIONS, RATE, SEEDS = 2, 100, 140, (11, 12, 13)

DDL = """
CREATE TABLE docs (id int PRIMARY KEY, n int NOT NULL DEFAULT 0, body text);
CREATE TABLE parts (id int, bucket int, v int NOT NULL DEFAULT 0, PRIMARY KEY (id, bucket)) {partitioned};
"""
PARTITIONS = """
CREATE TABLE parts_a PARTITION OF parts FOR VALUES FROM (0) TO (10);
CREATE TABLE parts_b PARTITION OF parts FOR VALUES FROM (10) TO (20);
CREATE TABLE parts_c PARTITION OF parts FOR VALUES FROM (20) TO (30);
"""
# ~4.8 kB of hex digits: too big to stay inline and too random for pglz, so TOASTed out of line
BODY = "(SELECT string_agg(md5({id}::text || g), '') FROM generate_series(1, 150) g)"

# Each client owns ids client_id * 1000 + 1..40 (and their negatives), so no two clients touch
# one row and no statement can fail: a key change is a sign flip guarded against its twin.
SCRIPT = f"""
\\set x random(1, 40) + :client_id * 1000
\\set y random(1, 40) + :client_id * 1000
\\set z random(1, 40) + :client_id * 1000
\\set b random(0, 29)
INSERT INTO docs SELECT :x, 0, {BODY.format(id=":x")} WHERE NOT EXISTS (SELECT 1 FROM docs WHERE id IN (:x, -:x));
UPDATE docs SET n = n + 1 WHERE id IN (:y, -:y);
UPDATE docs SET id = -id, n = n + 1 WHERE id = :x AND NOT EXISTS (SELECT 1 FROM docs WHERE id = -:x);
UPDATE docs SET id = -id WHERE id = -:y AND NOT EXISTS (SELECT 1 FROM docs WHERE id = :y);
UPDATE docs SET body = body || 'x' WHERE id = :z AND :b < 3;
DELETE FROM docs WHERE id IN (:z, -:z) AND :b > 24;
INSERT INTO parts SELECT :x, :b, 0 WHERE NOT EXISTS (SELECT 1 FROM parts WHERE id = :x);
UPDATE parts SET bucket = :b, v = v + 1 WHERE id = :y AND bucket <> :b;
UPDATE parts SET v = v + 1 WHERE id = :z;
DELETE FROM parts WHERE id = :z AND :b > 26;
"""

MD5 = {"docs": "SELECT count(*), md5(string_agg(t::text, ',' ORDER BY id)) FROM docs t",
       "parts": "SELECT count(*), md5(string_agg(t::text, ',' ORDER BY id, bucket)) FROM parts t"}


def pgbench() -> str:
    try:
        path = os.path.join(find_bindir(), "pgbench")
        if os.path.isfile(path):
            return path
    except Exception:  # no server binaries here: PATH may still have the client tools
        pass
    found = shutil.which("pgbench")
    if found is None:
        pytest.skip("pgbench is not installed (Debian/Ubuntu: apt-get install postgresql-contrib)")
    return found


def slot_flushed(env: Env) -> int:
    rows = sql(env.src, "SELECT confirmed_flush_lsn - '0/0'::pg_lsn FROM pg_replication_slots "
                        "WHERE database = current_database()")
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def slot_active(env: Env) -> bool:
    return sql(env.src, "SELECT active FROM pg_replication_slots WHERE database = current_database()") == [(True,)]


def test_pgbench_workload_under_kills_leaves_the_target_equal(cdc_env: Env) -> None:
    env = cdc_env
    sql(env.src, DDL.format(partitioned="PARTITION BY RANGE (bucket)") + PARTITIONS)
    sql(env.tgt, DDL.format(partitioned=""))
    for client in range(CLIENTS):
        lo = client * 1000
        sql(env.src, f"INSERT INTO docs SELECT g, 0, {BODY.format(id='g')} FROM generate_series({lo + 1}, {lo + 30}) g")
        sql(env.src, f"INSERT INTO parts SELECT g, g % 30, 0 FROM generate_series({lo + 1}, {lo + 30}) g")
    env.write_streams({"source": {"url": env.src}, "target": {"url": env.tgt}, "batch_size": 50,
                       "tables": {"docs": "docs", "parts": "parts"}})
    script = env.folder / "workload.sql"
    script.write_text(SCRIPT)

    proc = env.start()
    wait_for(lambda: copied(env), 60, "the initial copy")
    for seed in SEEDS:
        wait_for(lambda: slot_active(env), 60, "the stream to be streaming")
        bench = run_pgbench(env, script, seed)
        start = slot_flushed(env)
        # kill -9 once this process has made part of the phase durable (or the phase is over)
        wait_for(lambda: slot_flushed(env) > start or bench.poll() is not None, 60, "stream progress")  # noqa: B023
        proc.kill()
        proc.wait()
        wait_for(lambda: not slot_active(env), 30, "the killed stream's walsender to let go")
        proc = env.start()
        assert bench.wait(60) == 0, (env.folder / "pgbench.log").read_text()

    # the insert position: under synchronous_commit off the write position may lag the last commits
    end = sql(env.src, "SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn")[0][0]
    wait_for(lambda: slot_flushed(env) >= end, 60, "the stream to catch up")
    assert proc.poll() is None, env.log_text()[-3000:]
    for table, query in MD5.items():
        assert sql(env.tgt, query) == sql(env.src, query), f"{table} differs"
    # the workload did change keys of TOASTed rows and move rows between partitions
    assert sql(env.src, "SELECT count(*) > 10 FROM docs WHERE id < 0") == [(True,)]
    assert sql(env.src, "SELECT count(*) > 10 FROM parts WHERE bucket <> id % 30") == [(True,)]
    assert sql(env.tgt, "SELECT count(*) FROM strangler_cdc_dead_letter") == [(0,)]


def copied(env: Env) -> bool:
    """Both tables' initial copy is committed (a kill now cannot restart it)."""
    if not sql(env.tgt, "SELECT 1 FROM pg_tables WHERE tablename = 'strangler_cdc_snapshot'"):
        return False
    return sql(env.tgt, "SELECT count(*) FROM strangler_cdc_snapshot WHERE state = 'done'") == [(2,)]


def run_pgbench(env: Env, script: Path, seed: int) -> subprocess.Popen[bytes]:
    log = open(env.folder / "pgbench.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([pgbench(), "-n", "-f", str(script), "-c", str(CLIENTS), "-t", str(TRANSACTIONS),
                             "-R", str(RATE), f"--random-seed={seed}", env.src], stdout=log, stderr=log)
