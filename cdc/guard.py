"""Database guards: the non-owner side's database rejects application writes (migration step 4).

`ownership.yaml` says which side may write each synced table; the router enforces it at the
edge, and this module makes the database itself enforce it, independently: a stray code path
in the monolith cannot write a table the catalog service owns. The CDC sink always passes
(it carries the owner's writes), recognised by the per-stream tag it sets up anyway:

    PostgreSQL  a BEFORE INSERT/UPDATE/DELETE row trigger and a BEFORE TRUNCATE statement
                trigger per table, both calling strangler_guard(), which returns early when
                pg_replication_origin_session_is_setup() (the sink's session); otherwise it
                raises, unless an UPDATE changed only the columns the side keeps.
    SQLite      BEFORE INSERT/UPDATE/DELETE triggers
                ``WHEN NOT EXISTS (SELECT 1 FROM strangler_cdc_origin)`` that
                ``SELECT RAISE(ABORT, ...)``; the sink's marker row sits in that table only
                inside its own transactions.

The error names the table, the owner and the command that moves ownership.

PostgreSQL privileges. strangler_guard() is SECURITY DEFINER with a pinned search_path,
owned by the role that installs it, because the replication origin functions are
superuser-only by default: application roles only need to fire the trigger. A non-superuser
installer needs: ownership of (or the TRIGGER privilege on) the guarded tables, CREATE on
their schema, and ``GRANT EXECUTE ON FUNCTION pg_replication_origin_session_is_setup() TO
<installer>`` (run once by a superuser).

SQLite guards list the columns an UPDATE may not change as they are now: apply the guards
again after adding a column (``apply_guards`` is idempotent).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Sequence

from cdc.errors import CDCError
from ownership import Group

__all__ = ["GuardError", "MARKER_TABLE", "apply_guards", "guard_message", "guard_state",
           "remove_guards"]

MARKER_TABLE = "strangler_cdc_origin"
_TRIGGER = "strangler_guard"  # PostgreSQL: row trigger name (and function); SQLite: prefix
_TRUNCATE = "strangler_guard_truncate"
OPEN = "open"
_LOCK_TIMEOUT_MS = 500  # below deadlock_timeout (1 s): the guard gives way, not a writer
_LOCK_ATTEMPTS = 20


class GuardError(CDCError):
    """Guards could not be read, installed or removed."""


def guard_message(group: Group, side: str, table: str) -> str:
    """What the database answers an application write `side` may not make to `table`."""
    keeps = sorted(group.writable(side, table).columns)
    may = f" (it may update only {', '.join(keeps)})" if keeps else ""
    return (f"{table} is written by {group.owner} now (ownership group {group.name}); the {side} "
            f"may not write it{may} — writes go through the owner; to move ownership: "
            f"strangler own {group.name} --by {side} --reason \"...\"")


def _describe(guarded: bool, keeps: Iterable[str]) -> str:
    if not guarded:
        return OPEN
    k = sorted(keeps)
    return f"guarded (keeps {', '.join(k)})" if k else "guarded"


def apply_guards(url: str, group: Group, side: str) -> dict[str, str]:
    """Make the database at `url` (side `side` of `group`) refuse what the side may not write now.

    Per table of the side: a guard where ``group.writable(side, table).rows`` is False (only
    the kept columns stay updatable), none where it is True. Idempotent. Returns per table
    what it did: installed, replaced, unchanged, removed or open (no guard, none needed).
    """
    wanted = {}
    for table in group.side(side).tables:
        w = group.writable(side, table)
        wanted[table] = None if w.rows else (guard_message(group, side, table), sorted(w.columns))
    with _connect(url) as db:
        return db.apply(wanted)


def remove_guards(url: str, tables: Sequence[str]) -> dict[str, str]:
    """Lift the guards of `tables` (an undo back to "no guards at all"); on PostgreSQL they
    stay, disabled (dropping a trigger would lock out readers)."""
    with _connect(url) as db:
        return db.apply(dict.fromkeys(tables))


def guard_state(url: str, group: Group, side: str) -> dict[str, str]:
    """Per table of the side: "open", "guarded" or "guarded (keeps col, ...)"."""
    with _connect(url) as db:
        return {t: _describe(*db.installed(t)) for t in group.side(side).tables}


def _connect(url: str) -> _SQLite | _Postgres:
    if url.startswith("sqlite"):
        return _SQLite(url.split("///", 1)[1])
    return _Postgres(url)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class _SQLite:
    def __init__(self, path: str) -> None:
        if not os.path.exists(path):  # sqlite3.connect would create an empty database
            raise GuardError(f"SQLite database {path} does not exist; create its schema first "
                             "(start the stack: `strangler up`) or fix the stream's URL")
        try:
            self.conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise GuardError(f"cannot open SQLite database {path}: {exc}") from exc
        self.path = path

    def __enter__(self) -> _SQLite:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()

    def _sql(self, table: str, message: str, keeps: list[str]) -> dict[str, str]:
        cols = [r[1] for r in self.conn.execute(f"PRAGMA table_info({_q(table)})")]
        if not cols:
            raise GuardError(f"no table {table} in {self.path}; check ownership.yaml's tables")
        when = f"NOT EXISTS (SELECT 1 FROM {MARKER_TABLE})"
        body = f"BEGIN SELECT RAISE(ABORT, {_lit(message)}); END"
        out = {}
        for suffix, event in (("i", "INSERT"), ("d", "DELETE")):
            out[f"{_TRIGGER}_{table}_{suffix}"] = (
                f"CREATE TRIGGER {_q(f'{_TRIGGER}_{table}_{suffix}')} BEFORE {event} ON {_q(table)} "
                f"WHEN {when} {body}")
        changed = [c for c in cols if c not in keeps]
        if changed:
            diff = " OR ".join(f"NEW.{_q(c)} IS NOT OLD.{_q(c)}" for c in changed)
            out[f"{_TRIGGER}_{table}_u"] = (
                f"CREATE TRIGGER {_q(f'{_TRIGGER}_{table}_u')} BEFORE UPDATE ON {_q(table)} "
                f"WHEN {when} AND ({diff}) {body}")
        return out

    def _present(self, table: str) -> dict[str, str]:
        return {name: sql for name, sql in self.conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? AND name IN (?, ?, ?)",
            (table, *(f"{_TRIGGER}_{table}_{s}" for s in "iud")))}

    def installed(self, table: str) -> tuple[bool, list[str]]:
        present = self._present(table)
        if not present:
            return False, []
        cols = [r[1] for r in self.conn.execute(f"PRAGMA table_info({_q(table)})")]
        upd = present.get(f"{_TRIGGER}_{table}_u", "")
        return True, [c for c in cols if f"NEW.{_q(c)} IS NOT" not in upd]

    def apply(self, wanted: dict[str, tuple[str, list[str]] | None]) -> dict[str, str]:
        done: dict[str, str] = {}
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(f"CREATE TABLE IF NOT EXISTS {MARKER_TABLE} (stream TEXT NOT NULL)")
            for table, spec in wanted.items():
                present = self._present(table)
                want = self._sql(table, *spec) if spec else {}
                if present == want:
                    done[table] = "unchanged" if want else OPEN
                    continue
                for name in present:
                    self.conn.execute(f"DROP TRIGGER {_q(name)}")
                for stmt in want.values():
                    self.conn.execute(stmt)
                done[table] = ("replaced" if present else "installed") if want else "removed"
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self.conn.execute("ROLLBACK")
            raise GuardError(f"cannot change the write guards in {self.path}: {exc}") from exc
        return done


_PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {{schema}}.{_TRIGGER}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- the CDC sink's session carries the owner's writes (its replication origin is set up)
    IF pg_replication_origin_session_is_setup() THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    -- an UPDATE that changes only the columns this side keeps (TG_ARGV[1:])
    IF TG_OP = 'UPDATE' AND TG_NARGS > 1
       AND (to_jsonb(NEW) - TG_ARGV[1:]) = (to_jsonb(OLD) - TG_ARGV[1:]) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege', MESSAGE = TG_ARGV[0];
END $$
"""


