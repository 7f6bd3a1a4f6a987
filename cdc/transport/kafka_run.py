"""Running a stream over Kafka: the capture half, the apply half, or both in one process.

    capture   source -> Kafka: the ordinary pipeline with ``applies=False``, so snapshot,
              watermarks, schema checks and slot acknowledgement work as for `direct`; the
              slot advances only as far as Kafka has acknowledged. It never opens the
              target: where it left off is on the progress topic (kafka_progress.py).
    apply     Kafka -> sink: :class:`cdc.applier.Applier` with the Kafka subscriber, its
              mapping compiled from the schemas the capture published (it never connects
              to the source). Whole
              source transactions in commit order; each commit stores the Kafka resume
              offsets in the *same* target transaction as its rows and positions, so a crash
              anywhere neither loses nor repeats a change. Only the holder of the stream's
              lease (:mod:`cdc.lease`) applies: start as many apply halves as you like, one
              applies and the others stand by, taking over within ``lease_seconds`` when it
              dies. Events the sink dead-letters are also published to ``<topic>.dlq``.
    both      the two halves as two threads of one process.

`stop` is a threading.Event: setting it (SIGTERM/SIGINT in the CLI) finishes the batch,
stores the position and returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import sqlalchemy as sa

from cdc import checkpoint
from cdc.applier import Applier
from cdc.config import StreamConfig
from cdc.errors import CDCError
from cdc.lease import Lease
from cdc.mapping import compile_stream
from cdc.metrics import STANDBY, StreamMetrics, forget
from cdc.pipeline import Pipeline
from cdc.sinks.sqlalchemy import SqlSink, describe, make_engine
from cdc.transport.kafka import KafkaTransport, make_transport

log = logging.getLogger("cdc.kafka")
PARTS = ("capture", "apply", "both")


def apply_half(cfg: StreamConfig, stop: threading.Event, *, transport: KafkaTransport | None = None,
               on_tick: Callable[[StreamMetrics], None] | None = None, holder: str | None = None) -> None:
    """Apply the stream from Kafka until `stop` is set, while holding its lease."""
    transport = transport or make_transport(cfg)
    schemas = transport.source_schemas(stop)  # as the capture half saw them: no source connection
    if schemas is None:
        return
    engine = make_engine(cfg.target_url)
    try:
        mappings = compile_stream(cfg, schemas, describe(engine), source_kind=cfg.source_kind)
    except BaseException:
        engine.dispose()
        raise
    lease = Lease(engine, cfg.name, ttl=transport.settings.lease_seconds)
    if holder:
        lease.holder = holder
    sink = SqlSink(stream=cfg.name, engine=engine, mappings=mappings,
                   ownership_path=cfg.ownership_path, fence=lease.hold)
    metrics = StreamMetrics(stream=f"{cfg.name}.apply")
    # a stand-by leaves the apply metrics file to the holder, and reports itself in its own
    standby = StreamMetrics(stream=f"{cfg.name}{STANDBY}{lease.holder}", state="standby")
    report = on_tick or (lambda m: m.save())
    last = [0.0]

    def tick(force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - last[0] < 1.0:
            return
        last[0] = now
        if metrics.state == "standby":
            standby.tick()
            report(standby)
            return
        forget(standby.stream)
        metrics.dead_letters, metrics.position = sink.dead, str(sink.position or "")
        metrics.tick()
        report(metrics)

    applier = Applier(sink=sink, transport=transport, metrics=metrics, batch_size=cfg.batch_size,
                      lease=lease, observe_lag=True, on_tick=tick)
    try:
        applier.run(stop)
        metrics.state = "stopped"
    except BaseException as exc:
        metrics.state, metrics.error = "failed", str(exc)
        raise
    finally:
        tick(force=True)
        forget(standby.stream)
        sink.close()
        engine.dispose()


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
    transport = make_transport(cfg)
    if part != "capture":  # the capture half never opens the target
        prepare_target(cfg)
    if part == "apply":
        apply_half(cfg, stop, transport=transport, on_tick=on_tick)
        return
    pipeline = Pipeline(cfg, transport=transport, on_tick=on_tick, applies=False)
    if part == "capture":
        pipeline.run(until=stop.is_set)
        return
    errors: list[BaseException] = []

    def apply() -> None:
        try:
            apply_half(cfg, stop, transport=transport, on_tick=on_tick)
        except BaseException as exc:  # surfaced by the capture thread below
            errors.append(exc)
            stop.set()

    thread = threading.Thread(target=apply, name=f"{cfg.name}-apply", daemon=True)
    thread.start()
    try:
        pipeline.run(until=stop.is_set)
    finally:
        stop.set()
        thread.join(60)
    if errors:
        raise errors[0]
