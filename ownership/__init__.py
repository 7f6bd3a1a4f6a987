"""Write ownership: which side may write each synced table, right now (migration step 4).

One small file, `ownership.yaml` beside `streams.yaml` and `routes.yaml`, is the single
declaration every part reads: the router sends a route's write methods to the owner (and
holds them during a flip), the CDC sinks write only what the event's side owns, the
database guards reject application writes on the non-owner side, and `strangler own`
edits it. This package only parses, validates and writes that file; it imports none of
the parts (router, cdc, cli), so each of them can import it.

    version: 1
    groups:
      catalog:                       # tables that change owner together
        owner: monolith              # one of the sides below; `strangler own` flips it
        sides:
          monolith:                  # a side: also the router upstream that serves it
            stream: catalog          # the CDC stream that carries this side's writes out
            tables: [catalog_product, ...]   # this side's names for the group's tables
          catalog:
            stream: catalog_reverse
            tables: [products, ...]
        keeps:                       # columns a side writes whatever the owner
          monolith: {catalog_product: [stock_count]}
        hold: {since: 1764580000.0, until: 1764580030.0, reason: "..."}   # during a flip only

A hold makes the router answer the group's write methods `503` with `Retry-After` until
`until` (so a crashed flip cannot hold writes forever); the rest of the file says where
writes go once it ends.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "DEFAULT_PATH", "WRITE_METHODS", "Group", "Hold", "Ownership", "OwnershipError", "Side",
    "Writable", "dump", "edit", "load", "parse", "with_hold", "with_owner", "write",
]

DEFAULT_PATH = "ownership.yaml"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class OwnershipError(ValueError):
    """ownership.yaml is missing, malformed or names something that does not exist."""


@dataclass(frozen=True, kw_only=True)
class Side:
    name: str
    stream: str  # the stream whose source is this side's database
    tables: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Hold:
    since: float
    until: float
    reason: str = ""

    def active(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) < self.until

    def retry_after(self, now: float | None = None) -> int:
        """Whole seconds a held client should wait (at least 1)."""
        left = self.until - (time.time() if now is None else now)
        return max(1, min(5, int(left + 0.999)))


@dataclass(frozen=True, kw_only=True)
class Group:
    name: str
    owner: str
    sides: Mapping[str, Side]
    keeps: Mapping[str, Mapping[str, frozenset[str]]] = field(default_factory=dict)
    hold: Hold | None = None

    def side(self, name: str) -> Side:
        try:
            return self.sides[name]
        except KeyError:
            raise OwnershipError(f"group {self.name!r} has no side {name!r}; its sides: "
                                 f"{', '.join(self.sides)}") from None

    def other(self, side: str) -> Side:
        return next(s for n, s in self.sides.items() if n != side)

    def side_of_stream(self, stream: str) -> Side | None:
        return next((s for s in self.sides.values() if s.stream == stream), None)

    def held(self, now: float | None = None) -> bool:
        return self.hold is not None and self.hold.active(now)

    def writable(self, side: str, table: str) -> Writable:
        """What `side` may write in its `table` (one of its tables in this group).

        The owner writes whole rows, except the columns the other side keeps; a non-owner
        only updates the columns it keeps (none: the table is read-only on that side).
        """
        if side == self.owner:
            pos = self.sides[side].tables.index(table)
            other = self.other(side)
            theirs = self.keeps.get(other.name, {}).get(other.tables[pos], frozenset())
            return Writable(rows=True, columns=frozenset(theirs))
        return Writable(rows=False, columns=frozenset(self.keeps.get(side, {}).get(table, frozenset())))


@dataclass(frozen=True)
class Writable:
    """The part of one table one side may write.

    rows=True: inserts, deletes and every column but `columns` (the other side keeps those,
    named as that side calls them). rows=False: updates of `columns` only.
    """

    rows: bool
    columns: frozenset[str]


@dataclass(frozen=True, kw_only=True)
class Ownership:
    groups: Mapping[str, Group]
    source: str = "<string>"
    sha256: str = ""

    def group(self, name: str) -> Group:
        try:
            return self.groups[name]
        except KeyError:
            known = ", ".join(self.groups) or "none"
            raise OwnershipError(f"no ownership group {name!r} in {self.source}; known groups: "
                                 f"{known} — fix: name one of them, or declare it there") from None

    def for_stream(self, stream: str) -> tuple[Group, Side] | None:
        """The group and side whose writes `stream` carries out, if any."""
        for g in self.groups.values():
            s = g.side_of_stream(stream)
            if s is not None:
                return g, s
        return None

    def for_table(self, side: str, table: str) -> Group | None:
        for g in self.groups.values():
            if side in g.sides and table in g.sides[side].tables:
                return g
        return None


# --- reading -----------------------------------------------------------------------------

def load(path: str | os.PathLike[str] = DEFAULT_PATH) -> Ownership:
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise OwnershipError(f"no ownership file at {p} — fix: create it (see the repository's "
                             "ownership.yaml) or give its path") from None
    return parse(text, source=str(p))


def parse(text: str, *, source: str = "<string>") -> Ownership:
    def fail(at: str, problem: str, fix: str) -> OwnershipError:
        return OwnershipError(f"{source}: {at}: {problem} — fix: {fix}")

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise OwnershipError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise fail("(top)", "not a mapping", "start with `version: 1` and `groups:`")
    _only(data, {"version", "groups"}, "(top)", fail)
    if data.get("version") != 1:
        raise fail("version", f"{data.get('version')!r} is not supported", "write `version: 1`")
    raw_groups = data.get("groups") or {}
    if not isinstance(raw_groups, dict):
        raise fail("groups", "not a mapping", "map group names to {owner, sides}")
    groups = {}
    seen_streams: dict[str, str] = {}
    for name, body in raw_groups.items():
        g = _group(str(name), body, fail)
        for s in g.sides.values():
            if s.stream in seen_streams:
                raise fail(f"groups.{name}.sides.{s.name}.stream",
                           f"stream {s.stream!r} is already the out-stream of {seen_streams[s.stream]}",
                           "give each side its own stream")
            seen_streams[s.stream] = f"{name}.{s.name}"
        groups[g.name] = g
    return Ownership(groups=groups, source=source, sha256=hashlib.sha256(text.encode()).hexdigest())


def _only(obj: dict[str, Any], allowed: set[str], at: str, fail: Any) -> None:
    extra = sorted(set(map(str, obj)) - allowed)
    if extra:
        raise fail(f"{at}.{extra[0]}" if at != "(top)" else extra[0], "unknown key",
                   f"use only {', '.join(sorted(allowed))}")


def _group(name: str, body: Any, fail: Any) -> Group:
    at = f"groups.{name}"
    if not _NAME.match(name):
        raise fail(at, "not a valid group name", "use lowercase letters, digits and _")
    if not isinstance(body, dict):
        raise fail(at, "not a mapping", "give it owner and sides")
    _only(body, {"owner", "sides", "keeps", "hold"}, at, fail)
    raw_sides = body.get("sides")
    if not isinstance(raw_sides, dict) or len(raw_sides) != 2:
        raise fail(f"{at}.sides", "a group needs exactly two sides", "name the two databases' sides "
                   "(e.g. monolith and catalog), each with its stream and tables")
    sides = {}
    for side_name, sbody in raw_sides.items():
        sat = f"{at}.sides.{side_name}"
        if not isinstance(side_name, str) or not _NAME.match(side_name):
            raise fail(sat, "not a valid side name", "use the router upstream's name (lowercase)")
        if not isinstance(sbody, dict):
            raise fail(sat, "not a mapping", "give it stream and tables")
        _only(sbody, {"stream", "tables"}, sat, fail)
        stream, tables = sbody.get("stream"), sbody.get("tables")
        if not isinstance(stream, str) or not stream:
            raise fail(f"{sat}.stream", "missing", "name the stream in streams.yaml whose source is this side")
        if (not isinstance(tables, list) or not tables
                or not all(isinstance(t, str) and t for t in tables) or len(set(tables)) != len(tables)):
            raise fail(f"{sat}.tables", "not a list of distinct table names", "list this side's tables")
        sides[side_name] = Side(name=side_name, stream=stream, tables=tuple(tables))
    a, b = sides.values()
    if len(a.tables) != len(b.tables):
        raise fail(f"{at}.sides", f"{a.name} lists {len(a.tables)} tables and {b.name} {len(b.tables)}",
                   "list the same tables on both sides, in the same order")
    owner = body.get("owner")
    if owner not in sides:
        raise fail(f"{at}.owner", f"{owner!r} is not a side of the group", f"use one of {', '.join(sides)}")
    keeps: dict[str, dict[str, frozenset[str]]] = {}
    for side_name, per_table in (body.get("keeps") or {}).items():
        kat = f"{at}.keeps.{side_name}"
        if side_name not in sides:
            raise fail(kat, "not a side of the group", f"use one of {', '.join(sides)}")
        if not isinstance(per_table, dict):
            raise fail(kat, "not a mapping", "map table names to column lists")
        keeps[side_name] = {}
        for table, cols in per_table.items():
            if table not in sides[side_name].tables:
                raise fail(f"{kat}.{table}", f"not one of {side_name}'s tables", "list it under sides first")
            if not isinstance(cols, list) or not cols or not all(isinstance(c, str) and c for c in cols):
                raise fail(f"{kat}.{table}", "not a list of column names", "list the columns")
            keeps[side_name][table] = frozenset(cols)
    hold = None
    raw_hold = body.get("hold")
    if raw_hold is not None:
        hat = f"{at}.hold"
        if not isinstance(raw_hold, dict):
            raise fail(hat, "not a mapping", "give since, until (epoch seconds) and reason")
        _only(raw_hold, {"since", "until", "reason"}, hat, fail)
        try:
            hold = Hold(since=float(raw_hold["since"]), until=float(raw_hold["until"]),
                        reason=str(raw_hold.get("reason", "")))
        except (KeyError, TypeError, ValueError):
            raise fail(hat, "since and until must be numbers", "write epoch seconds") from None
        if hold.until < hold.since:
            raise fail(f"{hat}.until", "before since", "end the hold after it starts")
    return Group(name=name, owner=owner, sides=sides, keeps=keeps, hold=hold)


# --- writing -----------------------------------------------------------------------------

HEADER = """\
# ownership.yaml — which side may write each synced table, right now (migration step 4).
#
# Read by the router (write methods go to the owner; held during a flip), the CDC sinks
# (each writes only what its source side owns), the database guards and `strangler own`,
# which rewrites this file (validated, atomic, ledgered). Format: ownership/__init__.py.
# Edit `owner` only through `strangler own`: it drains the streams and flips the database
# guards in the right order; a hand edit changes the router alone.
"""


def dump(o: Ownership) -> str:
    groups: dict[str, Any] = {}
    for g in o.groups.values():
        body: dict[str, Any] = {
            "owner": g.owner,
            "sides": {s.name: {"stream": s.stream, "tables": list(s.tables)} for s in g.sides.values()},
        }
        if g.keeps:
            body["keeps"] = {side: {t: sorted(c) for t, c in per.items()} for side, per in g.keeps.items()}
        if g.hold is not None:
            body["hold"] = {"since": round(g.hold.since, 3), "until": round(g.hold.until, 3),
                            "reason": g.hold.reason}
        groups[g.name] = body
    return HEADER + yaml.safe_dump({"version": 1, "groups": groups}, sort_keys=False)


def write(path: str | os.PathLike[str], o: Ownership) -> Ownership:
    """Validate and atomically replace the file; returns what was written (with its sha)."""
    from ownership.splice import spliced

    p = Path(path)
    text = None
    try:  # the file's own text with the new owners and holds: its comments and layout stay
        current = p.read_text()
        text = spliced(current, parse(current, source=str(p)), o)
    except (OSError, OwnershipError):
        pass
    text = text or dump(o)
    new = parse(text, source=str(p))
    fd, tmp = tempfile.mkstemp(dir=p.absolute().parent, prefix=f".{p.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return new


@contextmanager
def edit(path: str | os.PathLike[str]) -> Iterator[list[Ownership]]:
    """Read-modify-write under an exclusive lock: ``with edit(p) as box: box[0] = new``."""
    p = Path(path)
    with open(f"{p}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        box = [load(p)]
        before = box[0]
        yield box
        if box[0] is not before:
            box[0] = write(p, box[0])


def with_owner(o: Ownership, group: str, owner: str) -> Ownership:
    g = o.group(group)
    g.side(owner)
    return replace(o, groups={**o.groups, group: replace(g, owner=owner)})


def with_hold(o: Ownership, group: str, hold: Hold | None) -> Ownership:
    g = o.group(group)
    return replace(o, groups={**o.groups, group: replace(g, hold=hold)})
