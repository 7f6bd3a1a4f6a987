"""Running a stream over Kafka: the capture half, the apply half, or both in one process.

    capture   source -> KafkaCapture: the ordinary pipeline with Kafka as its transport, so
              snapshot, watermarks, schema checks and slot acknowledgement work as for
              `direct`; the slot advances only as far as Kafka has acknowledged.
    apply     KafkaApply -> sink: whole source transactions in commit order, applied in
              batches; each batch's Kafka resume offsets are written to
              ``strangler_cdc_kafka_offset`` in the *same* target transaction as its rows
              and positions, and read back on start, so a crash anywhere neither loses nor
              repeats a change. Events the sink dead-letters are also published to
              ``<topic>.dlq``.
    both      the two halves as two threads of one process.

`stop` is a threading.Event: setting it (SIGTERM/SIGINT in the CLI) finishes the batch,
stores the position and returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cdc import checkpoint
from cdc.config import StreamConfig
from cdc.errors import CDCError
from cdc.events import ChangeEvent, Position
from cdc.metrics import StreamMetrics
from cdc.pipeline import Pipeline, open_stream
from cdc.sinks.sqlalchemy import SqlSink, make_engine
from cdc.transport.kafka import KafkaCapture, KafkaSettings
from cdc.transport.kafka_apply import TP, KafkaApply

log = logging.getLogger("cdc.kafka")
PARTS = ("capture", "apply", "both")

offsets_table = sa.Table(
    "strangler_cdc_kafka_offset", checkpoint.metadata,
    sa.Column("stream", sa.String(64), primary_key=True),
    sa.Column("topic", sa.String(255), primary_key=True),
    sa.Column("kafka_partition", sa.Integer, primary_key=True),
    sa.Column("next_offset", sa.BigInteger, nullable=False),
)


def load_offsets(engine: Engine, stream: str) -> dict[TP, int]:
    offsets_table.create(engine, checkfirst=True)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(offsets_table.c.topic, offsets_table.c.kafka_partition,
                                      offsets_table.c.next_offset)
                            .where(offsets_table.c.stream == stream))
        return {(t, int(p)): int(o) for t, p, o in rows}


def save_offsets(conn: Connection, stream: str, offsets: dict[TP, int]) -> None:
    t = offsets_table
    for (topic, part), offset in offsets.items():
        where = sa.and_(t.c.stream == stream, t.c.topic == topic, t.c.kafka_partition == part)
        if conn.execute(sa.update(t).where(where).values(next_offset=offset)).rowcount == 0:
            conn.execute(sa.insert(t).values(stream=stream, topic=topic, kafka_partition=part,
                                             next_offset=offset))


class OffsetSink(SqlSink):
    """The SQL sink, also writing the Kafka resume offsets inside its commit transaction."""

    offsets: dict[TP, int] | None = None

    @property
    def in_transaction(self) -> bool:
        return self._tx is not None

    def commit(self) -> Position | None:
        if self._tx is not None and self._conn is not None and self.offsets:
            save_offsets(self._conn, self.stream, self.offsets)
        return super().commit()


class ApplyLoop:
    """Kafka -> sink for one stream (see the module docstring)."""

    def __init__(self, cfg: StreamConfig, *, settings: KafkaSettings | None = None,
                 on_tick: Callable[[StreamMetrics], None] | None = None) -> None:
        self.cfg = cfg
        self.settings = settings or KafkaSettings.from_stream(cfg)
        self.metrics = StreamMetrics(stream=f"{cfg.name}.apply")
        self.on_tick = on_tick or (lambda m: m.save())
        self._last_tick = 0.0

    def run(self, stop: threading.Event) -> None:
        source, engine, mappings = open_stream(self.cfg)  # the mapping, checked against both schemas
        source.close()
        sink = OffsetSink(stream=self.cfg.name, engine=engine, mappings=mappings,
                          ownership_path=self.cfg.ownership_path)
        kafka: KafkaApply | None = None
        try:
            sink.connect()  # a role that may not tag its writes stops here (cdc/origin.py)
            kafka = KafkaApply(self.settings, list(mappings), start=load_offsets(engine, self.cfg.name))
            dead_seen = self._dead_high(engine)
            dead_published = sink.dead
            self.metrics.state = "streaming"
            while not stop.is_set():
                events = kafka.consume(self.cfg.batch_size, 0.2)
                if kafka.rewind_needed:  # a transaction we began was cut short: start over
                    sink.rollback()
                    kafka.rewind()
                    continue
                if events:
                    sink.begin()
                    sink.write(events)
                    self.metrics.count(len(events))
                    self.metrics.observe_lag(max(ev.ts_ms for ev in events))
                if kafka.at_boundary and sink.in_transaction:
                    self._commit(sink, kafka)
                    if sink.dead != dead_published:  # new dead-letter rows: mirror them
                        dead_seen = self._publish_dead(engine, kafka, dead_seen)
                        dead_published = sink.dead
                self._tick(sink)
            self.metrics.state = "stopped"
        except BaseException as exc:
            self.metrics.state, self.metrics.error = "failed", str(exc)
            raise
        finally:
            self._tick(sink, force=True)
            sink.close()
            if kafka is not None:
                kafka.close()
            engine.dispose()

    def _commit(self, sink: OffsetSink, kafka: KafkaApply) -> None:
        """Rows, positions and Kafka resume offsets in one target transaction."""
        sink.offsets = kafka.offsets()
        pos = sink.commit()
        kafka.commit(pos or Position(0, 0))

    def _dead_high(self, engine: Engine) -> int:
        t = checkpoint.dead_letters
        with engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(t.c.id), 0))
                                    .where(t.c.stream == self.cfg.name)).scalar_one())

    def _publish_dead(self, engine: Engine, kafka: KafkaApply, after: int) -> int:
        """Mirror new dead-letter rows to ``<topic>.dlq`` (the table stays the record)."""
        t = checkpoint.dead_letters
        with engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.id, t.c.event, t.c.reason)
                                .where(t.c.stream == self.cfg.name, t.c.id > after).order_by(t.c.id)).all()
        for row_id, event, reason in rows:
            try:
                ev = ChangeEvent.from_json(event)
            except (ValueError, KeyError):
                continue
            kafka.dead_letter(ev, reason)
            after = int(row_id)
        return after

    def _tick(self, sink: SqlSink, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_tick < 1.0:
            return
        self._last_tick = now
        m = self.metrics
        m.dead_letters, m.position = sink.dead, str(sink.position or "")
        m.tick()
        self.on_tick(m)


class CapturePipeline(Pipeline):
    """The pipeline's capture half: everything up to the transport, nothing applied here.

    "Wait until the sink has taken everything published" becomes "until Kafka has
    acknowledged everything published"; the apply half runs in its own process or thread.
    """

    transport: KafkaCapture

    def _apply_loop(self, sink: SqlSink) -> None:
        return  # the apply half is ApplyLoop, elsewhere

    def _initial_copy(self, init: Any, sink: SqlSink, mappings: dict[str, Any]) -> None:
        super()._initial_copy(init, sink, mappings)
        # Copied whole into Kafka: the target learns it when the apply half gets there, but
        # this process must not start a second copy with watermarks meanwhile.
        for table in mappings:
            sink.snapshot_state[table] = ("done", None, 0)

    def _publish(self, events: list[ChangeEvent]) -> None:
        super()._publish(events)
        self.metrics.count(len(events))

    def _drain(self) -> None:
        while not self.transport.flush(1.0) and not self._stop:
            log.warning("%s: waiting for Kafka to acknowledge %d messages", self.cfg.name,
                        self.transport.in_flight())


def capture_pipeline(cfg: StreamConfig, *, settings: KafkaSettings | None = None,
                     on_tick: Callable[[StreamMetrics], None] | None = None) -> CapturePipeline:
    """The ordinary pipeline publishing to Kafka instead of applying."""
    settings = settings or KafkaSettings.from_stream(cfg)
    pipeline = CapturePipeline(cfg, transport=KafkaCapture(settings, [t.source for t in cfg.tables]),
                               on_tick=on_tick)
    pipeline.metrics.stream = f"{cfg.name}.capture"
    return pipeline


def prepare_target(cfg: StreamConfig, attempts: int = 5) -> None:
    """Create the checkpoint tables once, before the halves start.

    Both halves create them if missing; two processes doing so at the same moment collide
    in PostgreSQL's catalog ("already exists"), so the loser retries here.
    """
    engine = make_engine(cfg.target_url)
    try:
        for attempt in range(attempts):
            try:
                checkpoint.ensure(engine)
                return
            except sa.exc.DBAPIError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))
    finally:
        engine.dispose()


def run(cfg: StreamConfig, part: str, stop: threading.Event,
        on_tick: Callable[[StreamMetrics], None] | None = None) -> None:
    """Run `part` (capture | apply | both) of a Kafka stream until `stop` is set."""
    if part not in PARTS:
        raise CDCError(f"part must be one of {', '.join(PARTS)}, not {part!r}")
    settings = KafkaSettings.from_stream(cfg)
    prepare_target(cfg)
    if part == "apply":
        ApplyLoop(cfg, settings=settings, on_tick=on_tick).run(stop)
        return
    pipeline = capture_pipeline(cfg, settings=settings, on_tick=on_tick)
    if part == "capture":
        pipeline.run(until=stop.is_set)
        return
    errors: list[BaseException] = []

    def apply_half() -> None:
        try:
            ApplyLoop(cfg, settings=settings, on_tick=on_tick).run(stop)
        except BaseException as exc:  # surfaced by the capture thread below
            errors.append(exc)
            stop.set()

    thread = threading.Thread(target=apply_half, name=f"{cfg.name}-apply", daemon=True)
    thread.start()
    try:
        pipeline.run(until=stop.is_set)
    finally:
        stop.set()
        thread.join(60)
    if errors:
        raise errors[0]
