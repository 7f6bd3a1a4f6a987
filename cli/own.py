"""`strangler own GROUP|TABLE --by SIDE --reason TEXT`: move write ownership, gated and resumable.

The flip is a procedure, not a switch (DESIGN.md, "Write ownership"). Phases, in order:

    preflight  refuse, changing nothing, unless: the group (or table) and side exist, both
               sides' out-streams are declared, the forward stream (the owner's out-stream)
               runs within --max-lag, a verify of it finds no difference, the admin token is
               there if a router runs, and no other `own` of the group runs
    hold       ownership.yaml gets a hold (until now + --hold-max): the router answers the
               group's write methods 503 + Retry-After; a running router reloads and every
               worker confirms the new file and 0 in-flight writes of the group
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

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

import typer

import ownership
from cli.errors import CLIError
from cli.output import err, guarded, out, print_json
from control.errors import ControlError
from control.ledger import actor, append_entry, ledger_path
from stack import state

app = typer.Typer()

PHASES = ("preflight", "hold", "drain", "guard", "ids", "reverse", "flip", "done")
REDONE = ("hold", "drain")  # redone on resume: the hold may have lapsed, writes may have landed


class Refused(CLIError):
    """A precondition is not met; nothing was changed."""

    def __init__(self, message: str, exit_code: int = 3) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class PhaseFailed(CLIError):
    """A phase failed after something changed; the caller undoes."""


@dataclass
class Flip:
    group: str
    to: str
    reason: str
    own_path: Path
    streams: Any  # cdc.config.StreamsFile
    ledger: Path
    router: str | None
    max_lag: float
    hold_max: float
    say: Callable[[str], None]
    st: dict[str, Any] = field(default_factory=dict)

    # -- where things are -----------------------------------------------------------
    def load(self) -> ownership.Group:
        return ownership.load(self.own_path).group(self.group)

    @property
    def frm(self) -> str:
        return str(self.st["from"])

    def stream_of(self, side: str) -> Any:
        return self.streams.stream(self.load().side(side).stream)

    def url_of(self, side: str) -> str:
        return str(self.stream_of(side).source_url)  # a side's out-stream reads its database

    # -- records --------------------------------------------------------------------
    def record(self, phase: str, **extra: Any) -> None:
        if phase not in self.st["phases"]:
            self.st["phases"].append(phase)
        save_state(self.group, self.st)
        append_entry(self.ledger, {"kind": "ownership", "group": self.group, "phase": phase,
                                   "from": self.frm, "to": self.to, "reason": self.reason,
                                   "actor": actor(), **extra})
        self.say(f"{phase}: done" + (f" ({_brief(extra)})" if extra else ""))
        from cdc import faults

        faults.point(f"own.after_{phase}")  # tests crash the procedure exactly here


def _brief(extra: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in extra.items())


# -- state file and lock ---------------------------------------------------------------
def _own_dir() -> Path:
    path = state.state_dir() / "own"
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_state(group: str) -> dict[str, Any] | None:
    try:
        doc: dict[str, Any] = json.loads((_own_dir() / f"{group}.json").read_text())
    except (OSError, ValueError):
        return None
    return doc


def save_state(group: str, doc: dict[str, Any]) -> None:
    path = _own_dir() / f"{group}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, path)


def clear_state(group: str) -> None:
    (_own_dir() / f"{group}.json").unlink(missing_ok=True)


@contextlib.contextmanager
def exclusive(group: str) -> Iterator[None]:
    """One `own` per group at a time: a non-blocking lock; the holder's pid in the file."""
    path = _own_dir() / f"{group}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise Refused(f"another strangler own {group} is running (pid {pid}); wait for it to "
                          "finish, or if it died, run this again to resume it", 1) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


# -- the router ------------------------------------------------------------------------
def router_url(explicit: str | None) -> str | None:
    """The running router's URL, or None when none answers (a router started later reads
    ownership.yaml itself)."""
    import httpx

    from control.routerapi import find_router

    url = find_router(explicit)
    if url is None:
        return None
    try:
        httpx.get(f"{url}/_strangler/status", timeout=2.0)
    except httpx.TransportError:
        return None
    return url


