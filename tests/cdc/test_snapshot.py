"""Re-copies that leave nothing behind: ghost rows swept by key range, re-snapshot requests
that survive a crash, and the DBLog window keeping what the stream wrote meanwhile."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

import pytest

from cdc import faults
from cdc.config import parse
from cdc.events import ChangeEvent, Position, copy_progress
from cdc.mapping import TableSchema, compile_stream
from cdc.pipeline import Pipeline
from cdc.snapshot import Watermarks, initial_events
from cdc.sources import Message
from cdc.transport.direct import DirectTransport
from tests.cdc.conftest import Env, sql, stream_spec
from tests.cdc.test_stream_features import BIG, config, equal, running, seed, wait_for


def _ghosts(env: Env) -> None:
    """Rows only the target has: in the middle of the key range, and past its end."""
    sql(env.tgt, "INSERT INTO products (id, category_id, title, price_cents, version) "
                 "VALUES (3, 1, 'ghost in the middle', 1, 1), (99999, 1, 'ghost past the end', 1, 1)")


@pytest.mark.postgres
def test_resnapshot_removes_rows_the_source_no_longer_has(cdc_env: Env) -> None:
    env = cdc_env
    seed(env, 1000)
    with running(config(env, snapshot_chunk=250)):
        wait_for(equal(env), 30, "initial copy")
        sql(env.src, "DELETE FROM catalog_product WHERE id = 3")  # streamed: gone from both
        wait_for(equal(env), 30, "the delete")
        _ghosts(env)
        sql(env.tgt, "DELETE FROM products WHERE id % 7 = 0")  # and missing rows, as before
        assert not equal(env)()
        out = env.cli("cdc", "snapshot", env.name, "catalog_product")
        assert out.returncode == 0, out.stderr
        wait_for(equal(env), 60, "the re-copy, without the ghosts")
    assert sql(env.tgt, "SELECT count(*) FROM products WHERE title LIKE 'ghost%'") == [(0,)]


@pytest.mark.postgres
def test_forced_recopy_after_drop_removes_rows_deleted_meanwhile(cdc_env: Env) -> None:
    """The slot is gone (dropped, or invalidated): changes made since were never captured."""
    env = cdc_env
    seed(env, 600)
    cfg = config(env, snapshot_chunk=200)
    with running(cfg):
        wait_for(equal(env), 30, "initial copy")
    assert env.cli("cdc", "drop", env.name).returncode == 0
    sql(env.src, "DELETE FROM catalog_product WHERE id IN (1, 250, 600)")  # nobody captures these
    with running(cfg):
        wait_for(equal(env), 30, "the re-copy")
    assert sql(env.tgt, "SELECT count(*) FROM products WHERE id IN (1, 250, 600)") == [(0,)]


class _CrashOnFirstChunk(DirectTransport):
    """Dies (like a killed process) when the re-copy's first chunk is about to be handed over."""

    def publish(self, events: Sequence[ChangeEvent]) -> None:
        if any(e.op == "r" and e.position.lsn and e.snapshot in ("true", "range") for e in events):
            raise RuntimeError("crash before the first chunk")
        super().publish(events)


@pytest.mark.postgres
def test_resnapshot_request_survives_a_crash_before_the_copy(cdc_env: Env) -> None:
    env = cdc_env
    seed(env, 300)
    cfg = config(env, snapshot_chunk=100)
    with running(cfg):
        wait_for(equal(env), 30, "initial copy")
    sql(env.tgt, "DELETE FROM products WHERE id % 5 = 0")  # damage, then ask for a repair
    out = env.cli("cdc", "snapshot", env.name, "catalog_product")
    assert out.returncode == 0, out.stderr
    with pytest.raises(RuntimeError, match="crash before the first chunk"):
        Pipeline(cfg, transport=_CrashOnFirstChunk(), on_tick=lambda m: None).run()
    # the request is stored with the position it came at, not forgotten with the process
    state = sql(env.tgt, "SELECT state FROM strangler_cdc_snapshot WHERE source_table = 'catalog_product'")
    assert state == [("copying",)]
    with running(cfg):
        wait_for(equal(env), 30, "the re-copy resumed after the crash")


