"""SQLAlchemy sink: batched upserts and deletes into PostgreSQL or SQLite, exactly once.

Events are turned into target rows through the compiled mapping, grouped into runs of the
same table and action (order across runs is kept, so foreign keys hold), coalesced by key
within a run, and executed as one multi-row statement per run. Every table's position is
written in the same target transaction (``commit``), and replayed events at or before it are
skipped, so a restart neither loses nor repeats a change. If a batch fails, it is retried
event by event under savepoints; an event that still fails (constraint violation, bad
conversion) goes to ``strangler_cdc_dead_letter`` with the reason and the stream goes on.
Rows identical to what the target holds are not rewritten (no trigger fires twice).
PostgreSQL runs take the COPY fast path in :mod:`cdc.sinks.pgbulk`.

An image without its unchanged TOAST columns can only complete a row the target holds: it
is an UPDATE by key (or, for a key change, a move of the old key's row to the new key), and
an event whose row is not there is dead-lettered with the fix, never dropped silently.

Write ownership (ownership.yaml, :mod:`cdc.sinks.owned`): for a table in an ownership group
the sink writes only what the stream's source side may write now: all but the other side's
kept columns if it owns the table, else only updates of its own kept columns (anything else
is dead-lettered as a write that bypassed the guard). The keys of such tables' changes are
recorded with their commit time in ``strangler_cdc_recent_keys`` (same transaction, a row
per table per batch: cdc.keys.KeyLog) for the dual-write detector (:mod:`cdc.dualwrite`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, NoReturn

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.engine import Connection, Engine

from cdc import checkpoint, convert, faults
from cdc.errors import SinkError
from cdc.events import ChangeEvent, Position, copy_progress, json_default
from cdc.keys import KeyLog, key_value
from cdc.mapping import TableMapping, TableSchema
from cdc.native import speedups
from cdc.origin import SQLITE_MARKER, SQLITE_MARKER_DDL, origin_name
from cdc.sinks.owned import Rule, Watch
from cdc.sinks.pgbulk import Upserter

log = logging.getLogger("cdc.sink")

UPSERT, UPDATE, MOVE, DELETE, TRUNCATE, MARK, SWEEP, KEPT = (
    "upsert", "update", "move", "delete", "truncate", "mark", "sweep", "kept")
SWEEP_BATCH = 1000  # ghost keys deleted per statement
RECENT_WINDOW_S = 60.0  # how long applied keys are remembered for the dual-write detector


ORIGIN_TAKEOVER_SECONDS = 10.0


def _origin_busy_pid(exc: sa.exc.DBAPIError) -> int | None:
    """The backend pid in "replication origin with ID n is already active for PID p"."""
    match = re.search(r"already active for PID (\d+)", str(exc.orig))
    return int(match.group(1)) if match else None


def make_engine(url: str) -> Engine:
    """An engine for a target (or verify) URL; SQLite gets real transactions and savepoints."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):  # SQLAlchemy 2.1 would pick psycopg 3; we ship psycopg2
        url = "postgresql+psycopg2://" + url[len("postgresql://"):]
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:" and not os.path.exists(path):
            raise SinkError(f"target SQLite database {path} does not exist; create the service's "
                            "schema first (its migrations) or fix the stream's target.url")
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.isolation_level = None  # let SQLAlchemy's BEGIN/SAVEPOINT through
            dbapi_conn.execute("PRAGMA busy_timeout = 30000")

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return sa.create_engine(url)


def describe(engine: Engine) -> dict[str, TableSchema]:
    """Every table of the target with columns, key/unique sets and required columns."""
    insp = sa.inspect(engine)
    out = {}
    for name in insp.get_table_names():
        cols = insp.get_columns(name)
        pk = tuple(insp.get_pk_constraint(name).get("constrained_columns") or ())
        uniques = [pk] if pk else []
        uniques += [tuple(u["column_names"]) for u in insp.get_unique_constraints(name)]
        uniques += [tuple(str(c) for c in i["column_names"]) for i in insp.get_indexes(name) if i.get("unique")]
        required = tuple(c["name"] for c in cols if not c["nullable"] and c.get("default") is None
                         and c.get("autoincrement") is not True and c["name"] not in pk)
        out[name] = TableSchema(name=name, columns={c["name"]: str(c["type"]) for c in cols}, pk=pk,
                                unique_sets=tuple(uniques), required=required,
                                categories={c["name"]: sa_category(c["type"]) for c in cols},
                                dialect=engine.dialect.name)
    return out


# SQLAlchemy type classes -> categories of cdc.mapping, most specific first (Enum is a
# String, Float a Numeric, JSONB a JSON).
_SA_CATEGORIES: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (sa.types.NullType, "unknown"), (sa.ARRAY, "array"), (sa.Enum, "enum"), (sa.Boolean, "bool"),
    ((sa.Interval, pg.INTERVAL), "interval"), (sa.JSON, "json"), (sa.Uuid, "uuid"),
    (sa.LargeBinary, "bytes"), ((pg.INET, pg.CIDR, pg.MACADDR, pg.MACADDR8), "inet"),
    (pg.MONEY, "money"), (sa.Integer, "int"), (sa.Float, "float"), (sa.Numeric, "num"),
    (sa.DateTime, "dt"), (sa.Date, "date"), (sa.String, "text"),
)


