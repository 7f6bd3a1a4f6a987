"""PostgreSQL source: logical decoding with `pgoutput` over psycopg2's replication protocol.

Manages the stream's publication (the mapped tables) and its logical replication slot.
`open()` creates a missing slot with an exported snapshot and imports that snapshot into a
separate REPEATABLE READ transaction *before* streaming starts (the snapshot dies when the
replication connection runs its next command), so the initial copy plus the stream from the
slot's consistent point see every row exactly once.

The slot is acknowledged (flush position) only up to the end LSN of the last source
transaction whose events are all durable downstream; when nothing is pending, the server's
keepalive position is acknowledged so an idle slot never pins WAL. Transactions a sink wrote
into this database from this stream's target (its reverse: replication origin
``strangler_<that stream>``, ``cfg.skip_origins``) are skipped: no ping-pong. Every other origin is captured: a chain
A -> B -> C carries A's changes on to C.

Values: integers, floats, numeric, booleans and strings become Python values; every other
type (json, arrays, intervals, bytea, timestamps, enums, ...) stays PostgreSQL's own text,
which the target reads back exactly. Snapshot SELECTs return the same (``use_stream_values``).

Refused loudly rather than streamed wrong: a slot that is gone while the target holds a
position from it, a slot the server invalidated (``wal_status = lost``), and a publication
that no longer publishes every operation or (while running) lost one of the stream's tables;
each message names the slot or publication and the fix. `slot_info` reports the slot's WAL
health (retained bytes, ``wal_status``, ``safe_wal_size``) with a warning before the server
invalidates it.
"""

from __future__ import annotations

import contextlib
import select
import time
from collections import deque
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from cdc import faults
from cdc.config import StreamConfig
from cdc.errors import SourceError
from cdc.events import ChangeEvent, Position
from cdc.mapping import TableSchema, pg_category
from cdc.sources import MESSAGE_PREFIX, Item, Message, Relation
from cdc.sources import pgoutput as pg

OPERATIONS = ("insert", "update", "delete", "truncate")
PUBLICATION_CHECK_S = 10.0  # how often a running stream re-reads its publication
SAFE_WAL_WARN = 0.2  # warn when less than this share of max_slot_wal_keep_size is left
# Values of these types become Python values (exact: numeric keeps NaN and ±Infinity as
# Decimal), by their kind (pgoutput.KINDS). Every other type stays PostgreSQL's own text,
# which the target reads back exactly; psycopg2's casters would not (big JSON numbers become
# floats, a JSON string loses its quotes, months of an interval become days, infinity becomes
# datetime.max).
_FAST_KINDS: dict[int, str] = {
    25: "s", 1043: "s", 1042: "s", 19: "s", 20: "i", 21: "i", 23: "i", 26: "i",
    700: "f", 701: "f", 1700: "n", 16: "b",
}
# Output in forms every PostgreSQL reads back as the same value, whatever the server's
# defaults (a DMY DateStyle would swap day and month on a target set to MDY).
_SESSION_OPTIONS = "-c DateStyle=ISO,MDY -c IntervalStyle=postgres -c bytea_output=hex"
# A domain's category is its base type's (typcategory of the base, recursively).
_TYPE_INFO_SQL = """
    WITH RECURSIVE b(oid, base) AS (
        SELECT oid, oid FROM pg_type WHERE oid = ANY(%s)
      UNION ALL
        SELECT b.oid, t.typbasetype FROM b JOIN pg_type t ON t.oid = b.base WHERE t.typtype = 'd')
    SELECT b.oid, t.oid, t.typcategory, t.typname FROM b JOIN pg_type t ON t.oid = b.base
    WHERE t.typtype <> 'd'"""


def _as_text(value: str | bytes | None, _cursor: Any) -> Any:
    return value


def use_stream_values(conn: Any) -> None:
    """Make `conn` return what the stream gives: Python values for the fast types, the
    server's text for every other, so a row copied equals the same row streamed."""
    oids = tuple(o for o in psycopg2.extensions.string_types
                 if isinstance(o, int) and o not in _FAST_KINDS)
    psycopg2.extensions.register_type(psycopg2.extensions.new_type(oids, "STRANGLER_TEXT", _as_text), conn)