# -- the DBLog window, driven by hand (no database timing involved) ---------------------------

def _window_mapping(key_type: str = "INTEGER") -> Any:
    cfg = parse({"streams": {"s": {"source": {"url": "sqlite:///src.db"}, "target": {"url": "sqlite:///t.db"},
                                   "tables": {"items": "items"}}}}).stream("s")
    schema = TableSchema(name="items", columns={"id": key_type, "name": "TEXT"}, pk=("id",),
                         unique_sets=(("id",),))
    return compile_stream(cfg, {"items": schema}, {"items": schema}, source_kind="sqlite")


def test_window_keeps_rows_the_stream_wrote_between_the_watermarks() -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
    db.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"n{i}") for i in range(1, 11)])
    sent: list[dict[str, Any]] = []
    wm = Watermarks(stream="s", mappings=_window_mapping(), chunk=100,
                    emit=lambda b: sent.append(json.loads(b)), reader=lambda: (db.cursor(), "qmark"))
    wm.add("items", None)
    wm.tick()
    low = Message("strangler", json.dumps(sent[-1]).encode(), Position(10, 1))
    assert wm.on_message(low) == []  # reads the chunk: ids 1..10
    # between the chunk's read and its high watermark the stream changes ids 4 and 11
    wm.observe(ChangeEvent(op="u", table="items", key={"id": 4}, before=None,
                           after={"id": 4, "name": "streamed"}, position=Position(11, 1)))
    wm.observe(ChangeEvent(op="c", table="items", key={"id": 11}, before=None,
                           after={"id": 11, "name": "inserted"}, position=Position(12, 1)))
    high = Message("strangler", json.dumps(sent[-1]).encode(), Position(13, 1))
    events = wm.on_message(high)
    rows = [e.key["id"] for e in events if e.after is not None]
    assert 4 not in rows and rows == [1, 2, 3, 5, 6, 7, 8, 9, 10]  # the stream's id 4 wins
    marker = events[0]
    assert marker.snapshot == "range" and marker.extent is not None
    assert marker.extent["after"] is None and marker.extent["upto"] is None  # the final chunk
    keep = {k[0] for k in marker.extent["keep"]}
    assert {4, 11} <= keep and set(range(1, 11)) <= keep  # never swept as ghosts
    assert events[-1].snapshot == "last" and events[-1].last
    assert [e.position for e in events] == sorted(e.position for e in events)
    assert events[0].position > high.position


def _window_with_chunk(rows: int, chunk: int, key_type: str = "INTEGER") -> tuple[Watermarks, list[dict[str, Any]]]:
    """A window over items 1..rows (keys of `key_type`) whose first chunk has been read."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
    db.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"n{i}") for i in range(1, rows + 1)])
    sent: list[dict[str, Any]] = []
    wm = Watermarks(stream="s", mappings=_window_mapping(key_type), chunk=chunk,
                    emit=lambda b: sent.append(json.loads(b)), reader=lambda: (db.cursor(), "qmark"))
    wm.add("items", None)
    wm.tick()
    assert wm.on_message(Message("strangler", json.dumps(sent[-1]).encode(), Position(10, 1))) == []
    return wm, sent


def _moved(wm: Watermarks, old: int, new: int, at: int) -> None:
    """The stream moving row `old` to key `new` without its unchanged TOASTed `name`: as the
    PostgreSQL source gives it, an insert carrying the old key, then the old key's delete."""
    wm.observe(ChangeEvent(op="c", table="items", key={"id": new}, before={"id": old},
                           after={"id": new}, position=Position(at, 1), unchanged=("name",)))
    wm.observe(ChangeEvent(op="d", table="items", key={"id": old}, before={"id": old},
                           after=None, position=Position(at, 2)))


def _resume_key(events: Sequence[ChangeEvent]) -> Any:
    """Where a copy interrupted after these events resumes: the key its progress records."""
    progress = None
    for ev in events:
        progress = copy_progress(progress, ev, ("id",))
    return progress[1] if progress else None


