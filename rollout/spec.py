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

Header routes and mirrors, as Argo's managed routes (the candidate is always the target):

      - setHeaderRoute:                # testers with `X-Canary: yes` see the candidate now
          name: testers
          match: [{headerName: X-Canary, headerValue: {exact: "yes"}}]   # or prefix, regex
      - setMirrorRoute:                # shadow 50% of GETs to the candidate, compared
          name: compare
          percentage: 50
          match: [{method: {exact: GET}}]
      - setHeaderRoute: {name: testers}     # no match: remove it

The controller sets them through the router's admin API (`header_routes:` and `shadow:` of the
route) and removes every one still set when the rollout ends: promoted, aborted, rolled back.
A route has one shadow, so one mirror at a time; the mirror covers the route's whole path.
Everything is validated here, before any weight moves; errors name the key path and the fix.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from rollout.gate import Gate, parse_duration, parse_rate

STEP_KINDS = ("setWeight", "pause", "analysis", "approval", "setHeaderRoute", "setMirrorRoute")
MATCH_KINDS = ("exact", "prefix", "regex")
WHEN = ("pre", "post")


class SpecError(ValueError):
    """A spec that cannot run; the message names the key and says what to give."""


@dataclass(frozen=True, kw_only=True)
class Step:
    kind: str  # setWeight | pause | analysis | approval | setHeaderRoute | setMirrorRoute
    weight: int | None = None  # setWeight
    duration: float | None = None  # pause (None: until promoted)
    interval: float = 30.0  # analysis: length of one check's window
    checks: int = 1  # analysis: passing checks needed
    max_wait: float | None = None  # analysis: how long a window may grow for min requests
    name: str | None = None  # setHeaderRoute, setMirrorRoute: the managed route's name
    header: str | None = None  # setHeaderRoute: the header (None: remove the route)
    match: str | None = None  # setHeaderRoute: exact | prefix | regex
    value: str | None = None  # setHeaderRoute: what the header must be, start with, match
    percent: float | None = None  # setMirrorRoute: share mirrored (None: remove the mirror)
    methods: tuple[str, ...] | None = None  # setMirrorRoute: methods mirrored

    @property
    def removes(self) -> bool:
        """A setHeaderRoute/setMirrorRoute without a match: it removes the route `name`."""
        return (self.kind == "setHeaderRoute" and self.header is None) or \
            (self.kind == "setMirrorRoute" and self.percent is None)

    def label(self) -> str:
        if self.kind in ("setHeaderRoute", "setMirrorRoute") and self.removes:
            return f"{self.kind} {self.name} (remove)"
        if self.kind == "setHeaderRoute":
            return f"setHeaderRoute {self.name} ({self.header} {self.match} {self.value!r})"
        if self.kind == "setMirrorRoute":
            return f"setMirrorRoute {self.name} ({self.percent:g}% of {', '.join(self.methods or ())})"
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
        headers: set[str] = set()
        mirror: str | None = None
        for i, s in enumerate(self.steps):
            if s.kind == "setHeaderRoute" and s.removes and s.name not in headers:
                raise SpecError(f"steps[{i}]: setHeaderRoute {s.name} removes a header route no earlier "
                                "step set — fix: name one set before, or give it a match")
            if s.kind == "setHeaderRoute":
                (headers.discard if s.removes else headers.add)(str(s.name))
            if s.kind == "setMirrorRoute" and s.removes and s.name != mirror:
                raise SpecError(f"steps[{i}]: setMirrorRoute {s.name} removes a mirror no earlier step set "
                                "— fix: name the one set before, or give it a percentage and a match")
            if s.kind == "setMirrorRoute" and not s.removes and mirror not in (None, s.name):
                raise SpecError(f"steps[{i}]: setMirrorRoute {s.name} while mirror {mirror} is set: a route "
                                f"has one shadow — fix: remove {mirror} first (`- setMirrorRoute: {{name: "
                                f"{mirror}}}`) or reuse its name")
            if s.kind == "setMirrorRoute":
                mirror = None if s.removes else s.name

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["steps"] = [{k: v for k, v in s.items() if v is not None} for s in doc["steps"]]
        return doc


def from_json(doc: dict[str, Any]) -> RolloutSpec:
    """The inverse of `to_json` (what the state file holds)."""
    return RolloutSpec(route=doc["route"], candidate=doc["candidate"],
                       steps=tuple(_step(s) for s in doc["steps"]), gate=Gate(**doc["gate"]),
                       threshold=int(doc["threshold"]),
                       webhooks=tuple(Webhook(**w) for w in doc.get("webhooks", ())),
                       reason=str(doc.get("reason", "")))


