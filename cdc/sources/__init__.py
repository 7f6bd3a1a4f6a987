"""Sources: where change events come from (PostgreSQL pgoutput, SQLite triggers).

A source yields, in commit order, :class:`cdc.events.ChangeEvent`s and two kinds of control
item the pipeline acts on: :class:`Relation` (a table's current columns, sent by
PostgreSQL before the first change after DDL) and :class:`Message` (a logical message: the
snapshot watermarks and re-snapshot requests). The pipeline drives a source through:

    describe(tables)            -> {table: TableSchema}    (for mapping validation)
    install()                   slot + publication / triggers only (`strangler cdc install`)
    open(start_after)           -> InitialSnapshot | None  (None: the slot/triggers existed)
    poll(max_items, timeout)    -> [ChangeEvent | Relation | Message]
    acknowledge(position)       everything up to position is durable downstream
    emit_message(content)       write a logical message into the stream (watermarks)
    chunk_reader()              a DB-API cursor + paramstyle for key-ordered chunk reads
    lag()                       (ms, bytes) behind the source's head, for metrics
    drop() / close()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from cdc.events import ChangeEvent, Position
from cdc.mapping import TableSchema


@dataclass(frozen=True, slots=True)
class Relation:
    table: str
    columns: dict[str, str]  # name -> type
    position: Position


@dataclass(slots=True)
class Message:
    """A logical message in the stream. ``position`` counts like a change of its transaction
    (the source acknowledges past it only once the pipeline made it durable downstream), and
    ``last`` says it ends its source transaction."""

    prefix: str
    content: bytes
    position: Position
    last: bool = True


Item = ChangeEvent | Relation | Message


class InitialSnapshot(Protocol):
    """A consistent read view taken exactly at the stream's start position."""

    def cursor(self) -> tuple[Any, str]: ...  # (DB-API cursor, paramstyle)

    def close(self) -> None: ...


class Source(Protocol):
    keys: dict[str, tuple[str, ...]]  # table -> key columns (set from the validated mapping)
    database: str  # the source database's name, as events carry it (``source.db``)

    def describe(self, tables: list[str]) -> dict[str, TableSchema]: ...

    def install(self) -> bool: ...  # capture from now on without running; True if new

    def open(self, start_after: Position | None) -> InitialSnapshot | None: ...

    def poll(self, max_items: int, timeout: float) -> list[Item]: ...

    def acknowledge(self, position: Position | None) -> None: ...

    def emit_message(self, content: bytes) -> None: ...

    def chunk_reader(self) -> tuple[Any, str]: ...

    def lag(self) -> tuple[float, int | None]: ...

    def slot_info(self) -> dict[str, Any] | None:
        """The replication slot's health (wal_status, retained WAL, …); None without one."""
        ...

    def drop(self) -> None: ...

    def close(self) -> None: ...


MESSAGE_PREFIX = "strangler"


def make_source(cfg: Any, tables: list[str]) -> Source:
    """The source for a stream's URL (imports lazily: psycopg2 only when needed)."""
    if cfg.source_kind == "sqlite":
        from cdc.sources.sqlite import SQLiteSource

        return SQLiteSource(cfg, tables)
    from cdc.sources.postgres import PostgresSource

    return PostgresSource(cfg, tables)