def test_a_row_moved_during_a_chunk_never_moves_the_copy_past_rows_it_has_not_read() -> None:
    """Rows 1..5 are read; the stream moves row 2 to key 1000 and row 4 to key 0, each
    without its TOASTed name. Key 0 is behind the copy: the chunk completes it. Key 1000 is
    beyond the chunk: a later chunk reads it whole, and the copy resumes after 5, not 1000."""
    wm, sent = _window_with_chunk(rows=20, chunk=5)
    _moved(wm, 2, 1000, 11)
    _moved(wm, 4, 0, 12)
    events = wm.on_message(Message("strangler", json.dumps(sent[-1]).encode(), Position(13, 1)))
    rows = {e.key["id"]: e.after for e in events if e.after is not None}
    assert 1000 not in rows  # left to the chunk that reads (5, ...]
    assert 2 not in rows and 4 not in rows  # the source no longer has them
    assert rows[0] == {"id": 0, "name": "n4"}  # completed from the chunk's copy of row 4
    assert _resume_key(events) == [5]
    assert wm.pending["items"] == [5]


def test_a_chunk_whose_last_row_is_a_completion_resumes_at_its_last_row_read() -> None:
    """Keys the copy cannot order (text) are completed wherever the row moved; the rows
    read still come last, so the progress is the last key read."""
    wm, sent = _window_with_chunk(rows=20, chunk=5, key_type="TEXT")  # SQLite keeps the integers
    assert not wm.mappings["items"].key_orders_alike
    _moved(wm, 3, 1000, 11)
    events = wm.on_message(Message("strangler", json.dumps(sent[-1]).encode(), Position(13, 1)))
    rows = [e.key["id"] for e in events if e.after is not None]
    assert rows[0] == 1000 and rows[1:] == [1, 2, 4, 5]
    assert _resume_key(events) == [5]


def test_initial_copy_chunks_carry_contiguous_ranges() -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
    db.executemany("INSERT INTO items VALUES (?, ?)", [(i, "x") for i in range(1, 8)])
    tm = _window_mapping()["items"]
    chunks = list(initial_events(db.cursor(), "qmark", tm, 3))
    extents = [c[0].extent for c in chunks]
    assert [(e["after"], e["upto"]) for e in extents] == [(None, [3]), ([3], [6]), ([6], None)]
    assert [sorted(k[0] for k in e["keep"]) for e in extents] == [[1, 2, 3], [4, 5, 6], [7]]


@pytest.mark.postgres
@pytest.mark.slow
def test_changes_without_their_toast_values_during_a_copy_are_completed_by_it(cdc_env: Env) -> None:
    """A copy while streaming (`cdc install`, then `run`): a partial image (unchanged TOAST)
    of a row the target does not hold yet is completed by the copy, never dead-lettered."""
    env = cdc_env
    seed(env, 10)
    sql(env.src, f"UPDATE catalog_product SET description = ({BIG}) WHERE id IN (2, 3, 8)")
    spec = stream_spec(env.src, env.tgt, snapshot_chunk=5)
    env.write_streams(spec)
    assert env.cli("cdc", "install", env.name).returncode == 0  # capture now, copy on `run`
    # chunk reads: categories 1..5, categories' empty last one, then products 1..5: pause there
    proc = env.start("snapshot.after_chunk_read=pause@3")
    faults.wait_hit(env.faults_dir, "snapshot.after_chunk_read")  # products 1..5 read, not applied
    sql(env.src, "UPDATE catalog_product SET version = 2 WHERE id = 2")  # in the chunk in flight
    sql(env.src, "UPDATE catalog_product SET id = 3000 WHERE id = 3")  # ... moved out of it
    sql(env.src, "UPDATE catalog_product SET version = 2 WHERE id = 8")  # beyond the copy
    faults.release(env.faults_dir, "snapshot.after_chunk_read")
    try:
        wait_for(equal(env), 60, "the copy to complete the rows")
        assert sql(env.tgt, "SELECT position, op, reason FROM strangler_cdc_dead_letter") == []
    finally:
        proc.terminate()
        proc.wait(30)
