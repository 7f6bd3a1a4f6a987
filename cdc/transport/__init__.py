"""Transports carry events from the capture side (a source) to the apply side (a sink).

The contract is two small protocols, one per end, and a factory for both.

Capture end, :class:`Publisher` (fed by the pipeline after reading the source):

    publish(events)   hand over events in position order; may buffer or send asynchronously
    durable()         the highest position P such that every event published up to P is
                      durable downstream (committed by the sink for `direct`; acknowledged
                      by the brokers for Kafka). The source acknowledges P (a PostgreSQL
                      slot's flush position moves to it), so nothing after P is ever
                      forgotten by the source. None until something is durable.
    flush(timeout)    wait until everything published so far has been taken downstream
                      (written by the sink; acknowledged by Kafka); False on timeout
    describe(schemas, changed)
                      the source tables as the capture sees them: at start, and again
                      (`changed`) where the stream accepted a change of their columns, in
                      its place among the events. An apply end that runs apart cannot
                      describe the source itself: the transport carries this to it
    progress()        where this capture end left off, as the transport keeps it: the
                      position the source resumes after and each table's copy state
                      (:class:`Progress`, kept up to date as publishes become durable).
                      None when the sink's checkpoints are the capture's (``direct``: the
                      sink commits them with the rows, in this process). A capture end
                      that runs apart never opens the target: this is how it knows
    start_over()      the source starts from a new capture point (a new slot): every
                      checkpoint from before is void — the capture's progress now, the
                      apply end's in its place among the events (``batch.reset``)

Apply end, :class:`Subscriber` (read by :class:`cdc.applier.Applier`):

    receive(max_events, timeout) -> Batch
                      the next events, each source transaction whole and in commit order
                      (a large one may span several batches). ``batch.boundary`` says the
                      last event ends a source transaction: only there may the sink commit,
                      and it stores ``batch.resume`` *in the same target transaction as the
                      rows*. ``batch.restart`` says what was handed over since the last
                      commit is void: the sink rolls back and calls ``reopen``.
                      ``batch.relations`` are source tables whose columns changed before
                      this batch's events (the apply end's mapping learns them first).
                      ``batch.reset`` says the capture started over (``start_over``): the
                      sink forgets its positions and copy states before these events, in
                      the same target transaction.
    committed(position, resume)
                      the sink committed up to `position`, storing `resume`
    reopen(resume)    start over from a resume token the target holds (after a rollback)
    dead_letter(event, reason)
                      the sink could not apply `event` (it is in the dead-letter table)

A resume token is whatever JSON the transport needs to continue exactly after a
commit (Kafka: the offsets to read next); the target stores it with the rows and hands it
back on start, so a crash anywhere neither loses nor repeats a change. ``direct`` needs
none: its source replays from the position the sink committed.

A transport of kind ``k`` (``transport: {kind: k, ...}`` in streams.yaml) lives in module
``cdc.transport.<k>`` and exposes ``make_transport(cfg: StreamConfig) -> Transport``; the
pipeline imports it by name, so adding one touches no other file. ``in_process`` says
whether both ends must live in one process (``direct``) or may run apart (Kafka).

Sinks never trust a transport to deliver exactly once: they store each table's applied
position in the same transaction as its rows and skip any event at or before it. So a
transport must be at-least-once and keep each table's events in order; that is all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from cdc.events import ChangeEvent, Position
from cdc.mapping import TableSchema

Resume = Mapping[str, Any]  # JSON-serialisable; opaque to everyone but its transport
CopyState = tuple[str, list[Any] | None, int]  # ("copying" | "done", last key copied, rows copied)


@dataclass
class Progress:
    """Where a capture end left off (see ``Publisher.progress``)."""

    position: Position | None = None  # durable downstream, acknowledged to the source
    copies: dict[str, CopyState] = field(default_factory=dict)  # per source table


@dataclass(frozen=True, slots=True)
class Batch:
    """What one ``receive`` hands over."""

    events: list[ChangeEvent] = field(default_factory=list)
    boundary: bool = False  # the last event ends a source transaction: the sink may commit
    resume: Resume | None = None  # at a boundary: store it with the rows
    restart: bool = False  # void since the last commit: roll back, then reopen(stored resume)
    reset: bool = False  # the capture started over: forget positions and copy states first
    relations: tuple[tuple[str, dict[str, str]], ...] = ()  # (table, columns) changed before `events`


@runtime_checkable
class Publisher(Protocol):
    def publish(self, events: Sequence[ChangeEvent]) -> None: ...

    def durable(self) -> Position | None: ...

    def flush(self, timeout: float) -> bool: ...

    def describe(self, schemas: Mapping[str, TableSchema], *, changed: bool = False) -> None: ...

    def progress(self) -> Progress | None: ...

    def start_over(self) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class Subscriber(Protocol):
    def receive(self, max_events: int, timeout: float) -> Batch: ...

    def committed(self, position: Position | None, resume: Resume | None) -> None: ...

    def reopen(self, resume: Resume | None) -> None: ...

    def dead_letter(self, event: ChangeEvent, reason: str) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class Transport(Protocol):
    """Makes the two ends of one stream's transport; ``close()`` releases both (idempotent)."""

    in_process: bool

    def publisher(self) -> Publisher: ...

    def subscriber(self, resume: Resume | None) -> Subscriber: ...

    def close(self) -> None: ...


__all__ = ["Batch", "CopyState", "Progress", "Publisher", "Resume", "Subscriber", "Transport"]