def router_sync(url: str, sha: str, group: str, *, drained: bool, timeout: float) -> int:
    """POST reload, then wait until every worker serves ownership `sha` (and, `drained`, has
    no write of `group` in flight). The only place that reads the router's ownership status."""
    from control.routerapi import RouterAPI

    deadline = time.monotonic() + timeout
    with RouterAPI(url) as api:
        api.reload()
        while True:
            own = api.status().get("ownership")
            if not isinstance(own, dict):
                raise PhaseFailed(f"the router at {url} does not report ownership in its status; it "
                                  "predates write ownership: upgrade it, then run this again")
            workers = own.get("workers") or []
            behind = [w for w in workers if w.get("sha256") != sha
                      or (drained and int((w.get("inflight_writes") or {}).get(group, 0)) > 0)]
            if workers and not behind:
                return len(workers)
            if time.monotonic() >= deadline:
                raise PhaseFailed(f"router workers {[w.get('pid') for w in behind]} did not confirm "
                                  f"ownership {sha[:12]}{' with no write in flight' if drained else ''} "
                                  f"within {timeout:.1f} s")
            time.sleep(0.05)


# -- the ids phase -----------------------------------------------------------------------
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
    from cli.ids import reserve_side

    g = f.load()
    try:
        return {"strategy": "block", **reserve_side(Path(f.streams.path), f.group, f.to)}
    except CLIError as exc:
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


# -- preflight -------------------------------------------------------------------------
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
    from control.streamcheck import lag_problem

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
    if f.router is not None and not state.admin_token():
        raise Refused(f"a router runs at {f.router} and flipping ownership reloads it, which needs "
                      "the admin token: set STRANGLER_ADMIN_TOKEN (`strangler up` keeps it in "
                      ".strangler/admin-token)", 1)
    checked["router"] = f.router or "none"
    return checked


# -- phases ----------------------------------------------------------------------------
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
    if f.router is not None:
        workers = router_sync(f.router, sha, f.group, drained=True, timeout=_left(f))
    f.record("hold", until=round(until, 3), router_workers=workers)


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
    from control.streamcheck import live

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
    if f.router is not None:
        workers = router_sync(f.router, ownership.load(f.own_path).sha256, f.group, drained=False,
                              timeout=30.0)
    f.record("done", hold_s=f.st.get("hold_s"), router_workers=workers)
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
        if f.router is not None:
            with contextlib.suppress(ControlError):
                router_sync(f.router, ownership.load(f.own_path).sha256, f.group, drained=False,
                            timeout=10.0)
    hold_s = round(time.time() - float(f.st["hold_since"]), 3) if f.st.get("hold_since") else None
    f.record("undone", why=why, hold_s=hold_s, **restored)
    clear_state(f.group)
    return {"why": why, "hold_s": hold_s, "guards": restored}


def _same(a: ownership.Ownership, b: ownership.Ownership) -> bool:
    return ownership.dump(a) == ownership.dump(b)


def _restore(path: Path, text: str) -> None:
    """Put back the file's earlier text (atomically; the caller holds its edit lock)."""
    ownership.parse(text, source=str(path))
    tmp = path.with_name(f".{path.name}.undo")
    tmp.write_text(text)
    os.replace(tmp, path)


# -- the command -----------------------------------------------------------------------
def _streams_file(streams: str | None) -> Any:
    from cdc import config
    from cdc.errors import ConfigError

    try:
        return config.load(streams)
    except ConfigError as exc:
        raise Refused(str(exc), 2) from None


