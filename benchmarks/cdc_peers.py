"""The peers benchmarks/cdc.py measures ours against, on the issue-14 table (cdc_workload).

* **COPY pass-through** (the initial copy's peer): ``COPY (SELECT ..mapped..) TO STDOUT`` on
  the source piped, as it streams, into ``COPY .. FROM STDIN`` on the target, binary or
  text format; the price is mapped to cents in the SELECT. Two connections, one pipe, one
  thread: nothing is buffered beyond the pipe and psycopg2's chunks.
* **PostgreSQL's logical replication subscriber** (the streaming peer): ``CREATE
  SUBSCRIPTION`` in the target database on a publication and a pgoutput slot of the source
  database, on the same server (so the slot is made beforehand and the subscription told
  ``create_slot = false``: creating it would wait for the CREATE SUBSCRIPTION itself), no
  initial copy. It cannot convert a column, so its target table has the source's columns
  (numeric price): it moves the same rows with less work than ours, which maps the price
  to cents on the way.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator

import psycopg2
from cdc_workload import MAPPED_SELECT, MONOLITH, MONOLITH_DDL, SERVICE, SERVICE_COLUMNS, sql

PIPE_SIZE = 1 << 20  # bytes the pipe holds between the two COPYs (Linux F_SETPIPE_SZ)
CHUNK = 1 << 16  # bytes per read on the target side


def copy_pass_through(src: str, tgt: str, *, binary: bool) -> int:
    """COPY the monolith table, price mapped to cents, from `src` into the empty service
    table of `tgt` (committed); returns the rows the target counted."""
    fmt = " (FORMAT binary)" if binary else ""
    read, write = os.pipe()
    with contextlib.suppress(OSError):  # a larger pipe: fewer wake-ups per row
        fcntl.fcntl(write, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
    source, target = psycopg2.connect(src), psycopg2.connect(tgt)
    failed: list[BaseException] = []

    def export() -> None:
        try:
            with os.fdopen(write, "wb", buffering=CHUNK) as out:
                source.cursor().copy_expert(f"COPY ({MAPPED_SELECT}) TO STDOUT{fmt}", out)
        except BaseException as exc:  # reported by the caller; the closed pipe ends the import
            failed.append(exc)

    exporter = threading.Thread(target=export, name="copy-export")
    exporter.start()
    try:
        with os.fdopen(read, "rb", buffering=CHUNK) as inp:  # closed on error: the export stops
            cur = target.cursor()
            cur.copy_expert(f"COPY {SERVICE} ({', '.join(SERVICE_COLUMNS)}) FROM STDIN{fmt}", inp, size=CHUNK)
        exporter.join()
        if failed:
            raise failed[0]
        n = cur.rowcount
        target.commit()
        return int(n)
    finally:
        exporter.join()
        source.close()
        target.close()


@contextlib.contextmanager
def native_subscriber(src: str, tgt: str, tag: str) -> Iterator[dict[str, float]]:
    """A subscription from `tgt` to the monolith table of `src` (both have the table, empty),
    applying when entered; dropped, with its slot, on exit. Yields its figures (none)."""
    pub, slot, sub = f"p_{tag}", f"s_{tag}", f"sub_{tag}"
    sql(src, f"CREATE PUBLICATION {pub} FOR TABLE {MONOLITH}",
        f"SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')")
    sql(tgt, f"CREATE SUBSCRIPTION {sub} CONNECTION '{src}' PUBLICATION {pub} "
             f"WITH (create_slot = false, slot_name = '{slot}', copy_data = false)")
    try:
        wait_slot_active(src, slot)
        yield {}
    finally:
        sql(tgt, f"ALTER SUBSCRIPTION {sub} DISABLE", f"ALTER SUBSCRIPTION {sub} SET (slot_name = NONE)",
            f"DROP SUBSCRIPTION {sub}")
        drop_slot(src, slot)


def native_tables(src: str, tgt: str) -> None:
    """The native peer's tables: the same columns on both sides (it cannot convert)."""
    sql(src, MONOLITH_DDL)
    sql(tgt, MONOLITH_DDL)


def wait_slot_active(dsn: str, slot: str, timeout: float = 60.0) -> None:
    """Until a walsender streams from `slot` (the subscriber or our pipeline is attached)."""
    deadline = time.monotonic() + timeout
    while not sql(dsn, f"SELECT 1 FROM pg_replication_slots WHERE slot_name = '{slot}' AND active"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nobody streams from slot {slot} after {timeout:.0f} s")
        time.sleep(0.01)


def drop_slot(dsn: str, slot: str) -> None:
    for _ in range(200):  # the walsender exits shortly after its client goes
        if not sql(dsn, f"SELECT 1 FROM pg_replication_slots WHERE slot_name = '{slot}' AND active"):
            break
        time.sleep(0.05)
    sql(dsn, f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{slot}'")
