"""The apply side of a stream: a transport's subscriber -> the sink, whatever the transport.

    receive a batch -> write it -> at a source-transaction boundary commit the rows, the
    positions and the transport's resume token in one target transaction -> tell the
    subscriber -> mirror new dead letters to it

The same loop runs in the pipeline's apply thread (``direct``) and as the apply half of a
Kafka stream. With a :class:`cdc.lease.Lease` it first waits to hold the stream's lease
(standing by while another applier holds it), reads the resume token only then, and goes
back to standing by when fenced: a lost lease rolls back the open transaction, so two
appliers never both commit.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

import sqlalchemy as sa

from cdc import checkpoint, faults
from cdc.errors import SinkError
from cdc.events import ChangeEvent
from cdc.lease import Fenced, Lease
from cdc.metrics import StreamMetrics
from cdc.sinks.sqlalchemy import SqlSink
from cdc.tracing import ApplyTracing
from cdc.transport import Subscriber, Transport

log = logging.getLogger("cdc.apply")


class Applier:
    """Applies one stream's events from `transport` through `sink` until `stop` is set."""

    def __init__(self, *, sink: SqlSink, transport: Transport, metrics: StreamMetrics,
                 batch_size: int, lease: Lease | None = None, observe_lag: bool = False,
                 drain_on_stop: bool = False, on_tick: Callable[[], None] = lambda: None,
                 reports_state: bool = True) -> None:
        self.sink = sink
        # The apply half alone reports standby/streaming. In one process the capture owns the
        # state: the applier starts first, and its "streaming" would stand while the capture
        # is still creating its slot, before the copy that replaces the target's rows.
        self.reports_state = reports_state
        self.transport = transport
        self.metrics = metrics
        self.batch_size = batch_size
        self.lease = lease
        self.observe_lag = observe_lag  # the apply half of a split stream measures its own lag
        # in-process: what the capture handed over before stopping (or failing) is applied
        # first; apart, a stop is prompt, and the rest is read again on the next start
        self.drain_on_stop = drain_on_stop
        self.on_tick = on_tick
        self.connected = threading.Event()  # the sink is connected (and the lease held)
        self.tracing = ApplyTracing.from_env(sink.stream)  # None: off (the default)

    def run(self, stop: threading.Event) -> None:
        if self.lease is None:
            self.sink.connect()  # a role that may not tag its writes stops the stream now, not later
            self._active(stop)
            return
        lease = self.lease
        try:
            while not stop.is_set():
                if self.reports_state:
                    self.metrics.state = "standby"
                if not lease.acquire(stop, on_wait=self._standing_by):
                    return
                log.info("%s: holding the lease (epoch %d) as %s", self.sink.stream, lease.epoch, lease.holder)
                try:
                    # only the holder tags its writes: the origin is one session's at a time
                    self.sink.connect(take_over=True)
                    self._active(stop)
                except Fenced as exc:
                    log.warning("%s", exc)
                except (sa.exc.DBAPIError, SinkError) as exc:
                    if lease.still_ours():
                        raise
                    # the new holder ended our session (cdc/sinks: take_over)
                    log.warning("%s: the lease was taken over (%s); standing by", self.sink.stream,
                                str(getattr(exc, "orig", exc)).strip().splitlines()[0])
                finally:
                    self.connected.clear()
                    self.sink.close()  # gives up the origin session too
        finally:
            lease.release()

    def _standing_by(self, holder: str) -> None:
        log.info("%s: standing by; the stream is applied by %s", self.sink.stream, holder or "nobody yet")
        self.on_tick()

    def _active(self, stop: threading.Event) -> None:
        sink = self.sink
        sink.reload()  # what the previous holder committed
        subscriber = self.transport.subscriber(sink.resume)
        self.connected.set()
        if self.reports_state:
            self.metrics.state = "streaming"
        dead_seen = self._last_dead_id()
        dead_count = sink.dead
        renew_every = self.lease.ttl / 3 if self.lease is not None else float("inf")
        renewed = time.monotonic()
        try:
            while self.drain_on_stop or not stop.is_set():
                batch = subscriber.receive(self.batch_size, 0.05)
                if stop.is_set() and not batch.events and not batch.restart:
                    return
                if batch.restart:  # a transaction we began was cut short: start over
                    sink.rollback()
                    subscriber.reopen(sink.resume)
                    continue
                if batch.reset and sink.has_checkpoints:  # a new capture point: they are void
                    sink.begin()
                    sink.forget_checkpoints()
                for table, columns in batch.relations:  # the capture accepted these here
                    sink.relation_changed(table, columns)
                if batch.events:
                    faults.point("apply.before_write")
                    began = time.time_ns()
                    sink.begin()
                    sink.write(batch.events)
                    if self.tracing is not None:
                        self.tracing.applied(batch.events, began, committed=batch.boundary)
                    self.metrics.count(len(batch.events))
                    if self.observe_lag:
                        self.metrics.observe_lag(max(ev.ts_ms for ev in batch.events))
                if batch.boundary and sink.in_transaction:
                    position = sink.commit(batch.resume)
                    renewed = time.monotonic()
                    subscriber.committed(position, batch.resume)
                    if sink.dead != dead_count:  # new dead-letter rows: mirror them
                        dead_seen = self._mirror_dead(subscriber, dead_seen)
                        dead_count = sink.dead
                elif time.monotonic() - renewed > renew_every:
                    sink.renew_fence()  # idle, or inside a long transaction
                    renewed = time.monotonic()
                self.on_tick()
        finally:
            subscriber.close()

    def _last_dead_id(self) -> int:
        with self.sink.engine.connect() as conn:
            return checkpoint.last_dead_letter_id(conn, self.sink.stream)

    def _mirror_dead(self, subscriber: Subscriber, after: int) -> int:
        """Hand the transport the new dead-letter rows (the table stays the record)."""
        with self.sink.engine.connect() as conn:
            rows = checkpoint.dead_letters_after(conn, self.sink.stream, after)
        for row_id, event, reason in rows:
            with contextlib.suppress(ValueError, KeyError):  # unreadable: kept in the table only
                subscriber.dead_letter(ChangeEvent.from_json(event), reason)
            after = row_id
        return after


__all__ = ["Applier"]