def _connect(dsn: str, **kwargs: Any) -> Any:
    """A connection whose text output of values is the same on every server (see above)."""
    own = psycopg2.extensions.parse_dsn(dsn).get("options", "")
    return psycopg2.connect(dsn, options=f"{own} {_SESSION_OPTIONS}".strip(), **kwargs)


def libpq_dsn(url: str) -> str:
    return url.replace("postgresql+psycopg2://", "postgresql://").replace("postgres://", "postgresql://")


def _qualified(table: str) -> tuple[str, str]:
    ns, _, name = table.rpartition(".")
    return ns or "public", name


def _quote(table: str) -> str:
    ns, name = _qualified(table)
    return f'"{ns}"."{name}"'


class PgInitialSnapshot:
    """A REPEATABLE READ transaction that imported the slot's exported snapshot."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def cursor(self) -> tuple[Any, str]:
        return self._conn.cursor(), "format"

    def close(self) -> None:
        try:
            self._conn.rollback()
        finally:
            self._conn.close()


class PostgresSource:
    def __init__(self, cfg: StreamConfig, tables: list[str], *, keys: dict[str, tuple[str, ...]] | None = None) -> None:
        self.cfg = cfg
        self.tables = tables
        self.dsn = libpq_dsn(cfg.source_url)
        self.keys: dict[str, tuple[str, ...]] = dict(keys or {})
        try:
            self._conn = _connect(self.dsn)
        except psycopg2.Error as exc:
            raise SourceError(f"cannot connect to the source PostgreSQL: {exc}".strip()) from exc
        self._conn.autocommit = True
        use_stream_values(self._conn)  # chunks copied while streaming come through it
        self._repl: Any = None
        self._cur: Any = None
        self._rels: dict[int, pg.RelationInfo] = {}
        self._types: dict[tuple[int, int], str] = {}
        self._bases: dict[int, tuple[int, str]] = {}  # type oid -> (base type oid, category)
        self._txns: deque[list[int]] = deque()  # [commit lsn, last index, end lsn]
        self._in_tx = False
        self._tx_lsn = self._tx_ts = self._tx_xid = self._idx = 0
        self._skip = False
        self._skip_origins = frozenset(cfg.skip_origin_names)
        self._held: ChangeEvent | Message | None = None
        self._durable: Position | None = None
        self._acked = 0
        self._last_feedback = 0.0
        self._dbname = self._conn.get_dsn_parameters().get("dbname", "")
        self.database = self._dbname
        self._publication_checked = 0.0

    # -- schema -------------------------------------------------------------------------
    def _sql(self, query: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._conn.cursor() as cur:
                cur.execute(query, args)
                return cur.fetchall() if cur.description else []
        except psycopg2.Error as exc:
            raise SourceError(f"source PostgreSQL refused: {str(exc).strip()}") from exc

    def describe(self, tables: list[str] | None = None) -> dict[str, TableSchema]:
        # A partitioned table is one table (its root, relkind 'p'); its partitions are listed
        # only when asked for by name. A root's REPLICA IDENTITY is its partitions' (they log
        # the changes): FULL only if every partition is FULL.
        rows = self._sql(
            """SELECT c.oid, n.nspname, c.relname, c.relispartition,
                      CASE WHEN c.relkind = 'p' THEN
                        CASE WHEN bool_and(l.relreplident = 'f') THEN 'f' ELSE 'd' END
                      ELSE c.relreplident::text END
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               LEFT JOIN pg_partition_tree(c.oid) p ON c.relkind = 'p' AND p.isleaf
               LEFT JOIN pg_class l ON l.oid = p.relid
               WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                 AND n.nspname NOT LIKE 'pg_toast%%'
               GROUP BY c.oid, n.nspname, c.relname, c.relispartition, c.relkind, c.relreplident""")
        wanted = set(tables or ())
        out = {}
        for oid, ns, rel, is_partition, ident in rows:
            name = rel if ns == "public" else f"{ns}.{rel}"
            if is_partition and name not in wanted:
                continue
            cols = self._sql("""SELECT attname, format_type(atttypid, atttypmod), atttypid
                                FROM pg_attribute WHERE attrelid = %s AND attnum > 0
                                AND NOT attisdropped ORDER BY attnum""", (oid,))
            pk = self._sql("""SELECT a.attname FROM pg_index i
                              JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                              WHERE i.indrelid = %s AND i.indisprimary
                              ORDER BY array_position(i.indkey, a.attnum)""", (oid,))
            self._type_info([r[2] for r in cols])
            out[name] = TableSchema(name=name, columns={r[0]: r[1] for r in cols},
                                    pk=tuple(r[0] for r in pk), replica_full=ident == "f",
                                    categories={r[0]: self._bases[r[2]][1] for r in cols},
                                    dialect="postgresql")
        return out

    def _type_info(self, oids: list[int]) -> None:
        """Learn (base type, category) of the types in `oids` not known yet."""
        new = sorted({o for o in oids if o not in self._bases})
        if new:
            for oid, base, letter, typname in self._sql(_TYPE_INFO_SQL, (new,)):
                self._bases[oid] = (base, pg_category(letter, typname))
            for oid in new:  # a type dropped meanwhile: its text, as for any unknown type
                self._bases.setdefault(oid, (oid, "unknown"))

    # -- slot and publication -----------------------------------------------------------
    def slot_exists(self) -> bool:
        return bool(self._sql("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (self.cfg.slot,)))

    def _ensure_publication(self) -> None:
        tables = ", ".join(_quote(t) for t in self.tables)
        pub = f'"{self.cfg.publication}"'
        # via the root: a partitioned table's changes arrive under its own name and columns
        if self._sql("SELECT 1 FROM pg_publication WHERE pubname = %s", (self.cfg.publication,)):
            if self.slot_exists():  # resuming: what the publication filtered out is lost
                self.check_publication(resuming=True)
            self._sql(f"ALTER PUBLICATION {pub} SET TABLE {tables}")
            self._sql(f"ALTER PUBLICATION {pub} SET (publish = '{', '.join(OPERATIONS)}', "
                      "publish_via_partition_root = true)")
        else:
            self._sql(f"CREATE PUBLICATION {pub} FOR TABLE {tables} WITH (publish_via_partition_root = true)")

    def _publication_state(self) -> tuple[list[str], set[str]] | None:
        """(operations it does not publish, tables it publishes), None if it does not exist."""
        rows = self._sql("SELECT pubinsert, pubupdate, pubdelete, pubtruncate FROM pg_publication "
                         "WHERE pubname = %s", (self.cfg.publication,))
        if not rows:
            return None
        off = [op for op, on in zip(OPERATIONS, rows[0], strict=True) if not on]
        tables = {t if ns == "public" else f"{ns}.{t}" for ns, t in self._sql(
            "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s",
            (self.cfg.publication,))}
        return off, tables

    def check_publication(self, *, resuming: bool = False) -> None:
        """Someone else's ALTER PUBLICATION silently filters changes out: refuse to go on.

        At start (`resuming`) a stream table missing from the publication may just be newly
        added to streams.yaml (the publication is reset and the table copied); while running it
        can only be someone's ALTER PUBLICATION, so the stream stops.
        """
        pub, name = self.cfg.publication, self.cfg.name
        state = self._publication_state()
        recopy = f"`strangler cdc drop {name}` then `strangler cdc run {name}` (re-copies the tables)"
        if state is None:
            if resuming:
                return
            raise SourceError(f"publication {pub!r} of stream {name} was dropped while the stream ran; "
                              f"changes since are lost to the stream: {recopy}")
        off, tables = state
        if off:
            raise SourceError(
                f"publication {pub!r} of stream {name} does not publish {', '.join(off)} (someone ran "
                f"ALTER PUBLICATION {pub} SET (publish = ...)); those changes made since were not "
                f"streamed. Fix: {recopy}; or, if nothing was written meanwhile, ALTER PUBLICATION "
                f"{pub} SET (publish = '{', '.join(OPERATIONS)}') and run again")
        missing = [t for t in self.tables if t not in tables]
        if missing and not resuming:
            raise SourceError(
                f"table {', '.join(missing)} was removed from publication {pub!r} of stream {name} "
                f"(ALTER PUBLICATION ... DROP TABLE); its changes since were not streamed. Fix: "
                f"restart the stream (it restores the publication), then `strangler cdc snapshot "
                f"{name} {' '.join(missing)}`; or {recopy}")

    def _connect_replication(self) -> None:
        try:
            self._repl = _connect(
                self.dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection)
            self._cur = self._repl.cursor()
        except psycopg2.Error as exc:
            raise SourceError(f"cannot open a replication connection (needs the REPLICATION "
                              f"privilege and wal_level=logical): {str(exc).strip()}") from exc

    def open(self, start_after: Position | None) -> PgInitialSnapshot | None:
        level = self._sql("SHOW wal_level")[0][0]
        if level != "logical":
            raise SourceError(f"source PostgreSQL has wal_level={level}; set wal_level=logical "
                              "in postgresql.conf and restart it")
        self._check_slot(start_after)
        self._ensure_publication()
        self._connect_replication()
        if self.slot_exists():
            return None
        try:
            self._cur.create_replication_slot(self.cfg.slot, output_plugin="pgoutput")
            _slot, _consistent, snapshot_name, _plugin = self._cur.fetchone()
            faults.point("source.after_slot_created")
            snap = _connect(self.dsn)
            use_stream_values(snap)
            snap.set_session(isolation_level="REPEATABLE READ", readonly=True)
            snap.cursor().execute("SET TRANSACTION SNAPSHOT %s", (snapshot_name,))
        except psycopg2.Error as exc:
            raise SourceError(f"cannot create slot {self.cfg.slot!r}: {str(exc).strip()}") from exc
        return PgInitialSnapshot(snap)

    def _check_slot(self, start_after: Position | None) -> None:
        """Resume only from the slot the target's position came from, and only while it is whole."""
        name, slot = self.cfg.name, self.cfg.slot
        recopy = f"`strangler cdc drop {name}` then `strangler cdc run {name}` (re-copies the tables)"
        rows = self._sql("SELECT wal_status FROM pg_replication_slots WHERE slot_name = %s", (slot,))
        if not rows and start_after is not None:
            raise SourceError(
                f"replication slot {slot!r} of stream {name} is gone (dropped by hand?) but the target "
                f"holds position {start_after} read from it: the changes since are lost to the stream, "
                f"and a new slot would silently skip them. Fix: {recopy}")
        if rows and rows[0][0] == "lost":
            raise SourceError(
                f"replication slot {slot!r} of stream {name} was invalidated by the server (it retained "
                f"more WAL than max_slot_wal_keep_size allows); the changes it held are gone. Fix: "
                f"{recopy}; and keep the stream running or raise max_slot_wal_keep_size")

    def install(self) -> bool:
        """Publication and slot without a snapshot (the first run copies with watermarks)."""
        self._ensure_publication()
        if self.slot_exists():
            return False
        self._sql("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (self.cfg.slot,))
        return True

    def _ensure_streaming(self) -> None:
        if self._cur is None:
            self._connect_replication()
        if getattr(self, "_streaming", False):
            return
        try:
            self._cur.start_replication(
                slot_name=self.cfg.slot, decode=False, status_interval=5,
                options={"proto_version": "1", "publication_names": self.cfg.publication,
                         "messages": "true"})
        except psycopg2.Error as exc:
            raise SourceError(f"cannot stream from slot {self.cfg.slot!r}: {str(exc).strip()} "
                              "(is another `cdc run` of this stream active?)") from exc
        self._streaming = True

    # -- streaming ----------------------------------------------------------------------
    def poll(self, max_items: int, timeout: float) -> list[Item]:
        self._ensure_streaming()
        if time.monotonic() - self._publication_checked > PUBLICATION_CHECK_S:
            self._publication_checked = time.monotonic()
            self.check_publication()
        out: list[Item] = []
        waited = False
        try:
            while len(out) < max_items:
                msg = self._cur.read_message()
                if msg is None:
                    if out or waited:
                        break
                    self._idle_feedback()
                    waited = True
                    ready, _, _ = select.select([self._repl], [], [], timeout)
                    if not ready:
                        break
                    continue
                self._handle(msg.payload, out)
        except psycopg2.Error as exc:
            raise SourceError(f"replication stream failed: {str(exc).strip()}") from exc
        return out

    def _kind(self, oid: int) -> str:
        """A Python value for the fast types (a domain as its base), else the text as it came."""
        fast = _FAST_KINDS.get(oid)
        if fast is None:
            self._type_info([oid])
            fast = _FAST_KINDS.get(self._bases[oid][0])
        return fast or "s"

    def _type_name(self, oid: int, mod: int) -> str:
        name = self._types.get((oid, mod))
        if name is None:
            name = self._types[(oid, mod)] = self._sql("SELECT format_type(%s, %s)", (oid, mod))[0][0]
        return name

    def _release(self, out: list[Item]) -> None:
        if self._held is not None:
            out.append(self._held)
            self._held = None

    def _event(self, op: str, rel: pg.RelationInfo, before: dict[str, Any] | None,
               after: dict[str, Any] | None, unchanged: list[str], out: list[Item]) -> None:
        image = after if after is not None else before or {}
        self._idx += 1
        if self._held is not None:
            out.append(self._held)
        keycols = rel.keycols
        if len(keycols) == 1:  # this runs once per row: no comprehension for the usual key
            k = keycols[0]
            key = {k: image.get(k)}
        else:
            key = {k: image.get(k) for k in keycols}
        # positional (fields in ChangeEvent's order)
        self._held = ChangeEvent(
            op, rel.table, key, before, after,
            Position(self._tx_lsn, self._idx), self._tx_ts, False, self._dbname, rel.namespace,
            self._tx_xid, "false", tuple(unchanged) if unchanged else ())

    def _key_change(self, rel: pg.RelationInfo, old: dict[str, Any], new: dict[str, Any],
                    unchanged: list[str], out: list[Item]) -> None:
        """An update of the key: a delete of the old key and an insert of the new one.

        If the new image lacks unchanged TOAST columns, only the target's row under the old
        key holds them: the insert comes first and carries the old key in ``before`` (the
        sink moves that row to the new key), then the delete of the old key.
        """
        if not unchanged:
            self._event("d", rel, old, None, [], out)
            self._event("c", rel, None, new, unchanged, out)
            return
        self._event("c", rel, {k: old.get(k) for k in rel.keycols}, new, unchanged, out)
        self._event("d", rel, old, None, [], out)

    def _handle(self, buf: bytes, out: list[Item]) -> None:
        kind = buf[0]
        if kind == 73 or kind == 85 or kind == 68:  # I U D
            if self._skip:
                return
            rel = self._rels[pg._U32(buf, 1)[0]]
            if kind == 73:
                row, unchanged, _ = pg.tuple_data(buf, 6, rel)
                self._event("c", rel, None, row, unchanged, out)
            elif kind == 85:
                old: dict[str, Any] | None = None
                pos, sub = 5, buf[5]
                if sub in (75, 79):  # K (old key) / O (old row, REPLICA IDENTITY FULL)
                    old, _, pos = pg.tuple_data(buf, 6, rel)
                new, unchanged, _ = pg.tuple_data(buf, pos + 1, rel)
                if unchanged and sub == 79 and old is not None:
                    for c in unchanged:  # fill unchanged TOAST from the full old row
                        if c in old:
                            new[c] = old[c]
                    unchanged = [c for c in unchanged if c not in new]
                if old is not None and any(old.get(k) != new.get(k) for k in rel.keycols):
                    self._key_change(rel, old, new, unchanged, out)
                else:
                    self._event("u", rel, old if sub == 79 else None, new, unchanged, out)
            else:
                old, _, _ = pg.tuple_data(buf, 6, rel)
                self._event("d", rel, old, None, [], out)
        elif kind == 66:  # B
            self._tx_lsn, self._tx_ts, self._tx_xid = pg.begin(buf)
            self._idx, self._skip, self._in_tx = 0, False, True
        elif kind == 67:  # C
            _commit_lsn, end_lsn = pg.commit(buf)
            if self._held is not None:
                self._held.last = True
            self._release(out)
            self._txns.append([self._tx_lsn, self._idx, end_lsn])
            self._in_tx = False
            self._advance()
        elif kind == 82:  # R
            rel = pg.relation(buf, self._kind)
            self._rels[rel.relid] = rel
            table = rel.table = rel.name if rel.namespace == "public" else f"{rel.namespace}.{rel.name}"
            if table not in self.tables:
                table = rel.table = self._partition_root(rel.relid) or table
            rel.keycols = list(self.keys.get(table) or
                               [c for c, k in zip(rel.columns, rel.key_flags, strict=True) if k])
            cols = {c: self._type_name(o, m) for c, o, m in zip(rel.columns, rel.type_oids, rel.typmods, strict=True)}
            self._release(out)
            out.append(Relation(table, cols, Position(self._tx_lsn, self._idx)))
        elif kind == 79:  # O
            self._skip = pg.origin(buf) in self._skip_origins
        elif kind == 84:  # T
            if self._skip:
                return
            for relid in pg.truncate(buf):
                self._event("t", self._rels[relid], None, None, [], out)
        elif kind == 77:  # M
            transactional, lsn, prefix, content = pg.message(buf)
            if prefix != MESSAGE_PREFIX:
                return
            if not transactional:
                self._release(out)
                out.append(Message(prefix, content, Position(lsn, 0)))
                return
            # Counted like a change: the transaction is acknowledged only once the pipeline
            # has made the message durable downstream (a re-snapshot request must survive a
            # crash). Held while no change came first, so the commit can mark it the last of
            # its transaction; after a change, that change keeps the transaction's end.
            self._idx += 1
            msg = Message(prefix, content, Position(self._tx_lsn, self._idx), last=False)
            if self._held is None or isinstance(self._held, Message):
                self._release(out)
                self._held = msg
            else:
                out.append(msg)
        # Y (type) needs nothing: values arrive as text and unknown types stay text.

    def _partition_root(self, relid: int) -> str | None:
        """The streamed root of partition `relid` (its changes decoded before the publication
        published via the root still arrive under the partition's name), if any."""
        rows = self._sql("""SELECT n.nspname, c.relname FROM pg_class c
                            JOIN pg_namespace n ON n.oid = c.relnamespace
                            WHERE c.oid = pg_partition_root(%s::oid) AND c.oid <> %s::oid""", (relid, relid))
        if not rows:
            return None
        ns, name = rows[0]
        root = name if ns == "public" else f"{ns}.{name}"
        return root if root in self.tables else None

    # -- acknowledgement ----------------------------------------------------------------
    def acknowledge(self, position: Position | None) -> None:
        if position is not None and (self._durable is None or position > self._durable):
            self._durable = position
        self._advance()

    def _advance(self) -> None:
        flush = 0
        pos = self._durable
        while self._txns:
            lsn, last, end = self._txns[0]
            if last == 0 or (pos is not None and Position(lsn, last) <= pos):
                self._txns.popleft()
                flush = end
            else:
                break
        if flush > self._acked:
            self._send(flush)

    def _send(self, flush: int, reply: bool = False) -> None:
        self._acked = max(self._acked, flush)
        self._cur.send_feedback(write_lsn=self._acked, flush_lsn=self._acked, reply=reply, force=True)
        self._last_feedback = time.monotonic()

    def _idle_feedback(self) -> None:
        """Nothing pending: confirm the server's position so the slot never pins WAL."""
        if self._in_tx or self._txns or self._held is not None:
            return
        wal_end = self._cur.wal_end or 0
        if wal_end > self._acked:
            self._send(wal_end)
        elif time.monotonic() - self._last_feedback > 1.0:
            self._send(self._acked, reply=True)  # ask for a keepalive with the server's position

    # -- helpers for snapshot, metrics, CLI ---------------------------------------------
    def emit_message(self, content: bytes) -> None:
        self._sql("SELECT pg_logical_emit_message(true, %s, %s)", (MESSAGE_PREFIX, content))

    def chunk_reader(self) -> tuple[Any, str]:
        return self._conn.cursor(), "format"

    def lag(self) -> tuple[float, int | None]:
        """(0: commit times of unread WAL are unknown here; the pipeline measures what it
        read), WAL bytes between the server's insert position and the slot's confirmed flush."""
        rows = self._sql("""SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), confirmed_flush_lsn)
                            FROM pg_replication_slots WHERE slot_name = %s""", (self.cfg.slot,))
        return 0.0, int(rows[0][0]) if rows and rows[0][0] is not None else None

    def slot_info(self) -> dict[str, Any] | None:
        """The slot's position and WAL health, with a warning before it is invalidated."""
        rows = self._sql("""SELECT active, confirmed_flush_lsn::text,
                                   pg_wal_lsn_diff(pg_current_wal_insert_lsn(), confirmed_flush_lsn),
                                   pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn),
                                   wal_status, safe_wal_size,
                                   (SELECT setting::bigint * 1048576 FROM pg_settings
                                     WHERE name = 'max_slot_wal_keep_size' AND setting != '-1')
                            FROM pg_replication_slots WHERE slot_name = %s""", (self.cfg.slot,))
        if not rows:
            return None
        active, flushed, behind, retained, wal_status, safe, keep = rows[0]
        info: dict[str, Any] = {
            "slot": self.cfg.slot, "active": active, "confirmed_flush_lsn": flushed,
            "wal_bytes_behind": int(behind or 0), "retained_wal_bytes": int(retained or 0),
            "wal_status": wal_status, "safe_wal_size": None if safe is None else int(safe),
            "max_slot_wal_keep_size": None if keep is None else int(keep)}
        info["warning"] = slot_warning(self.cfg.name, info)
        return info

    def drop(self) -> None:
        rows = self._sql("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (self.cfg.slot,))
        if rows and rows[0][0]:
            raise SourceError(f"slot {self.cfg.slot!r} is in use; stop `strangler cdc run "
                              f"{self.cfg.name}` first")
        if rows:
            self._sql("SELECT pg_drop_replication_slot(%s)", (self.cfg.slot,))
        self._sql(f'DROP PUBLICATION IF EXISTS "{self.cfg.publication}"')

    def close(self) -> None:
        for conn in (self._repl, self._conn):
            if conn is not None:
                with contextlib.suppress(psycopg2.Error):
                    conn.close()
        self._repl = self._cur = None


def slot_warning(stream: str, info: dict[str, Any]) -> str | None:
    """What a person must know about a slot's WAL health (None: healthy)."""
    slot, status = info.get("slot"), info.get("wal_status")
    if status == "lost":
        return (f"slot {slot!r} was INVALIDATED by the server (it retained more WAL than "
                f"max_slot_wal_keep_size); the stream cannot resume. Recover: `strangler cdc drop "
                f"{stream}` then `strangler cdc run {stream}` (re-copies the tables)")
    if status == "unreserved":
        return (f"slot {slot!r} is about to be invalidated: the WAL it needs is past "
                f"max_slot_wal_keep_size and goes at the next checkpoint; run (or unblock) "
                f"`strangler cdc run {stream}` now, or raise max_slot_wal_keep_size")
    safe, keep = info.get("safe_wal_size"), info.get("max_slot_wal_keep_size")
    if safe is not None and keep and safe < SAFE_WAL_WARN * keep:
        return (f"slot {slot!r} retains {info.get('retained_wal_bytes')} bytes of WAL; only {safe} "
                f"bytes are left before the server invalidates it (max_slot_wal_keep_size = {keep}); "
                f"run (or unblock) `strangler cdc run {stream}`, or raise max_slot_wal_keep_size")
    return None
