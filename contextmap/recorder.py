"""Record the tables each request reads and writes, inside the Django process being mapped.

`Recorder` installs ``connection.execute_wrapper`` on every database connection and wraps
``transaction.Atomic`` so an outermost atomic block knows the tables written inside it.
Each statement is attributed to the code that issued it: the innermost stack frame inside one
of the project's apps (``app``) and the innermost frame inside the project at all (``where``,
``file:line``) — so a write made by ``payments/receivers.py`` during an orders request counts
as the payments app writing, which is what "a table with two writers" means.

Used by the middleware (contextmap/middleware.py, traffic you run) and by the probe's
``--exercise`` (contextmap/probe.py). Imports Django only when a recorder is made.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_NAME = r"[`\"\[]?([A-Za-z_][\w$]*)[`\"\]]?"
_WRITE_RES = (
    re.compile(r"^\s*INSERT\s+(?:OR\s+\w+\s+)?INTO\s+" + _NAME, re.I),
    re.compile(r"^\s*UPDATE\s+" + _NAME, re.I),
    re.compile(r"^\s*DELETE\s+FROM\s+" + _NAME, re.I),
    re.compile(r"^\s*REPLACE\s+INTO\s+" + _NAME, re.I),
)
_READ_RE = re.compile(r"\b(?:FROM|JOIN)\s+" + _NAME, re.I)
_SKIP_RE = re.compile(r"^\s*(?:SAVEPOINT|RELEASE|ROLLBACK|BEGIN|COMMIT|SET|SHOW|PRAGMA)\b", re.I)


def tables_of(sql: str) -> tuple[set[str], set[str]]:
    """(read, written) table names of one SQL statement; a rough parse that fits ORM and hand SQL."""
    if _SKIP_RE.match(sql):
        return set(), set()
    written: set[str] = set()
    for rx in _WRITE_RES:
        m = rx.match(sql)
        if m:
            written.add(m.group(1))
            break
    read = {m.group(1) for m in _READ_RE.finditer(sql)} - written
    # "DELETE FROM t" matched FROM as a read too; subqueries in writes stay reads
    read.discard("")
    return read, written


@dataclass
class Site:
    """Where a statement came from: the app whose code issued it, and the project's line."""

    app: str | None
    where: str | None


@dataclass
class Transaction:
    where: str | None
    app: str | None
    writes: set[str] = field(default_factory=set)
    statements: int = 0


@dataclass
class RequestRecord:
    endpoint: str
    view_app: str | None = None
    status: int | None = None
    # (table, op, app, where) -> count
    statements: dict[tuple[str, str, str | None, str | None], int] = field(default_factory=dict)
    joins: dict[tuple[tuple[str, ...], str | None, str | None], int] = field(default_factory=dict)
    transactions: list[Transaction] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint, "view_app": self.view_app, "status": self.status,
            "statements": [{"table": t, "op": op, "app": app, "where": where, "count": n}
                           for (t, op, app, where), n in sorted(self.statements.items(), key=str)],
            "joins": [{"tables": list(ts), "app": app, "where": where, "count": n}
                      for (ts, app, where), n in sorted(self.joins.items(), key=str)],
            "transactions": [{"where": tx.where, "app": tx.app, "writes": sorted(tx.writes),
                              "statements": tx.statements} for tx in self.transactions if tx.writes],
        }


