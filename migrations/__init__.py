"""The seven migration steps as data: what each changes, why, how it is checked, how to undo it.

One YAML file per step (`01-map-boundaries.yaml` … `07-deprecate.yaml`) beside this module.
`load_steps()` reads and validates them all before anything runs; `walkthrough/` runs them.
A step file holds:

    step: 3                      # its number, the same as the file's prefix
    title: Extract the catalog   # one line
    goal: ...                    # what is true after it
    why: ...                     # the teaching text: this shop's tangles (T-ids, monolith/TANGLES.md)
    tangles: [T10, T12]          # ids that exist in monolith/TANGLES.md
    changes: {routes: .., streams: .., ownership: .., code: ..}
    act: {auto: .., yourself: ..}    # what the tool does; the command to do it by hand
    checks: [{name: cdc_caught_up, params: {stream: catalog, max_lag_ms: 2000}}]
    undo: ...

Check names and their parameters are the vocabulary in `CHECKS`; an error names the file,
the key path and the fix (`MigrationError`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
TANGLES = HERE.parent / "monolith" / "TANGLES.md"
FILE_NAME = re.compile(r"^(\d\d)-[a-z0-9-]+\.yaml$")
CHANGE_KEYS = ("routes", "streams", "ownership", "code")
TEXT_KEYS = ("title", "goal", "why", "undo")
KEYS = ("step", *TEXT_KEYS, "tangles", "changes", "act", "checks")

# check name → {parameter: (type, required)}; the walkthrough implements exactly these
CHECKS: dict[str, dict[str, tuple[type | tuple[type, ...], bool]]] = {
    "map_matches_declared": {"settings": (str, True), "contexts": (dict, True), "shared_writes": (list, False),
                             "tangles": (list, False)},
    "golden_path_identical": {"paths": (list, True)},
    "latency_within_budget": {"path": (str, True), "samples": (int, True), "max_added_ms": ((int, float), True)},
    "cdc_caught_up": {"stream": (str, True), "max_lag_ms": ((int, float), True)},
    "contract_tests_live": {"contract": (str, True)},
    "shadow_within_noise": {"route": (str, True), "min_compared": (int, True),
                            "max_net_diff_rate": ((int, float), True)},
    "write_owner": {"group": (str, True), "owner": (str, True)},
    "parity_both_ways": {"streams": (list, True)},
    "trace_crosses": {"services": (list, True)},
    "metrics_per_backend": {"route": (str, True), "backends": (list, True)},
    "canary_rolled_back": {"route": (str, True), "fail_rate": ((int, float), True)},
    "canary_promoted": {"route": (str, True), "candidate": (str, True)},
    "observed_split": {"route": (str, True), "backend": (str, True), "min_share": ((int, float), True),
                       "seconds": ((int, float), True)},
    "zero_traffic_window": {"route": (str, True), "backend": (str, True), "seconds": ((int, float), True)},
    "monolith_writes_retired": {"path": (str, True), "method": (str, True), "status": (int, True)},
    "import_contract": {"config": (str, True)},
    "route_cleaned": {"route": (str, True), "retired": (str, True)},
}


KINDS = {str: "a text", int: "a whole number", (int, float): "a number", list: "a list", dict: "a mapping"}


class MigrationError(ValueError):
    """A step file that cannot be run; the message names the file, the key and the fix."""


@dataclass(frozen=True, kw_only=True)
class Check:
    name: str
    params: Mapping[str, Any]


@dataclass(frozen=True, kw_only=True)
class Step:
    number: int
    slug: str  # the file name without .yaml: 03-extract-catalog
    title: str
    goal: str
    why: str
    tangles: tuple[str, ...]
    changes: Mapping[str, str]
    act_auto: str
    act_yourself: str
    checks: tuple[Check, ...]
    undo: str
    path: Path


def known_tangles(path: Path = TANGLES) -> set[str]:
    """The ids in the first column of TANGLES.md's table (T1, T4a, ...)."""
    return set(re.findall(r"^\| (T\d+[a-z]?) \|", path.read_text(), flags=re.MULTILINE))


def _fail(path: Path, key: str, problem: str, fix: str) -> MigrationError:
    return MigrationError(f"{path.name}: {key}: {problem}; {fix}")


def _text(doc: Mapping[str, Any], key: str, path: Path, where: str | None = None) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, where or key, f"{'missing' if value is None else repr(value)} is not a text",
                    f"write a short text under `{key}:`")
    return value.strip()