def _step(doc: dict[str, Any]) -> Step:
    if doc.get("methods") is not None:
        doc = {**doc, "methods": tuple(doc["methods"])}
    return Step(**doc)


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
    if kind == "shadow":
        raise SpecError(f"{at}: unknown step shadow; use setMirrorRoute (Argo's name), e.g. "
                        "`- setMirrorRoute: {name: compare, percentage: 50, match: [{method: {exact: GET}}]}`")
    if kind == "setHeaderRoute":
        return _header_step(f"{at}.setHeaderRoute", body)
    if kind == "setMirrorRoute":
        return _mirror_step(f"{at}.setMirrorRoute", body)
    if kind not in STEP_KINDS:
        raise SpecError(f"{at}: unknown step {kind!r}; use one of {', '.join(STEP_KINDS)}")
    if kind == "setWeight":
        return Step(kind=kind, weight=_int(f"{at}.setWeight", body, 0, 100))
    body = body or {}
    if not isinstance(body, dict):
        raise SpecError(f"{at}.{kind}: give a map (e.g. {{duration: 1m}}) or {{}}")
    allowed = {"pause": {"duration"}, "analysis": {"interval", "checks", "max_wait"}, "approval": set()}[kind]
    unknown = set(body) - allowed
    if unknown:
        raise SpecError(f"{at}.{kind}: unknown key(s) {', '.join(sorted(unknown))}; "
                        f"known: {', '.join(sorted(allowed)) or 'none'}")
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


_ROUTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_HEADER = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_METHOD = re.compile(r"^[A-Z]+$")


def _managed(at: str, body: Any, keys: set[str], example: str) -> tuple[dict[str, Any], str]:
    """The map of a setHeaderRoute/setMirrorRoute step and its checked `name`."""
    if not isinstance(body, dict):
        raise SpecError(f"{at}: give a map, e.g. {example}")
    unknown = set(body) - keys
    if unknown:
        raise SpecError(f"{at}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(keys))})")
    name = str(body.get("name", ""))
    if not _ROUTE_NAME.match(name):
        raise SpecError(f"{at}.name: {name!r}: give a name of letters, digits, '.', '_', '-' (the route "
                        "is removed by it, and at the end of the rollout)")
    return body, name


def _header_step(at: str, body: Any) -> Step:
    """`{name, match: [{headerName, headerValue: {exact|prefix|regex: value}}]}`; no match: remove."""
    example = '{name: testers, match: [{headerName: X-Canary, headerValue: {exact: "yes"}}]}'
    body, name = _managed(at, body, {"name", "match"}, example)
    if body.get("match") is None:
        return Step(kind="setHeaderRoute", name=name)
    match = body["match"]
    if not isinstance(match, list) or len(match) != 1 or not isinstance(match[0], dict):
        raise SpecError(f"{at}.match: give one header match, e.g. {example} (the router matches one "
                        "header per header route: another header is another setHeaderRoute step)")
    m = match[0]
    if set(m) - {"headerName", "headerValue"}:
        raise SpecError(f"{at}.match[0]: unknown key(s) {', '.join(sorted(set(m) - {'headerName', 'headerValue'}))}; "
                        "give headerName and headerValue")
    header = str(m.get("headerName", ""))
    if not _HEADER.match(header):
        raise SpecError(f"{at}.match[0].headerName: {header!r} is not a header name; write e.g. X-Canary")
    value = m.get("headerValue")
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in MATCH_KINDS:
        raise SpecError(f"{at}.match[0].headerValue: give one of exact, prefix, regex, e.g. {{exact: \"yes\"}}")
    ((how, text),) = value.items()
    if how == "regex":
        try:
            re.compile(str(text))
        except re.error as exc:
            raise SpecError(f"{at}.match[0].headerValue.regex: {text!r} is not a regular expression "
                            f"({exc}); it must match the whole value") from None
    return Step(kind="setHeaderRoute", name=name, header=header, match=how, value=str(text))


def _mirror_step(at: str, body: Any) -> Step:
    """`{name, percentage, match: [{method: {exact: GET}}, ...]}`; no match: remove."""
    example = "{name: compare, percentage: 50, match: [{method: {exact: GET}}]}"
    body, name = _managed(at, body, {"name", "match", "percentage"}, example)
    if body.get("match") is None:
        if body.get("percentage") is not None:
            raise SpecError(f"{at}: a percentage without a match; give match (what to mirror), e.g. "
                            f"{example}, or only the name to remove the mirror")
        return Step(kind="setMirrorRoute", name=name)
    match = body["match"]
    if not isinstance(match, list) or not match:
        raise SpecError(f"{at}.match: give a list of methods, e.g. {example}")
    methods = []
    for i, m in enumerate(match):
        if not isinstance(m, dict) or set(m) != {"method"}:
            raise SpecError(f"{at}.match[{i}]: give {{method: {{exact: GET}}}} only: the mirror covers the "
                            "route's whole path (match path and headers in routes.yaml instead)")
        method = m["method"].get("exact") if isinstance(m["method"], dict) and len(m["method"]) == 1 else None
        if not isinstance(method, str) or not _METHOD.match(method):
            raise SpecError(f"{at}.match[{i}].method: give {{exact: GET}} (an upper-case method name)")
        methods.append(method)
    try:
        percent = float(str(body.get("percentage", 100)).rstrip("%"))
    except ValueError:
        percent = -1.0
    if not 0 < percent <= 100:
        raise SpecError(f"{at}.percentage: {body.get('percentage')!r}: give a share above 0 up to 100")
    return Step(kind="setMirrorRoute", name=name, percent=percent, methods=tuple(dict.fromkeys(methods)))


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
    known = ("route", "to", "reason", "gate", "webhooks", "steps", "interval")
    unknown = set(doc) - set(known)
    if unknown:
        hint = " (the candidate backend is `to:`)" if unknown & {"candidate", "backend"} else ""
        raise SpecError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(known)}{hint}")
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
