"""The rollout controller: one persisted rollout, advanced one poll at a time.

Place in the flow: `strangler rollout start` writes the rollout (spec + state) to
`<state>/rollouts/<route>.json` — the file the dashboard already reads (router/rollouts.py) —
and spawns a detached controller process (control/rollouts.py) that calls `Controller.run`.
Each `tick` reads the file, takes a pending request (pause, resume, abort, promote: written by
another `strangler rollout …` or a dashboard button), does what the current step needs, and
writes the file back. Every transition goes to the ledger.

Why a process and a file, not the router's own background task: the router is a data plane
with several workers and restarts on reloads; a rollout must survive both, and the router
must not need the CLI's wiring (read gate, tokens, webhooks). Why the state is re-read on
every tick: then a controller holds nothing a `kill -9` can lose. The file records the step
index, when the step started, the analysis window's baseline counters, passed and failed
checks. A new controller resumes from exactly there: a `setWeight` already applied is seen
in the router's table and not re-sent, a timed pause keeps its deadline (wall clock), an
analysis keeps its window (and `waiting`: how many candidate requests it still needs and
when it pauses as inconclusive, which `rollout status` counts down). At most one controller
per route runs (an flock, released by the kernel when its holder dies, so a killed
controller never blocks its successor).

Step semantics, as Argo Rollouts and Flagger: `setWeight` applies and moves on; `pause` with
a duration waits, without one (and `approval`) waits for a promote; `analysis` runs checks
of `interval` seconds each (`rollout.gate.check`): a failed check counts toward `threshold`
(then rollback to 0%), a window with too few candidate requests keeps growing until
`max_wait` and then *pauses* the rollout, saying what to do — it never rolls back for lack of
traffic. Webhooks `pre` run as each check's window opens, `post` once the analysis passed; a
non-2xx or a timeout is a failed check. After the last step the candidate gets 100%.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from rollout import webhook
from rollout.gate import Check, Snapshot, Window, check, merge, window
from rollout.spec import RolloutSpec, Step, from_json
from router import ledger as router_ledger
from router import rollouts as files

ACTIVE = ("running", "paused")
DONE = ("promoted", "rolled_back", "aborted", "failed")
ACTIONS = ("pause", "resume", "abort", "promote")


class RolloutError(Exception):
    """A rollout that cannot be started or steered; the message says what to do."""


class Control(Protocol):
    """What the controller needs from a router (control.routercontrol.RouterControl, or a fake)."""

    def snapshot(self, route: str) -> tuple[dict[str, int], dict[str, Snapshot]]: ...

    def set_weight(self, route: str, backend: str, weight: int, reason: str) -> dict[str, int]: ...

    def shadow_of(self, route: str) -> dict[str, Any] | None:
        """The route's shadow as the router serves it ({to, percent}), None without one."""

    def set_header_route(self, route: str, rule: dict[str, str], reason: str) -> None: ...

    def clear_header_route(self, route: str, name: str, reason: str) -> None: ...

    def set_mirror(self, route: str, mirror: dict[str, Any], reason: str) -> None: ...

    def clear_mirror(self, route: str, reason: str) -> None: ...


Post = Callable[[str, dict[str, Any], float], tuple[bool, str]]


