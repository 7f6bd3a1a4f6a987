"""What the sink may write for its source side, per table, from ownership.yaml (issue 11).

A stream carries the writes of one side (its source database: `Ownership.for_stream`). The
sink applies only what that side may write *now* (`Group.writable`):

    owner (rows=True)       rows as always, except the target columns the other side keeps:
                            they are left out of every UPDATE (an upsert's conflict branch,
                            a partial image); a new row takes the image's value (the target
                            may have no default for it: Django's defaults live in Python)
    non-owner (rows=False)  only UPDATEs of the columns it keeps, on rows that exist; any
                            other change bypassed the write guard and is dead-lettered

Tables of the stream in no group, or no ownership file: no rule (every column, as before).
`strangler own` rewrites the file atomically while streams run, so :class:`Watch` re-reads
it when its (mtime, size, inode) changes, checked once per batch; a file that does not
parse keeps the last good rules and is logged loudly on every change.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

import ownership
from cdc.mapping import TableMapping

log = logging.getLogger("cdc.sink")


@dataclass(frozen=True, kw_only=True)
class Rule:
    """One source table's write rule for this stream's side."""

    table: str  # source table
    target: str  # target table
    group: str
    side: str  # the stream's source side
    owner: str
    rows: bool  # True: the side owns the table
    # rows=True: target columns the other side keeps (never updated); rows=False: the only
    # target columns the side may update (its kept columns, mapped)
    columns: frozenset[str]
    # rows=False: source columns (mapped, not kept, not key) whose change bypassed the guard
    guarded: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()  # rows=False: the kept columns in source names (for messages)

    def violation(self, what: str) -> str:
        """Why a change of the non-owner side is not applied, and what to do."""
        may = f"may only update {', '.join(self.kept)}" if self.kept else "may not write it"
        return (f"{what} of {self.table} (target {self.target}) bypassed the write guard: "
                f"ownership group {self.group!r} is owned by {self.owner}, and {self.side} {may}; "
                f"not applied. Fix: find the writer on the {self.side} side that went around the "
                f"guard (the router sends writes to {self.owner}); if {self.side} should own the "
                f"table, run `strangler own {self.group} --by {self.side}`")


def rules_for(o: ownership.Ownership | None, stream: str,
              mappings: Mapping[str, TableMapping]) -> dict[str, Rule]:
    """The rules of `stream`'s mapped tables under `o` (none: no ownership declared)."""
    found = o.for_stream(stream) if o is not None else None
    if found is None:
        return {}
    group, side = found
    out = {}
    for table in side.tables:
        tm = mappings.get(table)
        if tm is None:
            continue
        w = group.writable(side.name, table)
        by_src = {s: t for s, t, _ in tm.columns}
        if w.rows:
            cols = frozenset(c for c in w.columns if c in tm.target_schema.columns) - set(tm.target_key)
            out[table] = Rule(table=table, target=tm.target, group=group.name, side=side.name,
                              owner=group.owner, rows=True, columns=cols)
        else:
            kept = tuple(sorted(c for c in w.columns if c in by_src and c not in tm.key))
            guarded = tuple(s for s in by_src if s not in w.columns and s not in tm.key)
            out[table] = Rule(table=table, target=tm.target, group=group.name, side=side.name,
                              owner=group.owner, rows=False, columns=frozenset(by_src[c] for c in kept),
                              guarded=guarded, kept=kept)
    return out


class Watch:
    """The rules for one stream, following the ownership file as it changes."""

    def __init__(self, path: str, stream: str, mappings: Mapping[str, TableMapping]) -> None:
        self.path = path
        self.stream = stream
        self.mappings = mappings
        self._stamp: tuple[int, int, int] | None = None
        self.current: ownership.Ownership | None = None
        self.rules: dict[str, Rule] = {}
        self.refresh()

    def refresh(self) -> dict[str, Rule]:
        """Re-read the file if it changed (one stat call); returns the rules now in force."""
        if not self.path:
            return self.rules
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._stamp is not None:
                log.warning("%s: ownership file %s is gone: no ownership declared, every column "
                            "of every table is written again", self.stream, self.path)
            self._stamp, self.current, self.rules = None, None, {}
            return self.rules
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return self.rules
        self._stamp = stamp
        try:
            new = ownership.load(self.path)
        except (ownership.OwnershipError, OSError) as exc:
            log.error("%s: ownership file %s does not load, so the sink keeps the rules it had "
                      "(%s): %s — fix the file (`strangler own` writes it validated)", self.stream,
                      self.path, "none" if self.current is None else f"sha {self.current.sha256[:12]}",
                      exc)
            return self.rules
        if self.current is None or new.sha256 != self.current.sha256:
            self.rules = rules_for(new, self.stream, self.mappings)
            if self.current is not None:
                log.info("%s: ownership changed (%s): %s", self.stream, self.path, describe(self.rules))
        self.current = new
        return self.rules


def describe(rules: Mapping[str, Rule]) -> str:
    parts = []
    for r in rules.values():
        if r.rows:
            parts.append(f"{r.table}: owned" + (f" (not {', '.join(sorted(r.columns))})" if r.columns else ""))
        else:
            parts.append(f"{r.table}: {r.owner} owns" + (f", {', '.join(r.kept)} kept" if r.kept else ""))
    return "; ".join(parts) or "no table of this stream is in a group"