def sa_category(col_type: sa.types.TypeEngine[Any]) -> str:
    """The mapping's category of a reflected column type (a domain: its base type's)."""
    if isinstance(col_type, pg.DOMAIN):
        return sa_category(col_type.data_type)
    if isinstance(col_type, sa.Time):
        return "timetz" if col_type.timezone else "time"
    for classes, cat in _SA_CATEGORIES:
        if isinstance(col_type, classes):
            return cat
    return "other"


def _hex_bytes(v: Any) -> bytes:
    if isinstance(v, str):
        if not v.startswith("\\x"):
            raise ValueError(f"bytea text must be in hex form (\\x...), not {v[:20]!r}")
        return bytes.fromhex(v[2:])
    return bytes(v)


def _coercer(col_type: sa.types.TypeEngine[Any],
             dialect: str) -> tuple[type | tuple[type, ...], Callable[[Any], Any]] | None:
    """(accepted python types, converter) for columns whose values may arrive as JSON text.

    PostgreSQL reads the text forms of dates, times and bytes (``\\x..``) itself, exactly
    (also ``infinity``); other targets get Python values parsed from them.
    """
    if isinstance(col_type, sa.JSON):  # dicts and lists go as JSON text (never as a SQL array)
        if dialect == "postgresql":
            return str, lambda v: json.dumps(v, default=json_default)
        # SQLAlchemy serializes the value itself: give it the value, not its text
        return (dict, list), lambda v: json.loads(v) if isinstance(v, str) else v
    if dialect == "postgresql" and isinstance(col_type, (sa.DateTime, sa.Date, sa.Time, sa.LargeBinary)):
        return None
    if isinstance(col_type, sa.LargeBinary):
        return bytes, _hex_bytes
    if isinstance(col_type, sa.Boolean):
        return bool, lambda v: v.lower() in ("t", "true", "1") if isinstance(v, str) else bool(v)
    if isinstance(col_type, sa.Integer):
        return int, lambda v: int(Decimal(str(v)))
    if isinstance(col_type, sa.Float):
        return float, float
    if isinstance(col_type, sa.Numeric):
        return (Decimal, int), lambda v: Decimal(str(v))
    if isinstance(col_type, sa.DateTime):
        return dt.datetime, lambda v: dt.datetime.fromisoformat(v) if isinstance(v, str) else v
    if isinstance(col_type, sa.Date):
        return dt.date, lambda v: dt.date.fromisoformat(v[:10]) if isinstance(v, str) else v
    if isinstance(col_type, sa.Time):
        return dt.time, lambda v: dt.time.fromisoformat(v) if isinstance(v, str) else v
    return None


_ABSENT = object()


def map_row_py(source_row: dict[str, Any], columns: tuple[tuple[Any, ...], ...]) -> dict[str, Any]:
    """`_Table.row`'s loop in Python (compiled: cdc/_speedups.c `map_row`). `columns`: per
    mapped column (source, target, converter, classes taken as they are, classes a value
    must be an instance of, coercion)."""
    row = {}
    for s, t, conv, fast, types, fix in columns:
        v = source_row.get(s, _ABSENT)
        if v is _ABSENT:
            continue
        if v is not None:
            if conv is not None:
                v = conv(v)
            if fix is not None and v.__class__ not in fast and (
                    not isinstance(v, types) or (types is int and v.__class__ is bool)):
                v = fix(v)
        row[t] = v
    return row


def _fast_classes(types: type | tuple[type, ...]) -> frozenset[type]:
    """The exact classes a coercer accepts without looking further (never bool for int)."""
    return frozenset(types if isinstance(types, tuple) else (types,))


def _no_equality(table: sa.Table) -> frozenset[str]:
    """Columns whose PostgreSQL type has no "=" (json, and types SQLAlchemy does not know)."""
    return frozenset(c.name for c in table.columns
                     if (isinstance(c.type, sa.JSON) and not isinstance(c.type, pg.JSONB))
                     or isinstance(c.type, sa.types.NullType))


def _without(row: dict[str, Any], columns: frozenset[str]) -> dict[str, Any]:
    return {c: v for c, v in row.items() if c not in columns}


