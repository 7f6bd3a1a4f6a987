"""A rollout's spec: which route, which candidate, the steps, the gate and the webhooks.

Steps use Argo Rollouts' vocabulary, so a spec reads like theirs:

    route: products
    to: catalog
    reason: catalog v2 read path
    gate: {max_error_rate: 1%, max_p99_ratio: 1.5, min_requests: 30, threshold: 2}
    webhooks:
      - {name: smoke, url: "http://127.0.0.1:9000/check", when: pre, timeout: 5s}
    steps:
      - setWeight: 10
      - analysis: {interval: 30s}      # the gate; `checks: 2` for two passing windows
      - pause: {duration: 1m}          # timed
      - approval: {}                   # waits for `strangler rollout promote products`
      - setWeight: 100
      - analysis: {interval: 30s}

`--steps 10,50,approval,100` on the command line is the short form: a number is a
`setWeight` followed by an `analysis`, `pause` waits for a promote, `pause:2m` is timed.
`setHeaderRoute` and shadow steps are refused with a message: the router's admin API changes
weights only (headers and shadows live in routes.yaml).
Everything is validated here, before any weight moves; errors name the key path and the fix.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rollout.gate import Gate, parse_duration, parse_rate

STEP_KINDS = ("setWeight", "pause", "analysis", "approval")
WHEN = ("pre", "post")


class SpecError(ValueError):
    """A spec that cannot run; the message names the key and says what to give."""


@dataclass(frozen=True, kw_only=True)
class Step:
    kind: str  # setWeight | pause | analysis | approval
    weight: int | None = None  # setWeight
    duration: float | None = None  # pause (None: until promoted)
    interval: float = 30.0  # analysis: length of one check's window
    checks: int = 1  # analysis: passing checks needed
    max_wait: float | None = None  # analysis: how long a window may grow for min requests

    def label(self) -> str:
        if self.kind == "setWeight":
            return f"setWeight {self.weight}%"
        if self.kind == "pause":
            return f"pause {self.duration:g}s" if self.duration is not None else "pause (until promoted)"
        if self.kind == "analysis":
            return f"analysis {self.checks}×{self.interval:g}s"
        return "approval (manual)"


@dataclass(frozen=True, kw_only=True)
class Webhook:
    name: str
    url: str
    when: str = "pre"  # pre: before each analysis; post: after it passed
    timeout: float = 5.0


@dataclass(frozen=True, kw_only=True)
class RolloutSpec:
    route: str
    candidate: str
    steps: tuple[Step, ...]
    gate: Gate = field(default_factory=Gate)
    threshold: int = 2  # failed checks before rollback (Flagger's `threshold`)
    webhooks: tuple[Webhook, ...] = ()
    reason: str = ""

    def __post_init__(self) -> None:
        if not self.steps:
            raise SpecError("steps: give at least one step, e.g. --steps 10,50,100")
        if self.threshold < 1:
            raise SpecError(f"gate.threshold {self.threshold}: give 1 or more failed checks before rollback")
        weights = [s.weight for s in self.steps if s.kind == "setWeight"]
        if not weights:
            raise SpecError("steps: no setWeight step, so the candidate would never get traffic")

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["steps"] = [{k: v for k, v in s.items() if v is not None} for s in doc["steps"]]
        return doc


def from_json(doc: dict[str, Any]) -> RolloutSpec:
    """The inverse of `to_json` (what the state file holds)."""
    return RolloutSpec(route=doc["route"], candidate=doc["candidate"],
                       steps=tuple(Step(**s) for s in doc["steps"]), gate=Gate(**doc["gate"]),
                       threshold=int(doc["threshold"]),
                       webhooks=tuple(Webhook(**w) for w in doc.get("webhooks", ())),
                       reason=str(doc.get("reason", "")))


def _duration(at: str, value: Any) -> float:
    try:
        return parse_duration(str(value))
    except ValueError as exc:
        raise SpecError(f"{at}: {exc}") from None


def _int(at: str, value: Any, low: int, high: int | None = None) -> int:
    try:
        n = int(str(value).rstrip("%"))
    except ValueError:
        raise SpecError(f"{at}: {value!r} is not a whole number") from None
    if n < low or (high is not None and n > high):
        raise SpecError(f"{at}: {n} is out of range {low}..{high if high is not None else '∞'}")
    return n


def parse_step(at: str, item: Any, *, interval: float) -> Step:
    """One step of a YAML spec: `{setWeight: 10}`, `{pause: {duration: 1m}}`, `{pause: {}}`,
    `{analysis: {interval: 30s, checks: 2}}`, `{approval: {}}`."""
    if not isinstance(item, dict) or len(item) != 1:
        raise SpecError(f"{at}: give one step as a one-key map, e.g. `- setWeight: 10` "
                        f"(kinds: {', '.join(STEP_KINDS)})")
    ((kind, body),) = item.items()
    if kind in ("setHeaderRoute", "setMirrorRoute", "shadow"):
        raise SpecError(f"{at}: {kind} is not supported: the router's admin API changes weights only; "
                        "put header overrides and shadows in routes.yaml (`override:`, `shadow:`)")
    if kind not in STEP_KINDS:
        raise SpecError(f"{at}: unknown step {kind!r}; use one of {', '.join(STEP_KINDS)}")
    if kind == "setWeight":
        return Step(kind=kind, weight=_int(f"{at}.setWeight", body, 0, 100))
    body = body or {}
    if not isinstance(body, dict):
        raise SpecError(f"{at}.{kind}: give a map (e.g. {{duration: 1m}}) or {{}}")
    unknown = set(body) - {"pause": {"duration"}, "analysis": {"interval", "checks", "max_wait"},
                           "approval": set()}[kind]
    if unknown:
        raise SpecError(f"{at}.{kind}: unknown key(s) {', '.join(sorted(unknown))}")
    if kind == "pause":
        d = body.get("duration")
        return Step(kind=kind, duration=_duration(f"{at}.pause.duration", d) if d is not None else None)
    if kind == "analysis":
        iv = _duration(f"{at}.analysis.interval", body["interval"]) if "interval" in body else interval
        if iv <= 0:
            raise SpecError(f"{at}.analysis.interval: give a positive duration, e.g. 30s")
        mw = _duration(f"{at}.analysis.max_wait", body["max_wait"]) if "max_wait" in body else None
        if mw is not None and mw < iv:
            raise SpecError(f"{at}.analysis.max_wait {mw:g}s is shorter than its interval {iv:g}s")
        return Step(kind=kind, interval=iv, checks=_int(f"{at}.analysis.checks", body.get("checks", 1), 1),
                    max_wait=mw)
    return Step(kind=kind)


def steps_from_flag(text: str, *, interval: float) -> tuple[Step, ...]:
    """`10,50,approval,100` → setWeight 10, analysis, setWeight 50, analysis, approval, ..."""
    out: list[Step] = []
    last = -1
    for token in (t.strip() for t in text.split(",")):
        if not token:
            continue
        if token in ("pause", "approval"):
            out.append(Step(kind=token))
        elif token.startswith("pause:"):
            out.append(Step(kind="pause", duration=_duration(f"--steps {token}", token[6:])))
        else:
            w = _int(f"--steps {token}", token, 1, 100)
            if w <= last:
                raise SpecError(f"--steps {text!r}: weights must increase")
            last = w
            out.extend([Step(kind="setWeight", weight=w), Step(kind="analysis", interval=interval)])
    if not out:
        raise SpecError("--steps: give weights like 10,50,100 (add `approval` or `pause:1m` between)")
    return tuple(out)


def gate_from(doc: dict[str, Any], at: str = "gate") -> tuple[Gate, int]:
    """(Gate, threshold) from a YAML map or the command line's values (human units allowed)."""
    known = {"max_error_rate", "max_p99_ratio", "max_p99", "min_requests", "p99_floor", "threshold"}
    unknown = set(doc) - known
    if unknown:
        raise SpecError(f"{at}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    kw: dict[str, Any] = {}
    try:
        if doc.get("max_error_rate") is not None:
            kw["max_error_rate"] = parse_rate(str(doc["max_error_rate"]))
        if doc.get("max_p99_ratio") is not None:
            kw["max_p99_ratio"] = float(doc["max_p99_ratio"])
        if doc.get("max_p99") is not None:
            kw["max_p99_ms"] = parse_duration(str(doc["max_p99"])) * 1000
        if doc.get("p99_floor") is not None:
            kw["p99_floor_ms"] = parse_duration(str(doc["p99_floor"])) * 1000
        if doc.get("min_requests") is not None:
            kw["min_requests"] = _int(f"{at}.min_requests", doc["min_requests"], 1)
        return Gate(**kw), _int(f"{at}.threshold", doc.get("threshold", 2), 1)
    except ValueError as exc:
        raise SpecError(f"{at}: {exc}") from None


def from_yaml_doc(doc: Any, *, source: str = "spec") -> RolloutSpec:
    """A spec file's document → RolloutSpec; every error names `source` and the key."""
    if not isinstance(doc, dict):
        raise SpecError(f"{source}: give a map with route, to and steps")
    unknown = set(doc) - {"route", "to", "reason", "gate", "webhooks", "steps", "interval"}
    if unknown:
        raise SpecError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}")
    for key in ("route", "to", "steps"):
        if key not in doc:
            raise SpecError(f"{source}: `{key}` is missing")
    interval = _duration(f"{source}: interval", doc.get("interval", "30s"))
    if not isinstance(doc["steps"], list):
        raise SpecError(f"{source}: steps: give a list, e.g. [{{setWeight: 10}}, {{analysis: {{}}}}]")
    steps = tuple(parse_step(f"{source}: steps[{i}]", s, interval=interval) for i, s in enumerate(doc["steps"]))
    gate, threshold = gate_from(doc.get("gate") or {}, f"{source}: gate")
    hooks = []
    for i, h in enumerate(doc.get("webhooks") or []):
        at = f"{source}: webhooks[{i}]"
        if not isinstance(h, dict) or "url" not in h:
            raise SpecError(f"{at}: give {{name, url, when: pre|post, timeout}}")
        when = str(h.get("when", "pre"))
        if when not in WHEN:
            raise SpecError(f"{at}.when: {when!r}; use pre (before each analysis) or post (after it passed)")
        url = str(h["url"])
        if not url.startswith(("http://", "https://")):
            raise SpecError(f"{at}.url: {url!r} is not an http(s) URL")
        hooks.append(Webhook(name=str(h.get("name", f"hook{i}")), url=url, when=when,
                             timeout=_duration(f"{at}.timeout", h.get("timeout", "5s"))))
    try:
        return RolloutSpec(route=str(doc["route"]), candidate=str(doc["to"]), steps=steps, gate=gate,
                           threshold=threshold, webhooks=tuple(hooks), reason=str(doc.get("reason", "")))
    except SpecError as exc:
        raise SpecError(f"{source}: {exc}") from None
