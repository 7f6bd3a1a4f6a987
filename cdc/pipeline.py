"""Wires one stream: source -> (snapshot) -> transport -> sink, with checkpoints and metrics.

Reads top to bottom like the flow: validate the mapping against both schemas, open the
sink, learn where the capture left off (the sink's checkpoints, or the transport's own
progress when the apply end runs apart: then this process never opens the target), open
the source (creating the slot and copying inside its exported snapshot if it is new),
finish any interrupted copy with watermarks, then stream: poll the source, publish, apply
in bounded batches, commit at source transaction boundaries, acknowledge what is durable. Stops cleanly when `stop()` is called
(finishing the batch and storing the position), or with SchemaChanged on a relation the
mapping no longer covers.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import gc
import importlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from cdc import faults, pgcopy
from cdc import mapping as mapping_mod
from cdc.applier import Applier
from cdc.config import StreamConfig
from cdc.errors import CDCError, ConfigError
from cdc.events import ChangeEvent
from cdc.metrics import LagTracker, StreamMetrics
from cdc.sinks.sqlalchemy import SqlSink, describe, make_engine
from cdc.snapshot import Watermarks, initial_events
from cdc.sources import Message, Relation, Source, make_source
from cdc.transport import CopyState, Transport

log = logging.getLogger("cdc.pipeline")
SLOT_FIELDS = ("slot", "active", "wal_status", "retained_wal_bytes", "safe_wal_size", "warning")


def tune_gc_for_streaming(young: int = 20_000) -> None:
    """For a process whose work is running streams (`strangler cdc run`): what was loaded so
    far lives as long as the process, so the collector stops scanning it (`gc.freeze`), and
    it runs less often on the events' dicts, which never form cycles: once `young` more
    objects are alive than at the last collection. Without this a stream spends a sixth of
    its time in the collector (benchmarks/README.md)."""
    gc.freeze()
    gc.set_threshold(young, 10, 10)


def make_transport(cfg: StreamConfig) -> Transport:
    """The transport of kind `k` from module ``cdc.transport.<k>`` (its ``make_transport``)."""
    kind = str(cfg.transport.get("kind", "direct"))
    try:
        module = importlib.import_module(f"cdc.transport.{kind}")
    except ImportError as exc:
        raise ConfigError(f"streams.{cfg.name}.transport.kind",
                          f"unknown transport {kind!r} ({exc}); known: direct, kafka") from None
    factory = getattr(module, "make_transport", None)
    if factory is None:
        raise ConfigError(f"streams.{cfg.name}.transport.kind",
                          f"module cdc.transport.{kind} has no make_transport(cfg)")
    transport: Transport = factory(cfg)
    return transport


def open_stream(cfg: StreamConfig) -> tuple[Source, Any, dict[str, mapping_mod.TableMapping]]:
    """Source, target engine and the mapping validated against both live schemas."""
    tables = [t.source for t in cfg.tables]
    source = make_source(cfg, tables)
    try:
        engine = make_engine(cfg.target_url)
        mappings = mapping_mod.compile_stream(cfg, source.describe(tables), describe(engine),
                                              source_kind=cfg.source_kind)
    except BaseException:
        source.close()
        raise
    source.keys = {t: m.key for t, m in mappings.items()}
    return source, engine, mappings


def open_source(cfg: StreamConfig) -> tuple[Source, dict[str, mapping_mod.TableMapping]]:
    """Source and the mapping checked against it alone, for a capture end that runs apart
    (its apply end checks the target side, where it writes)."""
    tables = [t.source for t in cfg.tables]
    source = make_source(cfg, tables)
    try:
        mappings = mapping_mod.compile_stream(cfg, source.describe(tables), None, source_kind=cfg.source_kind)
    except BaseException:
        source.close()
        raise
    source.keys = {t: m.key for t, m in mappings.items()}
    return source, mappings


def _live_columns(source: Source, table: str) -> dict[str, str]:
    """The source table's columns as they are now (not as of the stream's position)."""
    return source.describe([table])[table].columns


class Pipeline:
    """One stream. Capture (source, snapshot) runs in the caller's thread; apply (sink) in a
    worker thread fed through the transport, so decoding overlaps with target writes.

    With ``applies=False`` it is only the capture half of a stream whose apply half runs
    elsewhere (:mod:`cdc.transport.kafka_run`): "wait until the sink took everything"
    becomes "until the transport took everything", and nothing is applied here.
    """

    def __init__(self, cfg: StreamConfig, *, transport: Transport | None = None,
                 on_tick: Callable[[StreamMetrics], None] | None = None, applies: bool = True) -> None:
        self.cfg = cfg
        self.transport = transport or make_transport(cfg)
        if not applies and self.transport.in_process:
            raise ConfigError(f"streams.{cfg.name}.transport",
                              "the direct transport applies in the capturing process; use kind: kafka "
                              "to run the capture and apply halves apart")
        self.publisher = self.transport.publisher()
        self.applies = applies
        self.metrics = StreamMetrics(stream=cfg.name if applies else f"{cfg.name}.capture")
        self._lag = LagTracker()
        self.on_tick = on_tick or (lambda m: m.save())
        self._stop = False
        self._last_tick = 0.0
        self._apply_stop = threading.Event()
        self._apply_error: BaseException | None = None
        self._applier: Applier | None = None
        self._sink: SqlSink | None = None  # with `applies`: the in-process apply end's
        self._apply_thread: threading.Thread | None = None
        self._database = ""  # the source's, for snapshot rows (streamed ones carry it already)
        self._default_schema = "public" if cfg.source_kind == "postgres" else ""

    def stop(self) -> None:
        self._stop = True

    def run(self, *, until: Callable[[], bool] | None = None) -> None:
        """Run until stop() (or `until()` returns True)."""
        engine: Any = None
        if self.applies:
            source, engine, mappings = open_stream(self.cfg)
            self._sink = SqlSink(stream=self.cfg.name, engine=engine, mappings=mappings,
                                 ownership_path=self.cfg.ownership_path)
        else:  # the capture half alone: the target is the apply half's
            source, mappings = open_source(self.cfg)
        sink = self._sink
        try:
            self._run(source, mappings, until or (lambda: False))
            self.metrics.state = "stopped"
        except BaseException as exc:
            self.metrics.state = "failed"
            self.metrics.error = str(exc)
            raise
        finally:
            self._stop_applier()
            if sink is not None:
                sink.rollback()  # a half-applied source transaction is dropped; it will replay
            self._tick(source, force=True)
            if sink is not None:
                sink.close()
                engine.dispose()
            source.close()
            self.transport.close()

    # -- where the capture left off -----------------------------------------------------
    def _position(self) -> Any:
        """The position the source resumes after."""
        progress = self.publisher.progress()
        if progress is not None:
            return progress.position
        assert self._sink is not None
        return self._sink.position

    def _copies(self) -> dict[str, CopyState]:
        """Each table's copy state (absent: never copied)."""
        progress = self.publisher.progress()
        if progress is not None:
            return progress.copies
        assert self._sink is not None
        return self._sink.snapshot_state

    def _start_over(self) -> None:
        """A new capture point: every checkpoint from before is void, on both ends."""
        self.publisher.start_over()
        self._drain()

    # -- capture side -------------------------------------------------------------------
    def _run(self, source: Source, mappings: dict[str, mapping_mod.TableMapping],
             until: Callable[[], bool]) -> None:
        if self._sink is not None:
            self._start_applier(self._sink)
        self.publisher.describe({table: tm.source_schema for table, tm in mappings.items()})
        self._database = source.database
        init = source.open(self._position())
        if init is not None:
            self._start_over()
        if init is not None and self.cfg.initial == "none":
            init.close()  # the target already holds every row: stream from the new capture point
            log.info("%s: new capture point, no copy (initial: none)", self.cfg.name)
        elif init is not None:
            self.metrics.state = "snapshot"
            try:
                self._initial_copy(init, mappings)
            finally:
                init.close()
        wm = Watermarks(stream=self.cfg.name, mappings=mappings, chunk=self.cfg.snapshot_chunk,
                        emit=source.emit_message, reader=source.chunk_reader, db=source.database,
                        schema=self._default_schema)
        copies = self._copies()
        for table in mappings:
            state = copies.get(table)
            if state is None and self.cfg.initial == "none":
                continue  # never copied, by design (a requested re-copy is "copying")
            if state is None or state[0] != "done":
                after = (state[1] or None) if state and state[0] == "copying" else None
                log.info("%s: copying %s while streaming (watermarks), after key %s",
                         self.cfg.name, table, after)
                wm.add(table, after)
        self.metrics.state = "streaming"
        batch = self.cfg.batch_size
        while not self._stop and not until():
            self._check_applier()
            wm.tick()
            items = source.poll(batch, 0.2)
            out: list[ChangeEvent] = []
            for item in items:
                if isinstance(item, ChangeEvent):
                    wm.observe(item)
                    out.append(item)
                    continue
                self._publish(out)
                out = []
                if isinstance(item, Relation):
                    tm = mappings.get(item.table)
                    if tm is not None:
                        self._drain()  # everything before the relation is applied first
                        before = dict(tm.source_schema.columns)
                        # SchemaChanged stops the stream here, position intact
                        tm.check_relation(item.columns, at=str(item.position),
                                          current=functools.partial(_live_columns, source, item.table))
                        if tm.source_schema.columns != before:
                            self.publisher.describe({item.table: tm.source_schema}, changed=True)
                elif isinstance(item, Message):
                    self._publish(self._on_message(item, wm, mappings))
            self._publish(out)
            source.acknowledge(self.publisher.durable())
            faults.point("capture.after_acknowledge")
            self._tick(source)
        self._drain()
        source.acknowledge(self.publisher.durable())  # what the last batches made durable

    def _initial_copy(self, init: Any, mappings: dict[str, mapping_mod.TableMapping]) -> None:
        cursor, style = init.cursor()
        for table, tm in mappings.items():
            done, after = self._copy_by_copy(cursor, tm)
            if done:
                continue
            log.info("%s: copying %s", self.cfg.name, table)
            for events in initial_events(cursor, style, tm, self.cfg.snapshot_chunk, after=after,
                                         db=self._database, schema=self._default_schema):
                self._publish(events)
                if not self.transport.in_process:
                    # its own progress (the chunk's last key) is recorded once the chunk is
                    # in the transport: one chunk at a time, a crash sends at most one again
                    self._drain()
                faults.point("snapshot.after_chunk_published")
                self._check_applier()
                self._tick(None)
        self._drain()

    def _copy_by_copy(self, cursor: Any, tm: mapping_mod.TableMapping) -> tuple[bool, list[Any] | None]:
        """PostgreSQL to PostgreSQL, direct: copy `tm` chunk by chunk with COPY (cdc/pgcopy.py)
        where that is exactly what the events would do. (done, the last key copied)."""
        sink = self._sink
        if (sink is None or not self.transport.in_process or self.cfg.source_kind != "postgres"
                or sink.engine.dialect.name != "postgresql"):
            return False, None
        with sink.engine.connect() as conn:
            fast, why = pgcopy.plan(tm, sink.owned.refresh().get(tm.source), conn.connection.cursor())
        if fast is None:
            log.info("%s: copying %s by events: %s", self.cfg.name, tm.source, why)
            return False, None
        log.info("%s: copying %s by COPY (%s)", self.cfg.name, tm.source, "binary" if fast.binary else "text")
        # the sink is used from this thread meanwhile: the applier must be connected and idle
        assert self._applier is not None
        while not self._applier.connected.wait(0.05):
            self._check_applier()
        self._drain()  # a table before this one went by events
        chunk = self.cfg.snapshot_chunk

        def fetch(after: list[Any] | None) -> tuple[list[Any] | None, Any]:
            upto = fast.upto(cursor, after, chunk)
            return upto, fast.read(cursor, after, upto)

        # the source reads the next chunk while the target loads this one (two in memory)
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"cdc-copy-{self.cfg.name}") as reader:
            after: list[Any] | None = None
            pending = reader.submit(fetch, None)
            while True:
                upto, data = pending.result()
                if upto is not None:
                    pending = reader.submit(fetch, upto)
                n = sink.copy_chunk(tm.source, functools.partial(fast.write, data=data), upto, final=upto is None)
                if n is None:
                    if upto is not None:
                        pending.result()  # the events go on from `after` on the same cursor
                    return False, after
                self.metrics.count(n)
                faults.point("snapshot.after_copy_chunk")
                self._tick(None)
                if upto is None:
                    return True, after
                after = upto

    def _on_message(self, msg: Message, wm: Watermarks,
                    mappings: dict[str, mapping_mod.TableMapping]) -> list[ChangeEvent]:
        """The events a logical message turns into, ending where its transaction ends.

        First the message itself (op "m": the sink records its position, so the source may
        acknowledge past it), then a chunk if it is our high watermark, or a "start" marker
        per table if it asks for a re-copy: the sink stores that request with its position,
        so a crash before the copy ends resumes it instead of forgetting it.
        """
        out = [ChangeEvent(op="m", table="", key={}, before=None, after=None, position=msg.position,
                           last=False)]
        out += wm.on_message(msg)
        for table in self._resnapshot_request(msg, mappings):
            log.info("%s: re-snapshot of %s requested", self.cfg.name, table)
            wm.add(table, None)
            out.append(ChangeEvent(op="r", table=table, key={}, before=None, after=None,
                                   position=msg.position, last=False, snapshot="start"))
        out[-1].last = msg.last
        return out

    def _resnapshot_request(self, msg: Message, mappings: dict[str, Any]) -> list[str]:
        """The tables a re-snapshot request written by `strangler cdc snapshot` names."""
        try:
            body = json.loads(msg.content)
        except ValueError:
            return []
        if not isinstance(body, dict) or body.get("stream") != self.cfg.name:
            return []
        tables = body.get("snapshot")
        return [t for t in tables if t in mappings] if isinstance(tables, list) else []

    def _publish(self, events: list[ChangeEvent]) -> None:
        if events:
            self._lag.published(events)
            self.publisher.publish(events)
            if not self.applies:
                self.metrics.count(len(events))

    def _check_applier(self) -> None:
        if self._apply_error is not None:
            raise self._apply_error

    def _drain(self) -> None:
        """Wait until the transport has taken everything published: written by the sink
        (direct), acknowledged by the brokers (Kafka)."""
        began = time.monotonic()
        while not self.publisher.flush(0.05):
            self._check_applier()
            if self._stop and not self.applies:
                return  # a capture half asked to stop while its transport is away
            if time.monotonic() - began > 10:
                log.warning("%s: still waiting for the transport to take what was published", self.cfg.name)
                began = time.monotonic()
        self._check_applier()

    # -- apply side (worker thread) -----------------------------------------------------
    def _start_applier(self, sink: SqlSink) -> None:
        self._applier = Applier(sink=sink, transport=self.transport, metrics=self.metrics,
                                batch_size=self.cfg.batch_size, drain_on_stop=True, reports_state=False)

        def apply() -> None:
            assert self._applier is not None
            try:
                self._applier.run(self._apply_stop)
            except BaseException as exc:
                self._apply_error = exc
                self.transport.close()  # a publisher waiting for room must not wait forever

        self._apply_thread = threading.Thread(target=apply, daemon=True, name=f"cdc-apply-{self.cfg.name}")
        self._apply_thread.start()

    def _stop_applier(self) -> None:
        self._apply_stop.set()
        if self._apply_thread is not None:
            self._apply_thread.join(60)
            self._apply_thread = None

    def _tick(self, source: Source | None, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_tick < 1.0:
            return
        self._last_tick = now
        m = self.metrics
        m.dead_letters = self._sink.dead if self._sink is not None else 0
        m.position = str(self._position() or "")
        source_ms = 0.0
        if source is not None:
            with contextlib.suppress(CDCError):
                source_ms, m.wal_bytes_behind = source.lag()
                slot = source.slot_info()  # for the dashboard and `cdc status`: the WAL it pins
                m.slot = None if slot is None else {k: slot.get(k) for k in SLOT_FIELDS}
        m.lag_ms = self._lag.lag_ms(self.publisher.durable(), source_ms)  # grows while the stream is stalled
        with contextlib.suppress(RuntimeError):  # the applier may be updating it
            m.snapshot = {t: {"state": s[0], "rows": s[2]} for t, s in list(self._copies().items())}
        m.tick()
        self.on_tick(m)
