"""Compare two HTTP responses the Diffy way: status, chosen headers, JSON bodies by path.

Place in the flow: `shadow` calls `compare` for primary vs candidate and for primary vs a
second primary call (the noise). Paths read like `results[3].updated_at`; rules use `[*]`
for any index (`results[*].updated_at`). Ignored paths are removed before comparing; lists
at `unordered` paths compare as multisets.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_INDEX = re.compile(r"\[\d+\]")


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return _NOT_JSON


_NOT_JSON = object()


def general(path: str) -> str:
    """`results[3].id` → `results[*].id` (the form rules are written in)."""
    return _INDEX.sub("[*]", path)


def compare(a: Response, b: Response, *, headers: tuple[str, ...] = (),
            ignore: tuple[str, ...] = (), unordered: tuple[str, ...] = ()) -> list[str]:
    """Paths where two responses differ ([] when equal under the rules)."""
    diffs = []
    if a.status != b.status:
        diffs.append("status")
    for name in headers:
        if a.headers.get(name) != b.headers.get(name):
            diffs.append(f"header:{name}")
    ja, jb = a.json(), b.json()
    if ja is _NOT_JSON or jb is _NOT_JSON:
        if a.body != b.body:
            diffs.append("body")
        return diffs
    rules = (frozenset(ignore), frozenset(unordered))
    _walk(_strip(ja, "", rules[0]), _strip(jb, "", rules[0]), "", rules[1], diffs)
    return diffs


def _strip(value: Any, path: str, ignore: frozenset[str]) -> Any:
    if not ignore:
        return value
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            p = f"{path}.{k}" if path else str(k)
            if p in ignore or general(p) in ignore:
                continue
            out[k] = _strip(v, p, ignore)
        return out
    if isinstance(value, list):
        return [_strip(v, f"{path}[{i}]", ignore) for i, v in enumerate(value)]
    return value


def _walk(a: Any, b: Any, path: str, unordered: frozenset[str], diffs: list[str]) -> None:
    where = path or "$"
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            p = f"{path}.{k}" if path else str(k)
            if k not in a or k not in b:
                diffs.append(p)
            else:
                _walk(a[k], b[k], p, unordered, diffs)
    elif isinstance(a, list) and isinstance(b, list):
        if path and general(path) in unordered:
            if sorted(map(_canon, a)) != sorted(map(_canon, b)):
                diffs.append(where)
        elif len(a) != len(b):
            diffs.append(where)
        else:
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                _walk(x, y, f"{path}[{i}]", unordered, diffs)
    elif a != b or type(a) is not type(b):
        diffs.append(where)


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