class Store:
    """One route's rollout file and request file (router/rollouts.py's format) and the ledger."""

    def __init__(self, folder: Path, route: str, *, ledger: Path | None) -> None:
        self.folder, self.route, self.ledger_path = Path(folder), route, ledger

    @property
    def path(self) -> Path:
        return self.folder / f"{self.route}.json"

    def load(self) -> dict[str, Any] | None:
        import json

        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) and doc.get("kind") == "rollout" else None

    def save(self, doc: dict[str, Any]) -> None:
        files.publish(self.folder, doc)

    def take(self) -> dict[str, Any] | None:
        return files.take(self.folder, self.route)

    def request(self, action: str, *, actor: str, reason: str = "", full: bool = False) -> dict[str, Any]:
        req = files.request(self.folder, self.route, action=action, actor=actor, reason=reason)
        if full:
            req = {**req, "full": True}
            files._write(self.folder / f"{self.route}.request.json", req)
        return req

    def record(self, entry: dict[str, Any]) -> None:
        if self.ledger_path is not None:
            router_ledger.append_record(self.ledger_path, entry)

    @contextlib.contextmanager
    def lock(self) -> Any:
        """Held by the one controller of this route; RolloutError if another holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / f".{self.route}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RolloutError(f"another controller already runs the rollout of {self.route!r}") from None
            yield
        finally:
            os.close(fd)


def new_rollout(spec: RolloutSpec, *, actor: str, now: float) -> dict[str, Any]:
    """The file of a rollout that has not taken a step yet."""
    g = spec.gate
    return {
        "kind": "rollout", "id": uuid.uuid4().hex[:12], "route": spec.route, "candidate": spec.candidate,
        "spec": spec.to_json(), "actor": actor, "reason": spec.reason, "created": now,
        "state": "running", "why": "", "pause_reason": "",
        "steps": [s.label() for s in spec.steps], "step": 0, "step_index": 0, "step_kind": None,
        "step_started": None, "deadline": None, "weight": None,
        "window": None, "checks_passed": 0, "failed_checks": 0, "threshold": spec.threshold,
        "baseline_p99": None, "progress": None, "verdict": None, "waiting": None, "history": [],
        "managed_routes": {"header": {}, "mirror": None},
        "min_requests": g.min_requests,
        "gate": (f"errors ≤ {g.max_error_rate * 100:g}%, p99 ≤ {g.max_p99_ratio:g}× current"
                 + (f" and ≤ {g.max_p99_ms:g} ms" if g.max_p99_ms else "")
                 + f", ≥ {g.min_requests} requests, {spec.threshold} failed checks to roll back"),
    }


def _managed(doc: dict[str, Any]) -> bool:
    """Whether the rollout still has a header route or a mirror set on the router."""
    managed = doc.get("managed_routes") or {}
    return bool(managed.get("header") or managed.get("mirror"))


def unsettled(doc: dict[str, Any]) -> bool:
    """Whether an ended rollout still owes the router something: the final weight (the router
    did not answer when the rollout ended), or a header route or mirror to remove."""
    return doc.get("owed_weight") is not None or _managed(doc)


# -- counters in JSON (no Infinity: the dashboard's JSON.parse refuses it) --------------------

def _dump(snaps: dict[str, Snapshot]) -> dict[str, Any]:
    return {b: [s.requests, s.errors, [["inf" if math.isinf(e) else e, c] for e, c in s.buckets]]
            for b, s in snaps.items()}


def _load(doc: dict[str, Any]) -> dict[str, Snapshot]:
    return {b: Snapshot(int(v[0]), int(v[1]), tuple((math.inf if e == "inf" else float(e), int(c))
                                                     for e, c in v[2]))
            for b, v in doc.items()}


class Controller:
    """Advances the rollout in `store` against `control`; `tick` is one poll, `run` loops."""

    def __init__(self, store: Store, control: Control, *, actor: str,
                 clock: Callable[[], float] = time.time, post: Post = webhook.post,
                 say: Callable[[str], None] = print) -> None:
        self.store, self.control, self.actor = store, control, actor
        self.clock, self.post, self.say = clock, post, say
        self._router_trouble: str | None = None

    # -- the loop ---------------------------------------------------------------------------

    def run(self, *, sleep: Callable[[float], None] = time.sleep, poll: float = 0.5) -> dict[str, Any]:
        """Tick until the rollout is promoted, rolled back or aborted (a pause keeps it ticking:
        a resume or promote may come). Holds the route's lock throughout."""
        with self.store.lock():
            doc = self._load()
            if doc["state"] in DONE and not unsettled(doc):
                return doc
            self._event(doc, "controller", f"controller {os.getpid()} took over at step "
                                           f"{doc['step_index'] + 1}/{len(doc['steps'])} ({doc['state']})")
            self.store.save(doc)
            while True:
                doc = self.tick()
                if doc["state"] in DONE and not unsettled(doc):
                    return doc
                sleep(poll)

    def tick(self) -> dict[str, Any]:
        doc = self._load()
        now = self.clock()
        request = self.store.take()
        if request is not None and doc["state"] in ACTIVE:
            self._handle(doc, request, now)
        if doc["state"] == "running":
            try:
                self._advance(doc, now)
                if doc.get("owed_weight") is None:  # else the router did not answer this tick
                    self._answered(doc)
            except RolloutError as exc:  # the spec cannot run on this router: stop, say why
                doc.update(state="failed", why=str(exc), pause_reason="")
                self._event(doc, "failed", str(exc))
            except Exception as exc:  # the router restarting, a network blip: retry next poll
                self._trouble(doc, exc, "holding the step")
        if doc["state"] in DONE and unsettled(doc):
            # However the rollout ended, the router ends up as it says: the final weight set, and
            # (Argo's managedRoutes) nothing it added left behind.
            try:
                self._settle(doc)
                self._answered(doc)
            except Exception as exc:  # a refusal too: keep trying, the routes must go
                self._trouble(doc, exc, "what the rollout still owes the router waits until it answers")
        self.store.save(doc)
        return doc

    def _answered(self, doc: dict[str, Any]) -> None:
        if self._router_trouble:
            self._event(doc, "router", f"the router answers again: {self._router_trouble} is over")
            self._router_trouble = None

    def _trouble(self, doc: dict[str, Any], exc: Exception, holding: str) -> None:
        text = f"{exc.__class__.__name__}: {exc}"
        doc["verdict"] = {"decision": "waiting", "why": f"cannot reach the router ({text}); retrying"}
        if self._router_trouble is None:
            self._event(doc, "router", f"cannot reach the router ({text}); {holding}")
        self._router_trouble = text

    def _load(self) -> dict[str, Any]:
        doc = self.store.load()
        if doc is None:
            raise RolloutError(f"no rollout of {self.store.route!r} in {self.store.folder}: "
                               f"start one with `strangler rollout start {self.store.route} --to BACKEND`")
        return doc

    # -- requests from a person -------------------------------------------------------------

    def _handle(self, doc: dict[str, Any], req: dict[str, Any], now: float) -> None:
        action, who = str(req.get("action")), str(req.get("actor") or "someone")
        doc["handled"] = {"action": action, "actor": who, "time": req.get("time")}  # the asker waits for it
        because = f" ({req['reason']})" if req.get("reason") else ""
        spec = from_json(doc["spec"])
        if action == "abort":
            self._to_zero(doc, "aborted", f"aborted by {who}{because}")
        elif action == "pause" and doc["state"] == "running":
            doc["state"], doc["pause_reason"] = "paused", f"paused by {who}{because}"
            self._event(doc, "paused", doc["pause_reason"])
        elif action == "resume" and doc["state"] == "paused":
            doc["state"], doc["pause_reason"] = "running", ""
            if doc["window"] is not None:
                doc["window"] = None  # judge afresh: what happened while paused is not this step's evidence
            self._event(doc, "resumed", f"resumed by {who}{because}")
        elif action == "promote" and req.get("full"):
            self._event(doc, "promote", f"full promotion by {who}{because}: skipping every remaining step")
            self._complete(doc, spec, now, why=f"promoted by {who}{because}, skipping the remaining steps")
        elif action == "promote":
            i = doc["step_index"]
            label = spec.steps[i].label() if i < len(spec.steps) else "the end"
            doc["state"], doc["pause_reason"] = "running", ""
            self._event(doc, "promote", f"step {i + 1} ({label}) promoted by {who}{because}")
            self._next(doc)
        else:
            self._event(doc, "ignored", f"{action} from {who} ignored: the rollout is {doc['state']}")

    # -- the steps --------------------------------------------------------------------------

    def _advance(self, doc: dict[str, Any], now: float) -> None:
        spec = from_json(doc["spec"])
        while doc["state"] == "running":
            i = doc["step_index"]
            if i >= len(spec.steps):
                self._complete(doc, spec, now)
                return
            step = spec.steps[i]
            if doc["step_started"] is None:
                doc.update(step_started=now, step=i + 1, step_kind=step.kind, deadline=None,
                           window=None, checks_passed=0, verdict=None, progress=None, waiting=None)
                self._event(doc, "step", f"step {i + 1}/{len(spec.steps)}: {step.label()}")
            if step.kind == "setWeight":
                assert step.weight is not None
                self._set(doc, spec, step.weight, f"step {i + 1}/{len(spec.steps)}: setWeight {step.weight}%")
                self._next(doc)
            elif step.kind == "pause" and step.duration is not None:
                doc["deadline"] = doc["step_started"] + step.duration
                if now < doc["deadline"]:
                    return
                self._next(doc)
            elif step.kind in ("setHeaderRoute", "setMirrorRoute"):
                self._route_step(doc, spec, step, f"step {i + 1}/{len(spec.steps)}: {step.label()}")
                self._next(doc)
            elif step.kind in ("pause", "approval"):
                doc["state"] = "paused"
                doc["pause_reason"] = (f"step {i + 1} ({step.label()}) waits for a person: "
                                       f"`strangler rollout promote {spec.route}` to go on, "
                                       f"`strangler rollout abort {spec.route}` to stop")
                self._event(doc, "paused", doc["pause_reason"])
                return
            elif not self._analyse(doc, spec, step, now):
                return
            else:
                self._next(doc)

    def _analyse(self, doc: dict[str, Any], spec: RolloutSpec, step: Step, now: float) -> bool:
        """One poll of an analysis step; True once it passed."""
        w = doc["window"]
        if w is not None and w.get("retry_at") is not None:
            if now < w["retry_at"]:
                return False
            w = None
        weights, snaps = self.control.snapshot(spec.route)
        if w is None:
            failed = self._hooks(doc, spec, "pre")
            if failed:
                doc["window"] = {"since": now, "retry_at": now + step.interval}
                self._failed(doc, spec, failed, now)
                return False
            w = doc["window"] = {"since": now, "baseline": _dump(snaps)}
            doc["deadline"] = now + step.interval
        base = _load(w["baseline"])
        cand, cur = self._windows(spec, base, snaps, weights)
        elapsed = now - w["since"]
        result = check(spec.gate, candidate=cand, current=cur, baseline_p99=doc["baseline_p99"])
        doc["progress"] = {"window_s": round(elapsed, 1), "candidate_requests": cand.requests,
                           "candidate_errors": cand.errors, "candidate_p99_ms": cand.p99,
                           "current_requests": cur.requests, "current_p99_ms": cur.p99,
                           "checks_passed": doc["checks_passed"], "checks_needed": step.checks}
        doc["verdict"] = {"decision": f"{result.outcome} so far", "why": result.why}
        max_wait = step.max_wait if step.max_wait is not None else 3 * step.interval
        # What the step waits for, persisted so `rollout status` can count down to the pause.
        doc["waiting"] = None if cand.requests >= spec.gate.min_requests else {
            "for": "candidate_requests", "need": spec.gate.min_requests, "has": cand.requests,
            "inconclusive_at": w["since"] + max_wait}
        early_fail = result.outcome == "fail" and cand.error_rate > spec.gate.max_error_rate
        if elapsed < step.interval and not early_fail:
            return False
        if result.outcome == "inconclusive":
            if elapsed < max_wait:
                doc["deadline"] = w["since"] + max_wait
                return False
            return self._inconclusive(doc, spec, step, result, elapsed)
        doc["verdict"] = {"decision": result.outcome, "why": result.why}
        if result.outcome == "fail":
            self._failed(doc, spec, result.why, now, result)
            if doc["state"] == "running":
                doc["window"] = {"since": now, "baseline": _dump(snaps)}
                doc["deadline"] = now + step.interval
            return False
        doc["checks_passed"] += 1
        self._history(doc, now, "pass", result.why, result)
        if result.current_p99 is not None:
            doc["baseline_p99"] = result.current_p99
        if doc["checks_passed"] < step.checks:
            doc["window"] = {"since": now, "baseline": _dump(snaps)}
            doc["deadline"] = now + step.interval
            return False
        failed = self._hooks(doc, spec, "post")
        if failed:
            doc["checks_passed"] -= 1
            doc["window"] = {"since": now, "retry_at": now + step.interval}
            self._failed(doc, spec, failed, now)
            return False
        self._event(doc, "analysis", f"analysis passed at {doc['weight']}%: {result.why}")
        return True

    def _windows(self, spec: RolloutSpec, base: dict[str, Snapshot], snaps: dict[str, Snapshot],
                 weights: dict[str, int]) -> tuple[Window, Window]:
        cand = window(base.get(spec.candidate), snaps.get(spec.candidate, Snapshot(0, 0)))
        cur = merge(window(base.get(b), snaps.get(b, Snapshot(0, 0))) for b in weights if b != spec.candidate)
        return cand, cur

    def _inconclusive(self, doc: dict[str, Any], spec: RolloutSpec, step: Step, result: Check,
                      elapsed: float) -> bool:
        r = spec.route
        doc.update(state="paused", waiting=None)
        doc["verdict"] = {"decision": "inconclusive", "why": result.why}
        doc["pause_reason"] = (
            f"inconclusive at {doc['weight']}%: only {result.candidate.requests} candidate requests in "
            f"{elapsed:.0f}s (need {spec.gate.min_requests}). Send more traffic (`strangler traffic`), "
            f"then `strangler rollout resume {r}` to analyse again; or `strangler rollout promote {r}` "
            f"to skip this analysis, or `strangler rollout abort {r}` (candidate → 0%)")
        self._history(doc, self.clock(), "inconclusive", result.why, result)
        self._event(doc, "inconclusive", doc["pause_reason"])
        return False

    def _failed(self, doc: dict[str, Any], spec: RolloutSpec, why: str, now: float,
                result: Check | None = None) -> None:
        doc["failed_checks"] += 1
        n, limit = doc["failed_checks"], spec.threshold
        self._history(doc, now, "fail", why, result)
        self._event(doc, "check-failed", f"check failed ({n} of {limit} before rollback): {why}")
        if n >= limit:
            self._to_zero(doc, "rolled_back", f"{n} failed checks (threshold {limit}); last: {why}")

    def _hooks(self, doc: dict[str, Any], spec: RolloutSpec, when: str) -> str:
        """Run the `when` webhooks; '' if all passed, else what failed."""
        failed = []
        for hook in (h for h in spec.webhooks if h.when == when):
            body = {"name": hook.name, "phase": when, "route": spec.route, "candidate": spec.candidate,
                    "rollout": doc["id"], "step": doc["step_index"] + 1, "weight": doc["weight"]}
            ok, detail = self.post(hook.url, body, hook.timeout)
            self._history(doc, self.clock(), "webhook", f"{when} webhook {hook.name}: {detail}")
            if not ok:
                failed.append(f"{when} webhook {hook.name!r} ({hook.url}) failed: {detail}")
        return "; ".join(failed)

    def _set(self, doc: dict[str, Any], spec: RolloutSpec, weight: int, label: str) -> None:
        weights, _ = self.control.snapshot(spec.route)
        if spec.candidate not in weights:
            raise RolloutError(f"route {spec.route!r} has no backend {spec.candidate!r}; it has "
                               f"{', '.join(weights)}")
        if weights[spec.candidate] != weight:  # already there after a restart: nothing to send
            reason = f"rollout {spec.route} → {spec.candidate} {label}" + (f" ({spec.reason})" if spec.reason else "")
            self.control.set_weight(spec.route, spec.candidate, weight, reason)
        doc["weight"] = weight

    def _route_step(self, doc: dict[str, Any], spec: RolloutSpec, step: Step, label: str) -> None:
        """Apply a setHeaderRoute/setMirrorRoute step. A route is recorded as managed (and the file
        saved) before the router is asked, so a controller killed in between still removes it."""
        managed = doc.setdefault("managed_routes", {"header": {}, "mirror": None})
        reason = f"rollout {spec.route} → {spec.candidate} {label}" + (f" ({spec.reason})" if spec.reason else "")
        name = str(step.name)
        if step.kind == "setHeaderRoute" and step.removes:
            self.control.clear_header_route(spec.route, name, reason)
            managed["header"].pop(name, None)
        elif step.kind == "setHeaderRoute":
            assert step.match is not None and step.value is not None and step.header is not None
            rule = {"name": name, "header": step.header, step.match: step.value, "to": spec.candidate}
            managed["header"][name] = rule
            self.store.save(doc)
            self.control.set_header_route(spec.route, rule, reason)
        elif step.removes:
            self._unmirror(spec.route, managed["mirror"], reason)
            managed["mirror"] = None
        else:
            restore = managed["mirror"].get("restore") if managed["mirror"] else None
            if managed["mirror"] is None:
                restore = self.control.shadow_of(spec.route)
                if restore is not None and restore.get("to") != spec.candidate:
                    raise RolloutError(
                        f"route {spec.route} already shadows {restore.get('percent')}% to {restore.get('to')} "
                        f"(its routes.yaml `shadow:`), not to {spec.candidate}: {step.label()} would take "
                        f"that shadow over — drop the setMirrorRoute steps, or point the shadow at {spec.candidate}")
            mirror = {"to": spec.candidate, "percent": step.percent, "methods": list(step.methods or ())}
            # a shadow routes.yaml already had (its ignore rules kept by the router) is put back at the end
            managed["mirror"] = {"name": name, **mirror, "restore": restore}
            self.store.save(doc)
            self.control.set_mirror(spec.route, mirror, reason)
        self._event(doc, "route", f"{label}: {'removed' if step.removes else 'set'} through the router")

    def _release(self, doc: dict[str, Any]) -> None:
        """Remove every header route and mirror the rollout still has set (each one ledgered by
        the router); each is forgotten only once the router removed it."""
        managed = doc["managed_routes"]
        why = f"rollout {doc['route']} → {doc['candidate']} {doc['state'].replace('_', ' ')}: its managed routes go"
        for name in list(managed["header"]):
            self.control.clear_header_route(doc["route"], name, why)
            del managed["header"][name]
            self._event(doc, "route", f"header route {name} removed ({doc['state'].replace('_', ' ')})")
            self.store.save(doc)
        if managed.get("mirror"):
            name, restored = managed["mirror"]["name"], managed["mirror"].get("restore")
            self._unmirror(doc["route"], managed["mirror"], why)
            managed["mirror"] = None
            back = " (routes.yaml's shadow put back)" if restored else ""
            self._event(doc, "route", f"mirror {name} removed ({doc['state'].replace('_', ' ')}){back}")

    def _unmirror(self, route: str, mirror: dict[str, Any] | None, reason: str) -> None:
        """End the rollout's mirror: the shadow routes.yaml had before it, else none."""
        restore = (mirror or {}).get("restore")
        if restore:
            self.control.set_mirror(route, {k: restore[k] for k in ("to", "percent", "methods") if k in restore},
                                    reason)
        else:
            self.control.clear_mirror(route, reason)

    def _next(self, doc: dict[str, Any]) -> None:
        doc.update(step_index=doc["step_index"] + 1, step_started=None, deadline=None, window=None,
                   waiting=None)

    def _to_zero(self, doc: dict[str, Any], state: str, why: str) -> None:
        spec = from_json(doc["spec"])
        try:
            self._set(doc, spec, 0, f"{state.replace('_', ' ')}: {why}")
        except RolloutError as exc:  # the route lost its candidate: no weight left to take back
            self._event(doc, "weight", f"{spec.candidate} not set to 0%: {exc}")
        except Exception as exc:  # the router restarting: the abort or rollback stands, owed
            self._owe(doc, 0, f"{state.replace('_', ' ')}: {why}", exc)
        doc.update(state=state, why=why, pause_reason="", window=None, deadline=None, waiting=None)
        self._event(doc, state, why)
        self.say(f"{state.upper()}: {why}")

    def _owe(self, doc: dict[str, Any], weight: int, label: str, exc: Exception) -> None:
        """The rollout has decided `weight` but the router did not take it: the end-of-rollout
        tick sets it once the router answers (a lost abort would leave the candidate serving)."""
        doc["owed_weight"] = {"weight": weight, "label": label}
        self._trouble(doc, exc, f"{doc['candidate']} keeps {doc['weight']}% until the router answers, "
                                f"then gets {weight}%")

    def _settle(self, doc: dict[str, Any]) -> None:
        owed = doc.get("owed_weight")
        if owed is not None:
            try:
                self._set(doc, from_json(doc["spec"]), int(owed["weight"]), str(owed["label"]))
                self._event(doc, "weight", f"{doc['candidate']} set to {owed['weight']}% as the rollout "
                                           f"decided ({owed['label']})")
            except RolloutError as exc:
                self._event(doc, "weight", f"{doc['candidate']} not set to {owed['weight']}%: {exc}")
            doc["owed_weight"] = None
        if _managed(doc):
            self._release(doc)

    def _complete(self, doc: dict[str, Any], spec: RolloutSpec, now: float, why: str | None = None) -> None:
        label = "promoted: every step passed" if why is None else f"promoted: {why}"
        try:
            self._set(doc, spec, 100, label)
        except RolloutError:
            raise
        except Exception as exc:  # a promote someone asked for stands: owed, like an abort
            self._owe(doc, 100, label, exc)
        doc.update(state="promoted", pause_reason="", window=None, deadline=None, waiting=None,
                   step_index=len(spec.steps), step=len(spec.steps),
                   why=why or f"{spec.candidate} serves 100% of {spec.route}; every step passed")
        self._event(doc, "promoted", doc["why"])
        self.say(f"PROMOTED: {doc['why']}")

    # -- records ----------------------------------------------------------------------------

    def _history(self, doc: dict[str, Any], now: float, outcome: str, why: str,
                 result: Check | None = None) -> None:
        item: dict[str, Any] = {"time": now, "step": doc["step_index"] + 1, "weight": doc["weight"],
                                "outcome": outcome, "why": why}
        if result is not None:
            item.update(candidate_requests=result.candidate.requests, candidate_errors=result.candidate.errors,
                        candidate_p99_ms=result.candidate.p99, current_p99_ms=result.current_p99)
        doc["history"] = (doc["history"] + [item])[-50:]

    def _event(self, doc: dict[str, Any], event: str, text: str) -> None:
        self.say(f"{doc['route']}: {text}")
        self.store.record({"kind": "rollout", "event": event, "route": doc["route"],
                           "candidate": doc["candidate"], "rollout": doc["id"],
                           "step": doc["step_index"] + 1, "weight": doc["weight"],
                           "actor": self.actor, "reason": text})