class _Postgres:
    def __init__(self, url: str) -> None:
        import psycopg2

        from cdc.sources.postgres import libpq_dsn

        self._errors = psycopg2.Error
        try:
            self.conn = psycopg2.connect(libpq_dsn(url))
        except psycopg2.Error as exc:
            raise GuardError(f"cannot connect to the database to change write guards: "
                             f"{str(exc).strip()}") from exc

    def __enter__(self) -> _Postgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()

    @staticmethod
    def _split(table: str) -> tuple[str, str]:
        ns, _, name = table.rpartition(".")
        return ns or "public", name

    def _args(self, table: str) -> dict[str, list[str]]:
        """The enabled guard triggers of `table` and their arguments (a disabled one is removed)."""
        ns, name = self._split(table)
        with self.conn.cursor() as cur:
            cur.execute("""SELECT t.tgname, t.tgargs FROM pg_trigger t
                           JOIN pg_class c ON c.oid = t.tgrelid
                           JOIN pg_namespace n ON n.oid = c.relnamespace
                           WHERE n.nspname = %s AND c.relname = %s AND t.tgname IN (%s, %s)
                             AND t.tgenabled <> 'D'""",
                        (ns, name, _TRIGGER, _TRUNCATE))
            rows = cur.fetchall()
        return {tg: bytes(args).decode().split("\x00")[:-1] for tg, args in rows}

    def installed(self, table: str) -> tuple[bool, list[str]]:
        args = self._args(table).get(_TRIGGER)
        self.conn.rollback()
        return (False, []) if args is None else (True, args[1:])

    def apply(self, wanted: dict[str, tuple[str, list[str]] | None]) -> dict[str, str]:
        """All tables in one transaction, without ever blocking a reader: DROP TRIGGER takes
        an ACCESS EXCLUSIVE lock, and a reader holding one table while waiting for another
        dead-locks with it (a 500 for a customer during a flip). CREATE OR REPLACE TRIGGER
        and ALTER TABLE ... DISABLE TRIGGER take SHARE ROW EXCLUSIVE, which readers pass.
        Writers may wait: every lock is taken up front, with a short lock_timeout and
        retries, so the guard gives way before a deadlock could choose a writer as victim."""
        import psycopg2.errors

        for attempt in range(_LOCK_ATTEMPTS):
            try:
                return self._apply_once(wanted)
            except psycopg2.errors.LockNotAvailable:
                if attempt + 1 == _LOCK_ATTEMPTS:
                    raise GuardError(f"cannot change the write guards: the tables {', '.join(wanted)} "
                                     f"stayed locked by other transactions through {_LOCK_ATTEMPTS} "
                                     "tries; find the long transaction in pg_stat_activity and run "
                                     "this again") from None
                time.sleep(0.1 * (attempt + 1))
        raise AssertionError("unreachable")

    def _apply_once(self, wanted: dict[str, tuple[str, list[str]] | None]) -> dict[str, str]:
        import psycopg2.errors

        done: dict[str, str] = {}
        try:
            with self.conn, self.conn.cursor() as cur:
                rels = {}
                for table in wanted:
                    ns, name = self._split(table)
                    cur.execute("SELECT to_regclass(%s)", (f"{_q(ns)}.{_q(name)}",))
                    if (cur.fetchone() or (None,))[0] is None:
                        raise GuardError(f"no table {table} in the database; check ownership.yaml's tables")
                    rels[table] = f"{_q(ns)}.{_q(name)}"
                cur.execute(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT_MS}ms'")
                if rels:
                    cur.execute(f"LOCK TABLE {', '.join(rels.values())} IN SHARE ROW EXCLUSIVE MODE")
                replace_in_place = self.conn.server_version >= 140000  # CREATE OR REPLACE TRIGGER
                for table, spec in wanted.items():
                    ns, _name = self._split(table)
                    rel = rels[table]
                    present = self._args(table)
                    args = [spec[0], *spec[1]] if spec else None
                    if args is not None and present == {_TRIGGER: args, _TRUNCATE: args[:1]}:
                        done[table] = "unchanged"
                        continue
                    if args is None:
                        for trigger in present:
                            cur.execute(f"ALTER TABLE {rel} DISABLE TRIGGER {_q(trigger)}")
                        done[table] = "removed" if present else OPEN
                        continue
                    cur.execute(_PG_FUNCTION.format(schema=_q(ns)))
                    create = "CREATE OR REPLACE TRIGGER" if replace_in_place else "CREATE TRIGGER"
                    if not replace_in_place:
                        cur.execute(f"DROP TRIGGER IF EXISTS {_TRIGGER} ON {rel}")
                        cur.execute(f"DROP TRIGGER IF EXISTS {_TRUNCATE} ON {rel}")
                    lits = ", ".join(_lit(a) for a in args)
                    cur.execute(f"{create} {_TRIGGER} BEFORE INSERT OR UPDATE OR DELETE ON {rel} "
                                f"FOR EACH ROW EXECUTE FUNCTION {_q(ns)}.{_TRIGGER}({lits})")
                    cur.execute(f"{create} {_TRUNCATE} BEFORE TRUNCATE ON {rel} "
                                f"FOR EACH STATEMENT EXECUTE FUNCTION {_q(ns)}.{_TRIGGER}({_lit(args[0])})")
                    for trigger in (_TRIGGER, _TRUNCATE):  # a removed guard was only disabled
                        cur.execute(f"ALTER TABLE {rel} ENABLE TRIGGER {_q(trigger)}")
                    done[table] = "replaced" if present else "installed"
        except psycopg2.errors.LockNotAvailable:
            raise  # apply() tries again
        except self._errors as exc:
            raise GuardError(f"cannot change the write guards: {str(exc).strip()} — the installing "
                             "role needs ownership of the tables, CREATE on their schema and EXECUTE "
                             "on pg_replication_origin_session_is_setup() (cdc/guard.py)") from exc
        return done
