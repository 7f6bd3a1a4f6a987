"""The phases of a flip after preflight, each one step of DESIGN.md's procedure, and `undo`
(back to the old owner: guards as they were, hold released).

Each phase records itself when it is done (`Flip.record`); `PHASES` is their order, and
`REDONE` those redone on resume. A phase raises `PhaseFailed` when it cannot finish.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import ownership
from control.errors import ControlError
from control.streamcheck import live
from handover.errors import PhaseFailed
from handover.flip import Flip
from handover.ids import reserve_side
from handover.journal import clear_state, save_state

PHASES = ("preflight", "hold", "drain", "guard", "ids", "reverse", "flip", "done")
REDONE = ("hold", "drain")  # redone on resume: the hold may have lapsed, writes may have landed


def prepare_ids(f: Flip) -> dict[str, Any]:
    """Make the new owner's next ids collide with nothing on either side.

    The shop's way is reserved blocks (`strangler ids`): the new owner's allocator moves into
    its block. When it cannot (a SQLite side whose tables already hold ids beyond its block:
    SQLite never sets an allocator below a row), each table's next id is moved past the
    largest id on both sides instead: from now on this side is the only one inserting, so
    that is enough.
    """
    from cdc import ids
    from cdc.errors import CDCError

    g = f.load()
    try:
        return {"strategy": "block", **reserve_side(Path(f.streams.path), f.group, f.to)}
    except ControlError as exc:
        why = str(exc)
    url, other = f.url_of(f.to), g.other(f.to)
    moved: dict[str, int] = {}
    try:
        for mine, theirs in zip(g.side(f.to).tables, other.tables, strict=True):
            floor = ids.describe(f.url_of(other.name), theirs).max_id or 0
            moved[mine] = ids.move_past(url, mine, floor=floor, headroom=1)
    except CDCError as exc:
        raise PhaseFailed(f"cannot make {f.to}'s ids collision-free: {exc}") from None
    return {"strategy": "past both sides' largest id", "why_not_block": why, "next_ids": moved}


def _hold_until(f: Flip) -> float:
    return float(f.st["hold_until"])


def _left(f: Flip) -> float:
    left = _hold_until(f) - time.time()
    if left <= 0:
        raise PhaseFailed(f"the hold budget of {f.hold_max:g} s ran out before the flip; raise "
                          "--hold-max, or find what is slow (`strangler cdc status`)")
    return left


def phase_hold(f: Flip) -> None:
    since = time.time()
    until = since + f.hold_max
    if "ownership_before" not in f.st:  # the file's own bytes, so that an undo restores them
        f.st["ownership_before"] = f.own_path.read_text()
    with ownership.edit(f.own_path) as box:
        box[0] = ownership.with_hold(box[0], f.group, ownership.Hold(
            since=since, until=until, reason=f"strangler own {f.group} --by {f.to}: {f.reason}"))
    sha = box[0].sha256
    f.st.update(hold_since=since, hold_until=until)
    workers = 0
    if f.front is not None:
        workers = f.front.confirm(sha, f.group, drained=True, timeout=_left(f))
    f.record("hold", until=round(until, 3), front=_front(f), workers_confirmed=workers)


def phase_drain(f: Flip) -> None:
    from cdc import drain

    cfg = f.stream_of(f.frm)
    at = drain.mark(cfg)
    if not drain.wait_applied_to(cfg, at, timeout=_left(f)):
        _left(f)
        raise PhaseFailed(f"stream {cfg.name} did not apply everything up to now within the hold")
    f.record("drain", stream=cfg.name, position=at)


def phase_guard(f: Flip) -> None:
    from cdc.guard import apply_guards, guard_state

    g = f.load()
    new = replace(g, owner=f.to, hold=None)
    before = f.st.get("guards_before") or {s: guard_state(f.url_of(s), g, s) for s in g.sides}
    f.st["guards_before"] = before
    save_state(f.group, f.st)
    old_side = apply_guards(f.url_of(f.frm), new, f.frm)  # the old owner stops writing first
    new_side = apply_guards(f.url_of(f.to), new, f.to)
    f.record("guard", **{f.frm: old_side, f.to: new_side})


def phase_ids(f: Flip) -> None:
    f.record("ids", **prepare_ids(f))


def phase_reverse(f: Flip) -> None:
    from cdc import drain

    cfg = f.stream_of(f.to)
    lv = live(cfg.name)
    if not lv.running or not drain.capturing(cfg):
        raise PhaseFailed(f"the new owner's out-stream {cfg.name} is {lv.state}: its writes would not "
                          f"reach the {f.frm} side. Start it (`strangler cdc run {cfg.name}`, or "
                          f"`strangler up` runs every stream), then run this again")
    f.record("reverse", stream=cfg.name)


def phase_flip(f: Flip) -> None:
    _left(f)
    with ownership.edit(f.own_path) as box:
        box[0] = ownership.with_owner(ownership.with_hold(box[0], f.group, None), f.group, f.to)
    released = time.time()
    f.st["released"] = released
    f.st["hold_s"] = round(released - float(f.st["hold_since"]), 3)
    f.record("flip", owner=f.to, hold_s=f.st["hold_s"])


def phase_done(f: Flip) -> None:
    workers = 0
    if f.front is not None:
        workers = f.front.confirm(ownership.load(f.own_path).sha256, f.group, drained=False, timeout=30.0)
    f.record("done", hold_s=f.st.get("hold_s"), front=_front(f), workers_confirmed=workers)
    clear_state(f.group)


RUN: dict[str, Callable[[Flip], None]] = {
    "hold": phase_hold, "drain": phase_drain, "guard": phase_guard, "ids": phase_ids,
    "reverse": phase_reverse, "flip": phase_flip, "done": phase_done,
}


def undo(f: Flip, why: str) -> dict[str, Any]:
    """Back to the old owner: guards as they were, hold released (before the flip only)."""
    from cdc.guard import apply_guards, remove_guards

    g = f.load()
    restored: dict[str, Any] = {}
    before = f.st.get("guards_before") or {}
    if "guard" in f.st["phases"] or before:
        old = replace(g, owner=f.frm, hold=None)
        for side, tables in before.items():
            url = f.url_of(side)
            if all(v == "open" for v in tables.values()):
                restored[side] = remove_guards(url, list(tables))
            else:
                restored[side] = apply_guards(url, old, side)
    if g.hold is not None:
        with ownership.edit(f.own_path) as box:
            cleared = ownership.with_hold(box[0], f.group, None)
            original = f.st.get("ownership_before")
            if original is not None and _same(ownership.parse(original), cleared):
                _restore(f.own_path, original)  # nobody else edited it: the exact bytes back
            else:
                box[0] = cleared
        if f.front is not None:
            try:
                f.front.confirm(ownership.load(f.own_path).sha256, f.group, drained=False, timeout=10.0)
            except ControlError as exc:  # the file is released; the front catches up on its own
                f.say(f"undo: the hold is released in {f.own_path}, but {exc}")
    hold_s = round(time.time() - float(f.st["hold_since"]), 3) if f.st.get("hold_since") else None
    f.record("undone", why=why, hold_s=hold_s, **restored)
    clear_state(f.group)
    return {"why": why, "hold_s": hold_s, "guards": restored}


def _front(f: Flip) -> str:
    return f.front.name if f.front is not None else "none"


def _same(a: ownership.Ownership, b: ownership.Ownership) -> bool:
    return ownership.dump(a) == ownership.dump(b)


def _restore(path: Path, text: str) -> None:
    """Put back the file's earlier text (atomically; the caller holds its edit lock)."""
    ownership.parse(text, source=str(path))
    tmp = path.with_name(f".{path.name}.undo")
    tmp.write_text(text)
    os.replace(tmp, path)