class _Table:
    """A mapped target table: its SQLAlchemy Table and prepared statements."""

    def __init__(self, tm: TableMapping, table: sa.Table, dialect: str) -> None:
        self.tm = tm
        self.table = table
        self.key = list(tm.target_key)
        self.dialect = dialect
        self._coerce = {c.name: co for c in table.columns if (co := _coercer(c.type, dialect)) is not None}
        self._columns: tuple[tuple[Any, ...], ...] = ()
        self._mapped = -1  # len(tm.columns) when _columns was built (new_columns: copy adds)
        self.filtered = bool(tm.spec.filter)
        self._upserts: dict[tuple[frozenset[str], frozenset[str]], Any] = {}
        self._updates: dict[frozenset[str], Any] = {}
        self.pg = Upserter(table.name, table.schema, self.key, _no_equality(table)) if dialect == "postgresql" else None

    def row(self, source_row: dict[str, Any]) -> dict[str, Any]:
        """The target row of the source columns present in `source_row` (absent stay absent):
        renamed, converted, and coerced to what the target column takes."""
        if self._mapped != len(self.tm.columns):
            self._merge_columns()
        if speedups is not None:
            return speedups.map_row(source_row, self._columns)
        return map_row_py(source_row, self._columns)

    def _merge_columns(self) -> None:
        """Per mapped column: (source, target, converter, classes taken as they are, classes
        a value must be an instance of, coercion): one list, so `row` (once per applied
        row) walks the columns once."""
        conv = {t: fn for _s, t, fn in self.tm.converted}
        coerce = self._coerce
        self._columns = tuple((s, t, conv.get(t), _fast_classes(coerce[t][0]) if t in coerce else frozenset(),
                               *(coerce.get(t) or (None, None))) for s, t, _c in self.tm.columns)
        self._mapped = len(self.tm.columns)

    def key_log(self) -> KeyLog:
        """An empty log of this table's changed keys, for the dual-write detector."""
        conv = {s: c for s, _t, c in self.tm.columns}
        return KeyLog(self.tm.source, self.tm.key, self.tm.target_key,
                      [functools.partial(convert.apply, conv[k]) if conv.get(k) else None for k in self.tm.key])

    def target_key(self, source_key: Sequence[Any]) -> tuple[Any, ...]:
        """A source key (values in key order) as the target's key tuple, normalised."""
        mapped = self.tm.key_to_target(dict(zip(self.tm.key, source_key, strict=True)))
        return tuple(key_value(mapped[k]) for k in self.key)

    def sweep_plan(self, extent: dict[str, Any]) -> tuple[tuple[Any, ...] | None, tuple[Any, ...] | None,
                                                          list[Any]]:
        """(after, upto, keep) of a "range" marker: the bounds in target terms, `keep` as sent
        (converted only if the target holds rows in the range: a first copy never pays)."""
        after, upto = extent.get("after"), extent.get("upto")
        return (None if after is None else self.target_key(after),
                None if upto is None else self.target_key(upto), extent.get("keep") or [])

    def sweep(self, conn: Connection, after: tuple[Any, ...] | None, upto: tuple[Any, ...] | None,
              keep: list[Any]) -> int:
        """Delete the target rows keyed in (after, upto] that are not in `keep`: rows gone from
        the source while nobody streamed (a re-copy after downtime or a lost slot)."""
        cols = [self.table.c[k] for k in self.key]
        row = sa.tuple_(*cols) if len(cols) > 1 else cols[0]

        def bound(values: tuple[Any, ...]) -> Any:
            return sa.tuple_(*values) if len(values) > 1 else values[0]

        query = sa.select(*cols)
        if after is not None:
            query = query.where(row > bound(after))
        if upto is not None:
            query = query.where(row <= bound(upto))
        present = [tuple(key_value(v) for v in r) for r in conn.execute(query)]
        if not present:
            return 0
        kept = {self.target_key(k) for k in keep}
        ghosts = [k for k in present if k not in kept]
        for i in range(0, len(ghosts), SWEEP_BATCH):
            self.delete_keys(conn, ghosts[i:i + SWEEP_BATCH])
        if ghosts:
            log.info("%s: removed %d row(s) gone from the source (re-copy)", self.table.name, len(ghosts))
        return len(ghosts)

    def delete_keys(self, conn: Connection, keys: Sequence[tuple[Any, ...]]) -> None:
        """One DELETE of the rows with these keys (tuples in key order)."""
        cols = [self.table.c[k] for k in self.key]
        if len(cols) == 1:
            conn.execute(sa.delete(self.table).where(cols[0].in_([k[0] for k in keys])))
        else:
            conn.execute(sa.delete(self.table).where(sa.tuple_(*cols).in_(list(keys))))

    def upsert(self, cols: frozenset[str], keep: frozenset[str] = frozenset()) -> Any:
        """INSERT .. ON CONFLICT UPDATE of `cols`; the `keep` columns (another side writes
        them) are inserted with a new row but never updated."""
        stmt = self._upserts.get((cols, keep))
        if stmt is None:
            if self.dialect == "postgresql":
                from sqlalchemy.dialects.postgresql import insert
            else:
                from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
            ins = insert(self.table)
            rest = [c for c in self.table.columns
                    if c.name in cols and c.name not in self.key and c.name not in keep]
            if rest:
                changed = sa.tuple_(*rest).is_distinct_from(sa.tuple_(*(ins.excluded[c.name] for c in rest)))
                stmt = ins.on_conflict_do_update(index_elements=self.key,
                                                 set_={c.name: ins.excluded[c.name] for c in rest},
                                                 where=changed)
            else:
                stmt = ins.on_conflict_do_nothing(index_elements=self.key)
            self._upserts[(cols, keep)] = stmt
        return stmt

    def partial_update(self, cols: frozenset[str]) -> Any:
        """UPDATE of the columns `cols` by key (binds ``k_<key>`` and ``v_<column>``)."""
        stmt = self._updates.get(cols)
        if stmt is None:
            t = self.table
            stmt = self._updates[cols] = sa.update(t).where(
                *(t.c[k] == sa.bindparam(f"k_{k}") for k in self.key)).values(
                {c: sa.bindparam(f"v_{c}") for c in cols if c not in self.key})
        return stmt

    def where_key(self, key: dict[str, Any]) -> list[Any]:
        return [self.table.c[k] == key[k] for k in self.key]