@app.command()
@guarded
def own(
    name: Annotated[str, typer.Argument(metavar="GROUP|TABLE", help="Ownership group (ownership.yaml), or one of its tables.")],
    by: Annotated[str, typer.Option("--by", help="The side that will write the group's tables (a router upstream name).")],
    reason: Annotated[str, typer.Option("--reason", help="Why: goes into the ledger.")] = "",
    undo_: Annotated[bool, typer.Option("--undo", help="Abandon an unfinished flip: guards back, hold released, the old owner keeps writing.")] = False,
    max_lag: Annotated[float, typer.Option(help="Refuse when the forward stream is further behind than this (seconds).")] = 5.0,
    hold_max: Annotated[float, typer.Option(help="Longest the group's writes are held (seconds); past it the flip is undone.")] = 30.0,
    streams: Annotated[str | None, typer.Option("--streams", envvar="STRANGLER_STREAMS", help="streams.yaml (it names ownership.yaml).")] = None,
    routes: Annotated[Path, typer.Option(help="Routes file whose ledger records the phases.")] = Path("routes.yaml"),
    router: Annotated[str | None, typer.Option("--router", envvar="STRANGLER_ROUTER_URL", help="Running router's base URL (default: the one `up` started).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Move write ownership of GROUP (or TABLE's group) to side --by, without losing a write.

    The procedure, each phase ledgered (`strangler ledger`):

    1 preflight: refuses, changing nothing, on an unknown group or side, a stream not declared or not running, lag over --max-lag, verify differences, the admin token missing, another `own` running.

    2 hold: the router answers the group's write methods 503 + Retry-After, at most --hold-max.

    3 drain: the forward stream applies everything up to now.

    4 guard: the old owner's database refuses application writes; the new owner's opens.

    5 ids: the new owner's id allocator moves into its block.

    6 reverse: the new owner's out-stream is capturing.

    7 flip: ownership.yaml says owner = SIDE, hold cleared.

    8 done: the hold time (hold to release) is reported.

    After a crash run the same command again: it resumes. --undo abandons an unfinished flip. Exit codes: 0 done (or nothing to do), 1 failed (and undone), 2 usage, 3 a check not met.
    """
    def say(line: str) -> None:
        err.print(f"· {line}", highlight=False, markup=False)

    sf = _streams_file(streams)
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
    f = Flip(group=g.name, to=by, reason=reason, own_path=own_path, streams=sf,
             ledger=ledger_path(routes), router=router_url(router), max_lag=max_lag,
             hold_max=hold_max, say=say)
    with exclusive(g.name):
        result = _undo_cmd(f) if undo_ else _flip(f, g)
    if json_out:
        print_json(result)
    elif result.get("outcome") == "nothing to undo":
        out.print(f"{g.name}: nothing to undo", highlight=False)
    elif result.get("outcome") == "nothing to do":
        guarded_tables = [t for side in result.get("guards", {}).values() for t, what in side.items()
                          if what != "open" and what != "removed"]
        out.print(f"{g.name}: already owned by {by}; nothing to do (database guards in place on "
                  f"{len(guarded_tables)} table(s) of the other side)", highlight=False)
    elif result.get("outcome") == "undone":
        out.print(f"{g.name}: flip to {by} undone; {result['from']} keeps writing", highlight=False)
    else:
        out.print(f"{g.name}: now written by {by} (was {result['from']}); writes held "
                  f"{result.get('hold_s')} s", highlight=False)


def _undo_cmd(f: Flip) -> dict[str, Any]:
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


def enforce(streams: Any, g: ownership.Group) -> dict[str, dict[str, str]]:
    """Make both databases enforce what ownership.yaml says now (idempotent).

    `strangler up` and the demo call this once the schemas exist, and `own --by <owner>`
    does it when there is nothing to flip: a fresh stack's non-owner side is guarded from
    the start, not only after a first flip.
    """
    from cdc.errors import CDCError
    from cdc.guard import apply_guards

    urls = {side: str(streams.stream(s.stream).source_url) for side, s in g.sides.items()}
    try:
        return {side: apply_guards(url, g, side) for side, url in urls.items()}
    except CDCError as exc:
        raise CLIError(f"cannot make the databases enforce ownership of {g.name}: {exc}") from None


def enforce_declared(streams: Path, env: dict[str, str]) -> dict[str, Any]:
    """`enforce` every ownership group of a stack whose streams see `env` (for `up`, the demo).

    Returns {} when the stack declares no ownership (no file): nothing to enforce.
    """
    from cdc import config

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        sf = config.load(streams)
        if not Path(sf.ownership_path).exists():
            return {}
        doc = ownership.load(sf.ownership_path)
        return {name: enforce(sf, g) for name, g in doc.groups.items()}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _flip(f: Flip, g: ownership.Group) -> dict[str, Any]:
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
            raise CLIError(f"{exc}; ownership.yaml already names {f.to}: run this again to finish") from exc
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        f.say(f"failed: {why}; undoing")
        undo(f, why)
        raise CLIError(f"moving {f.group} to {f.to} failed and was undone ({f.frm} keeps writing; "
                       f"held writes got 503 + Retry-After, none lost): {why}") from None
    return {"group": f.group, "outcome": "done", "from": f.frm, "to": f.to, "resumed": resumed,
            "hold_s": f.st.get("hold_s"), "phases": f.st["phases"]}
