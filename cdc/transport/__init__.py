"""Transports carry events from the capture side (a source) to the apply side (a sink).

The contract is two small protocols; a transport implements both.

Capture side (called by the pipeline after reading the source):

    publish(events)   hand over events in position order; may buffer or send asynchronously
    durable()         the highest position P such that every event published up to P is
                      durable downstream (applied by the sink for the direct transport; acked
                      by the brokers for Kafka). The source acknowledges P (a PostgreSQL
                      slot's flush position moves to it), so nothing after P is ever
                      forgotten by the source. None until something is durable.

Apply side (called by the pipeline around the sink):

    consume(max_events, timeout)   the next events in position order *per table* (a
                                   transport may interleave tables, e.g. Kafka topic per
                                   table); at most max_events; [] after timeout seconds
    commit(position)               the sink has made everything consumed up to position
                                   durable (rows + positions in one target transaction)

A transport of kind ``k`` (``transport: {kind: k, ...}`` in streams.yaml) lives in module
``cdc.transport.<k>`` and exposes ``make_transport(cfg: StreamConfig) -> Transport``; the
pipeline imports it by name, so adding one touches no other file.

Sinks never trust a transport to deliver exactly once: they store each table's applied
position in the same transaction as its rows and skip any event at or before it. So a
transport must be at-least-once and keep each table's events in order; that is all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from cdc.events import ChangeEvent, Position


@runtime_checkable
class Publisher(Protocol):
    def publish(self, events: Sequence[ChangeEvent]) -> None: ...

    def durable(self) -> Position | None: ...


@runtime_checkable
class Consumer(Protocol):
    def consume(self, max_events: int, timeout: float) -> list[ChangeEvent]: ...

    def commit(self, position: Position) -> None: ...


@runtime_checkable
class Transport(Publisher, Consumer, Protocol):
    """Both ends; ``close()`` releases connections (idempotent)."""

    def close(self) -> None: ...


__all__ = ["Consumer", "Publisher", "Transport"]