class SqlSink:
    """Applies events for one stream to its target database."""

    def __init__(self, *, stream: str, engine: Engine, mappings: dict[str, TableMapping],
                 ownership_path: str = "", fence: Callable[[Connection], None] | None = None) -> None:
        self.stream = stream
        self.engine = engine
        # Run first in every target transaction; raises to refuse it (cdc/lease.py: only the
        # lease holder applies).
        self._fence = fence
        checkpoint.ensure(engine)
        md = sa.MetaData()
        self.tables: dict[str, _Table] = {}
        for src, tm in mappings.items():
            t = sa.Table(tm.target, md, autoload_with=engine)
            self.tables[src] = _Table(tm, t, engine.dialect.name)
        self._conn: Connection | None = None
        self._tx: Any = None
        self._sqlite = engine.dialect.name == "sqlite"
        # A row the target refuses (constraint, bad value) is dead-lettered; anything else
        # (connection lost, table gone) stops the stream. Raw DB-API classes too: PostgreSQL
        # upserts go through psycopg2 directly.
        dbapi = engine.dialect.loaded_dbapi
        # A value of the wrong type for its column (psycopg2's DatatypeMismatch, a
        # ProgrammingError) is that row's problem too.
        mismatch = getattr(getattr(dbapi, "errors", None), "DatatypeMismatch", dbapi.DataError)
        self._row_errors: tuple[type[BaseException], ...] = (
            sa.exc.IntegrityError, sa.exc.DataError, dbapi.IntegrityError, dbapi.DataError, mismatch)
        self._db_errors: tuple[type[BaseException], ...] = (sa.exc.DBAPIError, dbapi.Error)
        self.positions: dict[str, Position] = {}
        self._dirty: dict[str, tuple[Position, int]] = {}
        self._snap: dict[str, tuple[str, list[Any] | None, int]] = {}
        self.snapshot_state: dict[str, tuple[str, list[Any] | None, int]] = {}
        self.applied = 0
        self.dead = 0
        self.resume: dict[str, Any] | None = None  # the transport's token, as last committed
        self.last_ts_ms = 0
        # write ownership: the rules follow the file (re-read once per batch if it changed)
        self.owned = Watch(ownership_path, stream, mappings)
        self._rules: dict[str, Rule] = {}
        self._keep: dict[str, frozenset[str]] = {}  # per source table: columns never updated
        self._kept: dict[int, Rule] = {}  # id(event) -> rule, for this batch's KEPT updates
        self._recent: dict[str, KeyLog] = {}  # per source table: the batch's changed keys
        self._pruned_at = 0.0
        self._load()

    def _load(self) -> None:
        with self.engine.connect() as conn:
            self.positions = checkpoint.load_positions(conn, self.stream)
            self.snapshot_state = checkpoint.snapshot_states(conn, self.stream)
            self.dead = checkpoint.dead_letter_count(conn, self.stream)
            self.resume = checkpoint.load_resume(conn, self.stream)

    def reload(self) -> None:
        """Read positions, snapshot states and the resume token again (another applier may
        have committed since: after taking over its lease)."""
        if self._tx is not None:
            self.rollback()
            return
        self._load()

    @property
    def position(self) -> Position | None:
        return self.positions.get("")

    def connect(self, *, take_over: bool = False) -> None:
        """Open the sink's connection and tag it (idempotent; begin() calls it).

        PostgreSQL: the session writes under replication origin ``strangler_<stream>``, so
        the source of a stream back out of this database skips what we write. Without it the
        reverse stream would echo every change, so a role that may not use origins stops the
        stream here, saying what to grant. SQLite: the marker table the transactions use.

        An origin is active in one session at a time. With `take_over` (the caller holds the
        stream's lease, cdc/lease.py) a session still holding it belongs to a fenced or dead
        applier, and is ended (``pg_terminate_backend``) so this one can write.
        """
        if self._conn is not None:
            return
        conn = self.engine.connect()
        try:
            if conn.dialect.name == "postgresql":
                self._setup_origin(conn, take_over)
            elif conn.dialect.name == "sqlite":
                conn.exec_driver_sql(SQLITE_MARKER_DDL)
            conn.commit()
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _setup_origin(self, conn: Connection, take_over: bool = False) -> None:
        name = origin_name(self.stream)
        deadline = time.monotonic() + ORIGIN_TAKEOVER_SECONDS
        while True:
            try:
                conn.exec_driver_sql(
                    "SELECT pg_replication_origin_create(%(n)s) WHERE NOT EXISTS "
                    "(SELECT 1 FROM pg_replication_origin WHERE roname = %(n)s)", {"n": name})
                conn.exec_driver_sql("SELECT pg_replication_origin_session_setup(%(n)s)", {"n": name})
                return
            except sa.exc.DBAPIError as exc:
                conn.rollback()
                busy = _origin_busy_pid(exc)
                if not take_over or busy is None or time.monotonic() > deadline:
                    self._origin_error(conn, exc, name)
                log.warning("%s: ending session %d, which still holds origin %s (a fenced or dead "
                            "applier)", self.stream, busy, name)
                try:
                    conn.exec_driver_sql("SELECT pg_terminate_backend(%(p)s, 5000)", {"p": busy})
                    conn.commit()
                except sa.exc.DBAPIError as denied:
                    raise SinkError(
                        f"stream {self.stream}: session {busy} still holds origin {name!r} but this role "
                        f"may not end it ({str(denied.orig).strip()}); end it as a superuser "
                        f"(SELECT pg_terminate_backend({busy})) or GRANT pg_signal_backend to this "
                        f"role") from denied

    def _origin_error(self, conn: Connection, exc: sa.exc.DBAPIError, name: str) -> NoReturn:
        detail = str(exc.orig).strip()
        if getattr(exc.orig, "pgcode", None) == "42501":  # insufficient_privilege
            role = conn.exec_driver_sql("SELECT current_user").scalar()
            raise SinkError(
                f"stream {self.stream}: the target role {role!r} may not use replication origins "
                f"({detail}); without origin {name!r} a stream back out of this database would echo "
                f"every change. Grant it, as a superuser in the target database: GRANT EXECUTE ON "
                f"FUNCTION pg_replication_origin_create(text), "
                f"pg_replication_origin_session_setup(text) TO \"{role}\"; (or sink as a "
                f"superuser), then run the stream again") from exc
        raise SinkError(
            f"stream {self.stream}: cannot write under replication origin {name!r} ({detail}); "
            f"if another `strangler cdc run {self.stream}` is active, stop it first") from exc

    def begin(self) -> None:
        self.connect()
        assert self._conn is not None
        if self._tx is None:
            self._tx = self._conn.begin()
            try:
                if self._fence is not None:
                    self._fence(self._conn)
                if self._sqlite:  # first write of every target transaction (cdc/origin.py)
                    self._conn.exec_driver_sql(f"INSERT INTO {SQLITE_MARKER} (stream) VALUES (?)", (self.stream,))
            except BaseException:
                self.rollback()
                raise

    def relation_changed(self, table: str, columns: Mapping[str, str]) -> None:
        """The source table's columns changed here and the capture accepted it (a transport
        whose apply end has mappings of its own: the same change, ``new_columns`` included)."""
        tab = self.tables.get(table)
        if tab is not None:
            tab.tm.check_relation(columns)

    @property
    def has_checkpoints(self) -> bool:
        """Whether positions or copy states are recorded (committed or in this transaction)."""
        return bool(self.positions or self.snapshot_state or self._snap)

    def forget_checkpoints(self) -> None:
        """The capture started over from a new capture point (a new slot): the positions and
        copy states recorded so far are void. In the open transaction, so they are gone
        exactly when what follows is committed (a rollback brings them back)."""
        assert self._conn is not None and self._tx is not None, "begin() first"
        checkpoint.clear(self._conn, self.stream)
        self.positions, self.snapshot_state = {}, {}
        self._dirty.clear()
        self._snap.clear()

    @property
    def in_transaction(self) -> bool:
        return self._tx is not None

    def renew_fence(self) -> None:
        """Run the fence again (renewing a lease while idle, or during a long transaction)."""
        if self._fence is None:
            return
        if self._tx is not None:
            assert self._conn is not None
            self._fence(self._conn)
            return
        self.begin()
        self.commit()

    # -- applying -----------------------------------------------------------------------
    def _plan(self, events: Sequence[ChangeEvent], conn: Connection) -> list[tuple[str, str, Any, ChangeEvent]]:
        """(table, action, payload, event) per applicable event; bad ones dead-lettered."""
        plan: list[tuple[str, str, Any, ChangeEvent]] = []
        tables, positions, rules = self.tables, self.positions, self._rules
        for ev in events:
            op = ev.op
            tab = tables.get(ev.table)
            if tab is None:
                # a message, or a table outside this stream (a shared publication): nothing to
                # write, but its position is recorded so the source can acknowledge past it
                plan.append(("", MARK, None, ev))
                continue
            if ev.position.lsn != 0 or op != "r":  # initial-copy rows (lsn 0) are never replays
                done = positions.get(ev.table)
                if done is not None and ev.position <= done:
                    continue  # replayed after a restart: already applied
            rule = rules.get(ev.table) if rules else None
            if rule is not None and not rule.rows:
                self._plan_not_owned(conn, tab, rule, ev, plan)
                continue
            payload: Any
            try:
                after = ev.after
                if after is None:
                    if op == "r":
                        action, payload = (SWEEP, tab.sweep_plan(ev.extent)) if ev.extent else (MARK, None)
                    elif op == "t":
                        action, payload = TRUNCATE, None
                    else:
                        action, payload = DELETE, tab.tm.key_to_target(ev.key)
                elif op == "d" or (tab.filtered and not tab.tm.matches(after, unknown=ev.unchanged)):
                    action, payload = DELETE, tab.tm.key_to_target(ev.key)
                elif not ev.unchanged:
                    action, payload = UPSERT, tab.row(after)
                else:
                    action, payload = self._partial(tab, ev, after)
            except (ValueError, TypeError, ArithmeticError) as exc:
                self._dead(conn, ev, f"conversion failed: {exc}")
                self._note([(ev.table, "", None, ev)])
                continue
            if rule is not None:
                if rule.columns and action in (UPDATE, MOVE):  # the other side keeps these
                    payload = (_without(payload, rule.columns) if action == UPDATE
                               else (payload[0], _without(payload[1], rule.columns)))
                self._remember(tab, ev)
            plan.append((ev.table, action, payload, ev))
        return plan

    def _plan_not_owned(self, conn: Connection, tab: _Table, rule: Rule, ev: ChangeEvent,
                        plan: list[tuple[str, str, Any, ChangeEvent]]) -> None:
        """A change from a side that does not own the table: only its kept columns, by UPDATE
        of a row the target has; anything else bypassed the write guard (dead-lettered)."""
        op, after = ev.op, ev.after
        if op == "r" and after is None:
            if ev.extent:  # the owner's rows missing here are its new rows, not ghosts
                log.warning("%s: not sweeping %s: %s owns it (rows it has and %s lacks are its "
                            "own)", self.stream, tab.tm.target, rule.owner, rule.side)
            plan.append((ev.table, MARK, None, ev))
            return
        if op == "r" and not rule.columns:
            plan.append((ev.table, MARK, None, ev))  # a copied row: nothing this side may write
            return
        what = {"c": "an insert", "d": "a delete", "t": "a truncate"}.get(op)
        if what is None and op == "u" and tab.filtered and not tab.tm.matches(after or {}, unknown=ev.unchanged):
            what = "a delete (the row left the stream's filter)"
        changed: list[str] = []
        if what is None and op == "u":
            before = ev.before
            if before is not None and after is not None:
                changed = [c for c in rule.guarded if c in before and c in after and before[c] != after[c]]
            if not rule.columns:
                what = "an update"
        if what is not None:
            self._remember(tab, ev)
            self._dead(conn, ev, rule.violation(what))
            self._note([(ev.table, "", None, ev)])
            return
        try:
            row = tab.row(after or {})
        except (ValueError, TypeError, ArithmeticError) as exc:
            self._dead(conn, ev, f"conversion failed: {exc}")
            self._note([(ev.table, "", None, ev)])
            return
        payload = {c: v for c, v in row.items() if c in rule.columns or c in tab.key}
        if changed:  # the kept part is applied; the rest is not, and is recorded as such
            self._remember(tab, ev)
            self._dead(conn, ev, rule.violation(f"an update of {', '.join(changed)}")
                       + f" (its {', '.join(rule.kept)} part was applied)")
        self._kept[id(ev)] = rule
        plan.append((ev.table, KEPT, payload, ev))

    def _remember(self, tab: _Table, ev: ChangeEvent) -> None:
        """Note a change of a table in an ownership group for the dual-write detector."""
        if ev.op not in ("c", "u", "d") or not ev.key:
            return
        keys = self._recent.get(ev.table)
        if keys is None:
            keys = self._recent[ev.table] = tab.key_log()
        try:
            keys.add(ev.key, ev.ts_ms or int(time.time() * 1000))
        except (KeyError, ValueError, TypeError, ArithmeticError):
            return  # a key that does not map: its change is dead-lettered with the reason

    @staticmethod
    def _partial(tab: _Table, ev: ChangeEvent, after: dict[str, Any]) -> tuple[str, Any]:
        """The action for an image without its unchanged TOAST columns.

        Those values are only in the target's row: an update of the row under this key, or,
        for a key change (``before`` holds the old key), a move of the old key's row.
        """
        row = tab.row(after)
        if not tab.tm.to_target(dict.fromkeys(ev.unchanged)):
            return UPSERT, row  # the unseen columns are not copied: the image is whole
        if ev.op == "c" and ev.before is not None:
            return MOVE, (tab.tm.key_to_target(ev.before), row)
        return UPDATE, row

    def write(self, events: Sequence[ChangeEvent]) -> None:
        """Apply events inside the open transaction (call begin() first)."""
        assert self._conn is not None and self._tx is not None, "begin() first"
        conn = self._conn
        if self.owned.refresh() is not self._rules:  # one stat per batch; re-read if changed
            self._rules = self.owned.rules
            self._keep = {t: r.columns for t, r in self._rules.items() if r.rows and r.columns}
        self._kept.clear()
        plan = self._plan(events, conn)
        if not plan:
            self._save_recent(conn)
            return
        try:
            try:
                with conn.begin_nested():
                    incomplete = self._run_plan(conn, plan)
            except self._row_errors:
                # One bad row fails the whole statement: redo one by one, dead-letter the bad ones.
                incomplete = []
                for step in plan:
                    try:
                        with conn.begin_nested():
                            incomplete += self._run_plan(conn, [step])
                    except self._row_errors as exc:
                        self._dead(conn, step[3], f"target refused: {str(getattr(exc, 'orig', exc)).strip()}")
            for ev in incomplete:  # never silent: a row the target cannot complete
                rule = self._kept.get(id(ev))
                if rule is not None:
                    what = "a copied row" if ev.op == "r" else "an update"
                    self._dead(conn, ev, rule.violation(f"{what} of a row {rule.owner} does not have "
                                                        f"(key {ev.key})"))
                elif self._copy_brings(ev):
                    log.debug("%s: row %s not copied yet; the running copy brings it", ev.table, ev.key)
                else:
                    self._dead(conn, ev, self._incomplete_reason(ev))
            self._save_recent(conn)
        except self._db_errors as exc:
            raise SinkError(f"target database failed; the stream stops with its position kept: "
                            f"{str(getattr(exc, 'orig', exc)).strip()}") from exc
        self._note(plan)

    def copy_chunk(self, table: str, load: Callable[[Any], int], last_key: list[Any] | None,
                   final: bool) -> int | None:
        """One chunk of an initial copy loaded by COPY (cdc/pgcopy.py): `load(cursor)` writes
        it through this sink's own tagged connection, committed with the table's copy
        progress; returns the rows loaded. None: the target refused a value (nothing of the
        chunk stays; the caller copies it by events, which dead-letters the bad rows)."""
        self.begin()
        conn = self._conn
        assert conn is not None
        try:
            with conn.begin_nested():
                n = load(conn.connection.cursor())
        except self._row_errors as exc:
            log.warning("%s: COPY of a %s chunk refused (%s); copying it by events",
                        self.stream, table, str(getattr(exc, "orig", exc)).strip())
            self.rollback()
            return None
        except self._db_errors as exc:
            self.rollback()
            raise SinkError(f"target database failed; the stream stops with its position kept: "
                            f"{str(getattr(exc, 'orig', exc)).strip()}") from exc
        prev = self._snap.get(table) or self.snapshot_state.get(table) or ("copying", None, 0)
        self._snap[table] = ("done" if final else "copying", last_key if last_key is not None else prev[1],
                             int(prev[2]) + n)
        self.applied += n
        self.commit()
        return n

    def _save_recent(self, conn: Connection) -> None:
        """The batch's keys of grouped tables, with the rows (and, at most once a second, the
        ones older than the window forgotten)."""
        if not self._recent:
            return
        checkpoint.record_recent(conn, self.stream, list(self._recent.values()))
        self._recent.clear()
        now = time.monotonic()
        if now - self._pruned_at > 1.0:
            self._pruned_at = now
            checkpoint.prune_recent(conn, self.stream, int(time.time() * 1000 - RECENT_WINDOW_S * 1000))

    def _note(self, plan: list[tuple[str, str, Any, ChangeEvent]]) -> None:
        """Remember positions (the last event per table) and snapshot progress."""
        last: dict[str, ChangeEvent] = {}
        for table, _a, _p, ev in plan:
            last[table] = ev
            if ev.op == "r" and ev.snapshot != "false":
                self._snap[table] = self._snapshot_progress(table, ev)
        for table, ev in last.items():
            if ev.op == "r" and ev.position.lsn == 0:
                continue
            if table:
                self.positions[table] = ev.position
                self._dirty[table] = (ev.position, ev.ts_ms)
            if self.positions.get("") is None or ev.position > self.positions[""]:
                self.positions[""] = ev.position
                self._dirty[""] = (ev.position, ev.ts_ms)
            self.last_ts_ms = max(self.last_ts_ms, ev.ts_ms)
        self.applied += len(plan)

    def _snapshot_progress(self, table: str, ev: ChangeEvent) -> tuple[str, list[Any] | None, int]:
        """(state, last copied key, rows copied) after snapshot event `ev` of `table`."""
        return copy_progress(self._snap.get(table) or self.snapshot_state.get(table), ev, self.tables[table].tm.key)

    def _dead(self, conn: Connection, ev: ChangeEvent, reason: str) -> None:
        log.warning("dead letter %s %s %s: %s", self.stream, ev.table, ev.position, reason)
        with conn.begin_nested():
            checkpoint.add_dead_letter(conn, self.stream, ev.table, ev.position, ev.op,
                                       ev.to_json().decode(), reason)
        self.dead += 1

    def _copy_brings(self, ev: ChangeEvent) -> bool:
        """Whether a copy of ev's table is running (or, never copied yet, is about to) and has
        not reached ev's key yet: it then reads the row as it is now. Only for keys that order
        alike everywhere."""
        state = self._snap.get(ev.table) or self.snapshot_state.get(ev.table) or ("copying", None, 0)
        tab = self.tables[ev.table]
        if state[0] != "copying" or not tab.tm.key_orders_alike:
            return False
        key = tuple(key_value(ev.key.get(k)) for k in tab.tm.key)
        return not state[1] or key > tuple(key_value(v) for v in state[1])

    def _incomplete_reason(self, ev: ChangeEvent) -> str:
        tm = self.tables[ev.table].tm
        missing = ", ".join(sorted(tm.to_target(dict.fromkeys(ev.unchanged))))
        moved = f" (nor under its old key {ev.before})" if ev.op == "c" and ev.before is not None else ""
        return (f"cannot complete row {ev.key} of {tm.target}: the change lacks {missing} (unchanged "
                f"TOASTed values, which PostgreSQL sends only with REPLICA IDENTITY FULL) and the target "
                f"has no such row to keep them from{moved}. Run `ALTER TABLE {ev.table} REPLICA IDENTITY "
                f"FULL` so such changes carry every value, then `strangler cdc snapshot {self.stream} "
                f"{ev.table}` to re-copy the table")

    def _run_plan(self, conn: Connection, plan: list[tuple[str, str, Any, ChangeEvent]]) -> list[ChangeEvent]:
        """Execute the plan run by run; returns the events whose row the target lacks."""
        incomplete: list[ChangeEvent] = []
        i = 0
        while i < len(plan):
            table, action = plan[i][0], plan[i][1]
            j = i
            while j < len(plan) and plan[j][0] == table and plan[j][1] == action:
                j += 1
            if action in (UPDATE, KEPT):
                incomplete += self._update(conn, self.tables[table], plan[i:j])
            elif action == MOVE:
                incomplete += self._move(conn, self.tables[table], plan[i:j])
            elif action != MARK:
                # a run of source inserts only: the target most likely lacks every row
                inserts = action == UPSERT and all(p[3].op == "c" for p in plan[i:j])
                self._run(conn, self.tables[table], action, [p[2] for p in plan[i:j]], inserts)
            i = j
        return incomplete

    def _update(self, conn: Connection, tab: _Table, steps: list[tuple[str, str, Any, ChangeEvent]]) -> list[ChangeEvent]:
        """Partial images (unchanged TOAST left out), coalesced by key; each must hit its row."""
        key = tab.key
        rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        events: dict[tuple[Any, ...], list[ChangeEvent]] = {}
        for _t, _a, p, ev in steps:
            k = tuple(p[c] for c in key)
            prev = rows.get(k)
            rows[k] = p if prev is None else {**prev, **p}
            events.setdefault(k, []).append(ev)
        groups: dict[frozenset[str], list[dict[str, Any]]] = {}
        for r in rows.values():
            groups.setdefault(frozenset(r), []).append(r)
        incomplete: list[ChangeEvent] = []
        for cols, group in groups.items():
            rest = [c for c in cols if c not in key]
            if rest:
                params = [{**{f"k_{k}": r[k] for k in key}, **{f"v_{c}": r[c] for c in rest}} for r in group]
                if conn.execute(tab.partial_update(cols), params).rowcount == len(group):
                    continue  # every row was there (keys are distinct after coalescing)
            # some row was not (or the driver cannot count): find which, one by one
            for r in group:
                if not self._exists(conn, tab, r):
                    incomplete += events[tuple(r[c] for c in key)]
        return incomplete

    def _move(self, conn: Connection, tab: _Table, steps: list[tuple[str, str, Any, ChangeEvent]]) -> list[ChangeEvent]:
        """Key changes of partial images: the old key's row takes the new key and values."""
        t = tab.table
        incomplete = []
        for _t, _a, (old_key, row), ev in steps:
            if conn.execute(sa.update(t).where(*tab.where_key(old_key)).values(row)).rowcount == 1:
                continue
            # The old row is not in the target; if the new one is, this is a plain update.
            rest = {c: v for c, v in row.items() if c not in tab.key}
            if rest and conn.execute(sa.update(t).where(*tab.where_key(row)).values(rest)).rowcount == 1:
                continue
            if rest or not self._exists(conn, tab, row):
                incomplete.append(ev)
        return incomplete

    @staticmethod
    def _exists(conn: Connection, tab: _Table, row: dict[str, Any]) -> bool:
        return conn.execute(sa.select(sa.literal(1)).select_from(tab.table)
                            .where(*tab.where_key(row)).limit(1)).first() is not None

    def _run(self, conn: Connection, tab: _Table, action: str, payloads: list[Any],
             inserts: bool = False) -> None:
        t, key = tab.table, tab.key
        if action == SWEEP:
            for payload in payloads:
                tab.sweep(conn, *payload)
            return
        if action == TRUNCATE:
            conn.execute(sa.delete(t))
            return
        if action == DELETE:
            tab.delete_keys(conn, list({tuple(p[k] for k in key): None for p in payloads}))
            return
        # Coalesce by key: the last image wins (merged into a new dict: payloads are reused
        # if the batch is retried event by event).
        rows: dict[Any, dict[str, Any]] = {}
        if len(key) == 1:
            k0 = key[0]
            for p in payloads:
                k = p[k0]
                prev = rows.get(k)
                rows[k] = p if prev is None else {**prev, **p}
        else:
            for p in payloads:
                k = tuple(p[c] for c in key)
                prev = rows.get(k)
                rows[k] = p if prev is None else {**prev, **p}
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for r in rows.values():
            names = tuple(r)
            group = groups.get(names)
            if group is None:
                groups[names] = [r]
            else:
                group.append(r)
        keep = self._keep.get(tab.tm.source, frozenset()) if self._keep else frozenset()
        for names, group in groups.items():
            if tab.pg is not None:
                tab.pg.upsert(conn.connection.cursor(), names, group, keep, inserts=inserts)
            else:
                conn.execute(tab.upsert(frozenset(names), keep), group)

    def commit(self, resume: Mapping[str, Any] | None = None) -> Position | None:
        """Store positions, snapshot progress and the transport's `resume` token with the
        rows; returns the durable position."""
        if self._tx is None:
            return self.position
        conn = self._conn
        assert conn is not None
        try:
            if resume is not None:
                checkpoint.save_resume(conn, self.stream, resume)
            for table, (pos, ts) in self._dirty.items():
                checkpoint.save_position(conn, self.stream, table, pos, ts)
            for table, (state, key, rows) in self._snap.items():
                checkpoint.save_snapshot(conn, self.stream, table, state, key, rows)
                self.snapshot_state[table] = (state, key, rows)
            if self._sqlite:  # the last statement before COMMIT
                conn.exec_driver_sql(f"DELETE FROM {SQLITE_MARKER} WHERE stream = ?", (self.stream,))
            faults.point("sink.before_commit")
            self._tx.commit()
            faults.point("sink.after_commit")
        except sa.exc.DBAPIError as exc:
            self.rollback()
            raise SinkError(f"target commit failed: {str(exc.orig).strip()}") from exc
        finally:
            self._tx = None
        self._dirty.clear()
        self._snap.clear()
        if resume is not None:
            self.resume = dict(resume)
        return self.position

    def rollback(self) -> None:
        if self._tx is not None:
            tx, self._tx = self._tx, None
            # a lost connection rolled back already (the server ended the transaction)
            with contextlib.suppress(sa.exc.DBAPIError, sa.exc.InvalidRequestError):
                tx.rollback()
        self._recent.clear()
        self._dirty.clear()
        self._snap.clear()
        self._load()

    def close(self) -> None:
        if self._tx is not None:
            self.rollback()
        if self._conn is not None:
            if not self._sqlite:
                self._conn.invalidate()  # never back to the pool: it holds the origin session
            self._conn.close()
            self._conn = None