def _check(raw: Any, i: int, path: Path) -> Check:
    where = f"checks[{i}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise _fail(path, where, "a check is a mapping with a `name`", "write `- name: <check>` with `params:`")
    name = raw["name"]
    if name not in CHECKS:
        raise _fail(path, f"{where}.name", f"unknown check {name!r}",
                    f"use one of {', '.join(sorted(CHECKS))}")
    extra = set(raw) - {"name", "params"}
    if extra:
        raise _fail(path, f"{where}", f"unknown key(s) {sorted(extra)}", "a check has only `name` and `params`")
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise _fail(path, f"{where}.params", "is not a mapping", "write `params: {key: value}`")
    schema = CHECKS[name]
    for key in params:
        if key not in schema:
            raise _fail(path, f"{where}.params.{key}", f"{name} has no parameter {key!r}",
                        f"its parameters are {', '.join(schema)}")
    for key, (kind, required) in schema.items():
        if key not in params:
            if required:
                raise _fail(path, f"{where}.params.{key}", "missing", f"{name} needs `{key}`")
            continue
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            what = KINDS.get(kind, "value")  # type: ignore[call-overload]
            raise _fail(path, f"{where}.params.{key}", f"{value!r} is not {what}", f"give {what}")
    return Check(name=name, params=dict(params))


def load_step(path: Path, *, tangles: set[str] | None = None) -> Step:
    """One step file, validated whole."""
    match = FILE_NAME.match(path.name)
    if match is None:
        raise MigrationError(f"{path.name}: the file name must be NN-words.yaml (e.g. 03-extract-catalog.yaml)")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise MigrationError(f"{path.name}: not valid YAML ({exc}); fix the syntax at the line shown") from None
    if not isinstance(doc, dict):
        raise MigrationError(f"{path.name}: the file is not a mapping; start with `step: N`")
    unknown = set(doc) - set(KEYS)
    if unknown:
        raise _fail(path, str(sorted(unknown)[0]), "unknown key", f"a step has only {', '.join(KEYS)}")
    number = doc.get("step")
    if isinstance(number, bool) or not isinstance(number, int) or number != int(match.group(1)):
        raise _fail(path, "step", f"{number!r} does not match the file name's number {int(match.group(1))}",
                    "give the same number in both")
    texts = {key: _text(doc, key, path) for key in TEXT_KEYS}
    raw_tangles = doc.get("tangles")
    if not isinstance(raw_tangles, list) or not raw_tangles or not all(isinstance(t, str) for t in raw_tangles):
        raise _fail(path, "tangles", f"{raw_tangles!r} is not a list of ids",
                    "list the T-ids of monolith/TANGLES.md the step is about, e.g. [T4a, T7]")
    known = known_tangles() if tangles is None else tangles
    for tid in raw_tangles:
        if tid not in known:
            raise _fail(path, "tangles", f"{tid!r} is not in monolith/TANGLES.md",
                        f"use one of {', '.join(sorted(known, key=lambda t: (len(t), t)))}")
    changes = doc.get("changes")
    if not isinstance(changes, dict):
        raise _fail(path, "changes", "missing or not a mapping", f"say what changes under {', '.join(CHANGE_KEYS)}")
    for key in CHANGE_KEYS:
        _text(changes, key, path, f"changes.{key}")
    if set(changes) - set(CHANGE_KEYS):
        raise _fail(path, f"changes.{sorted(set(changes) - set(CHANGE_KEYS))[0]}", "unknown key",
                    f"changes has only {', '.join(CHANGE_KEYS)}")
    act = doc.get("act")
    if not isinstance(act, dict):
        raise _fail(path, "act", "missing or not a mapping", "give `auto:` (what the tool does) and `yourself:`")
    checks = doc.get("checks")
    if not isinstance(checks, list) or not checks:
        raise _fail(path, "checks", "missing or empty", "a step is checked: list at least one check")
    return Step(number=number, slug=path.stem, tangles=tuple(raw_tangles),
                changes={k: str(changes[k]).strip() for k in CHANGE_KEYS},
                act_auto=_text(act, "auto", path, "act.auto"), act_yourself=_text(act, "yourself", path, "act.yourself"),
                checks=tuple(_check(c, i, path) for i, c in enumerate(checks)), path=path, **texts)


def load_steps(folder: Path = HERE) -> tuple[Step, ...]:
    """Every step file in `folder`, numbered 1..N without a gap."""
    tangles = known_tangles()
    steps = tuple(load_step(p, tangles=tangles) for p in sorted(folder.glob("*.yaml")))
    numbers = [s.number for s in steps]
    if numbers != list(range(1, len(steps) + 1)):
        raise MigrationError(f"{folder}: step numbers {numbers} are not 1..{len(steps)}; "
                             "number the files 01-, 02-, ... without a gap or a repeat")
    return steps
