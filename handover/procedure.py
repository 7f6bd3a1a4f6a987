"""Moving write ownership of a group to the other side, gated and resumable (`strangler own`).

The flip is a procedure, not a switch (DESIGN.md, "Write ownership"). Phases, in order:

    preflight  refuse, changing nothing, unless: the group (or table) and side exist, both
               sides' out-streams are declared, the forward stream (the owner's out-stream)
               runs within --max-lag, a verify of it finds no difference, the admin token is
               there if a router runs, and no other `own` of the group runs
    hold       ownership.yaml gets a hold (until now + --hold-max): the router (or the data
               plane, `up --data-plane`) answers the group's write methods 503 + Retry-After;
               a running router reloads and every worker confirms the new file and 0 in-flight
               writes of the group; a data plane confirms once its old workers are gone
    drain      a marker written into the old owner's database now; wait until its out-stream
               has applied it (everything committed before the hold is in the other side)
    guard      database guards: the old owner's side first, then the new owner's (cdc/guard.py)
    ids        the new owner's id allocator moves into its block
    reverse    the new owner's out-stream is capturing: running, its capture point exists
    flip       one atomic write of ownership.yaml: owner = SIDE, hold cleared; reload + confirm
    done       the hold time (hold → release) is reported and ledgered

Each phase is appended to the ledger ("kind": "ownership") and to `.strangler/own/<group>.json`.
After a crash the same command resumes (hold and drain are redone: time has passed; the
other finished phases are skipped); `--undo` puts the guards back and releases the hold. A
phase that fails, or a hold budget that runs out before the flip, undoes what was done and
exits 1: held clients got 503 + Retry-After, nothing is lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ownership
from control.ledger import actor
from handover.enforce import enforce
from handover.errors import HandoverError, Refused
from handover.flip import Flip
from handover.front import find_front
from handover.journal import exclusive, load_state
from handover.phases import PHASES, REDONE, RUN, undo
from handover.preflight import preflight, resolve


def move(name: str, *, by: str, reason: str, undo_: bool, streams: str | None, ledger: Path,
         router: str | None, max_lag: float, hold_max: float,
         say: Callable[[str], None]) -> tuple[str, dict[str, Any]]:
    """Move GROUP (or TABLE's group) to side `by` (or, `undo_`, abandon its unfinished flip):
    the group's name and the outcome, one JSON-able document."""
    sf = streams_file(streams)
    own_path = Path(sf.ownership_path)
    try:
        doc = ownership.load(own_path)
    except ownership.OwnershipError as exc:
        raise Refused(f"{exc}", 2) from None
    g = resolve(doc, name, str(own_path))
    if by not in g.sides:
        raise Refused(f"group {g.name} has no side {by!r}; its sides: {', '.join(g.sides)}", 2)
    if not undo_ and not reason.strip():
        raise Refused("say why with --reason TEXT: it goes into the ledger", 2)
    f = Flip(group=g.name, to=by, reason=reason, own_path=own_path, streams=sf, ledger=ledger,
             front=find_front(router), max_lag=max_lag, hold_max=hold_max, say=say)
    with exclusive(g.name):
        return g.name, undo_unfinished(f) if undo_ else flip(f, g)


def streams_file(streams: str | None) -> Any:
    from cdc import config
    from cdc.errors import ConfigError

    try:
        return config.load(streams)
    except ConfigError as exc:
        raise Refused(str(exc), 2) from None


def flip(f: Flip, g: ownership.Group) -> dict[str, Any]:
    st = load_state(f.group)
    if st is not None and st.get("to") != f.to:
        raise Refused(f"a flip of {f.group} to {st.get('to')} is unfinished (after {st['phases'][-1]}); "
                      f"resume it: `strangler own {f.group} --by {st.get('to')} --reason ...`, or "
                      f"abandon it: `strangler own {f.group} --by {st.get('to')} --undo`", 1)
    if st is None and g.owner == f.to:
        return {"group": f.group, "outcome": "nothing to do", "owner": f.to,
                "guards": enforce(f.streams, g)}
    resumed = st is not None
    f.st = st or {"group": f.group, "from": g.owner, "to": f.to, "reason": f.reason,
                  "actor": actor(), "started": round(time.time(), 3), "phases": []}
    if "flip" not in f.st["phases"]:
        checked = preflight(f, g, verify=True)
        f.record("preflight", resumed=resumed, **checked)
    try:
        for phase in PHASES[1:]:
            if "flip" in f.st["phases"] and phase != "done":
                continue
            if phase in f.st["phases"] and phase not in REDONE:
                continue
            f.say(f"{phase} ...")
            RUN[phase](f)
    except Exception as exc:
        if "flip" in f.st["phases"]:  # ownership already moved: finishing is the way on
            raise HandoverError(f"{exc}; ownership.yaml already names {f.to}: run this again to finish") from exc
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        f.say(f"failed: {why}; undoing")
        undo(f, why)
        raise HandoverError(f"moving {f.group} to {f.to} failed and was undone ({f.frm} keeps writing; "
                       f"held writes got 503 + Retry-After, none lost): {why}") from None
    return {"group": f.group, "outcome": "done", "from": f.frm, "to": f.to, "resumed": resumed,
            "hold_s": f.st.get("hold_s"), "phases": f.st["phases"]}


def undo_unfinished(f: Flip) -> dict[str, Any]:
    st = load_state(f.group)
    if st is None:
        f.say(f"no unfinished flip of {f.group} to undo; to move ownership back run "
              f"`strangler own {f.group} --by <side> --reason ...`")
        return {"group": f.group, "outcome": "nothing to undo"}
    f.st = st
    f.to, f.reason = str(st["to"]), str(st.get("reason", ""))
    if "flip" in st["phases"]:
        raise Refused(f"the flip of {f.group} to {f.to} already happened (ownership.yaml says so); "
                      f"finish it: `strangler own {f.group} --by {f.to} --reason ...`, then move it "
                      f"back the same way: `strangler own {f.group} --by {st['from']} --reason ...`", 1)
    done = undo(f, "--undo")
    return {"group": f.group, "outcome": "undone", "from": f.frm, "to": f.to, **done}
