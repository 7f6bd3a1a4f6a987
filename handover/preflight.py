"""Before a flip: which group a name means, and every check that must pass, changing nothing."""

from __future__ import annotations

from typing import Any

import ownership
from control.streamcheck import lag_problem
from handover.errors import Refused
from handover.flip import Flip
from stack import state


def resolve(own: ownership.Ownership, name: str, source: str) -> ownership.Group:
    if name in own.groups:
        return own.groups[name]
    for g in own.groups.values():
        for s in g.sides.values():
            if name in s.tables:
                return g
    tables = sorted(t for g in own.groups.values() for s in g.sides.values() for t in s.tables)
    raise Refused(f"no ownership group or synced table {name!r} in {source}: a table with no stream "
                  f"cannot change owner. Groups: {', '.join(own.groups) or 'none'}; tables: "
                  f"{', '.join(tables) or 'none'} — declare it there (and its stream in streams.yaml)", 2)


def preflight(f: Flip, g: ownership.Group, *, verify: bool) -> dict[str, Any]:
    """Every check, changing nothing; returns what was checked (for the ledger)."""
    from cdc.errors import ConfigError

    frm = f.st.get("from", g.owner)
    for side in g.sides.values():
        try:
            cfg = f.streams.stream(side.stream)
        except ConfigError:
            raise Refused(f"side {side.name} of group {g.name} names out-stream {side.stream!r}, which "
                          f"is not declared in {f.streams.path}: declare it (source: the {side.name} "
                          f"database, target: the other side's)", 2) from None
        mapped = {t.source for t in cfg.tables}
        missing = [t for t in side.tables if t not in mapped]
        if missing:
            raise Refused(f"table(s) {', '.join(missing)} of side {side.name} have no stream: stream "
                          f"{side.stream} in {f.streams.path} does not carry them; add them there", 2)
    forward = g.side(frm).stream
    problem = lag_problem(forward, f.max_lag)
    if problem:
        raise Refused(f"cannot move {g.name} to {f.to}: {problem}")
    checked: dict[str, Any] = {"forward": forward}
    if verify:
        from cdc.errors import CDCError
        from control.verify import repair_command, run_verify

        try:
            diffs = run_verify(f.streams.stream(forward), recheck_wait=0.5)
        except CDCError as exc:
            raise Refused(f"cannot verify stream {forward}: {exc}", 1) from None
        if not all(d.equal for d in diffs):
            counts = {k: sum(len(getattr(d, k)) for d in diffs) for k in ("missing", "extra", "different")}
            raise Refused(f"cannot move {g.name} to {f.to}: `strangler verify {forward}` finds "
                          f"{counts['missing']} missing, {counts['extra']} extra, {counts['different']} "
                          f"different rows; repair first: `{repair_command(forward, diffs)}`")
        checked["verify"] = "equal"
    if f.front is not None and f.front.needs_token and not state.admin_token():
        raise Refused(f"the stack's {f.front.name} reloads when ownership flips, which needs "
                      "the admin token: set STRANGLER_ADMIN_TOKEN (`strangler up` keeps it in "
                      ".strangler/admin-token)", 1)
    if f.front is not None:
        problem = f.front.cannot_serve(g.name, f.to)
        if problem:
            raise Refused(f"cannot move {g.name} to {f.to} with {f.front.name} in front: {problem}. Flip with "
                          "Strangler's router in front (`strangler up`), or drop `identity: true` from those "
                          "routes if the service does not need to know the user", 1)
    checked["front"] = f.front.name if f.front is not None else "none"
    return checked