class AppLocator:
    """Which installed app (label) and project file a code path belongs to."""

    def __init__(self, app_paths: dict[str, Path], project_root: Path,
                 wrappers: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        # longest path first: a nested app wins over its parent package
        self._apps = sorted(((str(p) + "/", label) for label, p in app_paths.items()),
                            key=lambda x: -len(x[0]))
        self.root = str(project_root) + "/"
        self._skip = (str(Path(__file__).resolve().parent) + "/",)
        # middleware wraps every request: its frames would claim every query for its app
        self._wrappers = set(wrappers)
        self._cache: dict[str, tuple[str | None, bool]] = {}

    def classify(self, filename: str) -> tuple[str | None, bool]:
        """(app label or None, inside the project?) of a source file."""
        hit = self._cache.get(filename)
        if hit is None:
            path = filename
            inside = path.startswith(self.root) and not path.startswith(self._skip) \
                and "/site-packages/" not in path and "/.venv/" not in path \
                and path not in self._wrappers
            app = next((label for prefix, label in self._apps if path.startswith(prefix)), None) \
                if inside else None
            hit = self._cache[filename] = (app, inside)
        return hit

    def relative(self, filename: str, line: int) -> str:
        return f"{filename[len(self.root):]}:{line}"

    def site(self, depth: int = 2) -> Site:
        frame: Any = sys._getframe(depth)
        app = where = None
        while frame is not None:
            filename = frame.f_code.co_filename
            got, inside = self.classify(filename)
            if inside and where is None:
                where = self.relative(filename, frame.f_lineno)
            if got is not None:
                app = got
                if where is None:
                    where = self.relative(filename, frame.f_lineno)
                break
            frame = frame.f_back
        return Site(app, where)


class Recorder:
    """Collects statements into the current request record (one per thread)."""

    def __init__(self, locator: AppLocator, table_app: dict[str, str]) -> None:
        self.locator = locator
        self.table_app = table_app
        self._local = threading.local()

    @property
    def current(self) -> RequestRecord | None:
        return getattr(self._local, "record", None)

    def _tx_stack(self) -> list[Transaction]:
        stack = getattr(self._local, "tx", None)
        if stack is None:
            stack = self._local.tx = []
        return stack

    def wrapper(self, execute: Callable[..., Any], sql: str, params: Any, many: bool,
                context: dict[str, Any]) -> Any:
        record = self.current
        if record is not None and isinstance(sql, str):
            read, written = tables_of(sql)
            if read or written:
                site = self.locator.site(depth=2)
                for t in read:
                    key = (t, "read", site.app, site.where)
                    record.statements[key] = record.statements.get(key, 0) + 1
                for t in written:
                    key = (t, "write", site.app, site.where)
                    record.statements[key] = record.statements.get(key, 0) + 1
                owners = {self.table_app.get(t) for t in read | written} - {None}
                if len(owners) > 1:
                    jkey = (tuple(sorted(read | written)), site.app, site.where)
                    record.joins[jkey] = record.joins.get(jkey, 0) + 1
                stack = self._tx_stack()
                if stack and context["connection"].in_atomic_block:
                    stack[0].writes |= written
                    stack[0].statements += 1
        return execute(sql, params, many, context)

    @contextmanager
    def request(self, endpoint: str) -> Iterator[RequestRecord]:
        from django.db import connections

        record = RequestRecord(endpoint)
        self._local.record = record
        self._local.tx = []
        try:
            with ExitStack() as stack:
                for conn in connections.all():
                    stack.enter_context(conn.execute_wrapper(self.wrapper))
                yield record
        finally:
            self._local.record = None

    # outermost atomic blocks: entered with no atomic block open on that connection
    def enter_atomic(self, using: str | None) -> None:
        from django.db import DEFAULT_DB_ALIAS, connections

        record = self.current
        if record is None:
            return
        conn = connections[using or DEFAULT_DB_ALIAS]
        stack = self._tx_stack()
        if not conn.in_atomic_block:
            site = self.locator.site(depth=3)
            tx = Transaction(site.where, site.app)
            stack.insert(0, tx)
            record.transactions.append(tx)

    def exit_atomic(self, using: str | None) -> None:
        from django.db import DEFAULT_DB_ALIAS, connections

        if self.current is None:
            return
        conn = connections[using or DEFAULT_DB_ALIAS]
        stack = self._tx_stack()
        if stack and not conn.in_atomic_block:
            stack.pop(0)


_installed: list[Recorder] = []


def install_atomic_hook(recorder: Recorder) -> None:
    """Wrap ``Atomic.__enter__/__exit__`` once per process so outermost blocks are seen."""
    from django.db import transaction

    _installed[:] = [recorder]
    if getattr(transaction.Atomic, "_contextmap_hooked", False):
        return
    enter, exit_ = transaction.Atomic.__enter__, transaction.Atomic.__exit__

    def __enter__(self):  # type: ignore[no-untyped-def]
        for r in _installed:
            r.enter_atomic(self.using)
        return enter(self)

    def __exit__(self, exc_type, exc_value, traceback):  # type: ignore[no-untyped-def]
        try:
            return exit_(self, exc_type, exc_value, traceback)
        finally:
            for r in _installed:
                r.exit_atomic(self.using)

    transaction.Atomic.__enter__ = __enter__  # type: ignore[method-assign]
    transaction.Atomic.__exit__ = __exit__  # type: ignore[method-assign]
    transaction.Atomic._contextmap_hooked = True  # type: ignore[attr-defined]


def from_registry() -> Recorder:
    """A recorder for the configured Django project (apps and tables from its registry)."""
    from contextmap.registry import app_paths, middleware_files, project_root, table_owners

    locator = AppLocator(app_paths(), project_root(), middleware_files())
    recorder = Recorder(locator, table_owners())
    install_atomic_hook(recorder)
    return recorder
