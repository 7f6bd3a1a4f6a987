"""Redaction of kept shadow pairs: credentials and configured fields never reach `status`.

Place in the flow: `shadow` keeps the last differing pairs per route for people to inspect
through `/_strangler/status` and writes them into the workers' metrics files. Responses
may echo the request (debug endpoints, error pages), so before a pair is kept every value
under a redacted name is replaced: JSON object keys, `[name, value]` pairs, `{"name": ..,
"value": ..}` objects, `Name: value` lines and `name=value` in text and query strings.
Names match in any letter case; `Cookie`, `Authorization`, `Set-Cookie` and
`Proxy-Authorization` always (`router.config.REDACT_ALWAYS`), plus the shadow's `redact:`.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

MARK = "[redacted]"
BODY_LIMIT = 2048  # characters of each body kept in a pair
PARSE_LIMIT = 256 * 1024  # larger bodies are not parsed as JSON for a sample


def body(raw: bytes, names: frozenset[str]) -> str:
    """A response body for a kept pair: redacted first, then cut to `BODY_LIMIT`."""
    if len(raw) > PARSE_LIMIT:  # too big to walk for a sample: redact the text it starts with
        return text_values(raw[:2 * BODY_LIMIT].decode("utf-8", "replace"), names)[:BODY_LIMIT]
    text = raw.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        return text_values(text, names)[:BODY_LIMIT]
    return json.dumps(value(data, names), ensure_ascii=False)[:BODY_LIMIT]


def headers(items: dict[str, str], names: frozenset[str]) -> dict[str, str]:
    return {k: MARK if k.lower() in names else v for k, v in items.items()}


def target(path: str, names: frozenset[str]) -> str:
    """`/a?token=x&b=1` → `/a?token=[redacted]&b=1` when `token` is a redacted name."""
    base, sep, query = path.partition("?")
    if not sep:
        return path
    parts = []
    for part in query.split("&"):
        key, eq, _ = part.partition("=")
        parts.append(f"{key}={MARK}" if eq and key.lower() in names else part)
    return base + "?" + "&".join(parts)


def value(data: Any, names: frozenset[str]) -> Any:
    if isinstance(data, dict):
        named = data.get("name")
        if isinstance(named, str) and named.lower() in names and "value" in data:
            return {**data, "value": MARK}
        return {k: MARK if isinstance(k, str) and k.lower() in names else value(v, names)
                for k, v in data.items()}
    if isinstance(data, list):
        if len(data) == 2 and isinstance(data[0], str) and data[0].lower() in names:
            return [data[0], MARK]
        return [value(v, names) for v in data]
    if isinstance(data, str):
        return text_values(data, names)
    return data


def text_values(text: str, names: frozenset[str]) -> str:
    return _pattern(names).sub(lambda m: (m.group(1) or m.group(2)) + MARK, text)


@lru_cache(maxsize=64)
def _pattern(names: frozenset[str]) -> re.Pattern[str]:
    # `Cookie: a=b; c=d` (to the end of the line) or `token=abc` (to a separator).
    alternatives = "|".join(sorted(map(re.escape, names), key=len, reverse=True))
    return re.compile(rf"(?i)((?<![\w-])(?:{alternatives})\s*:\s*)[^\r\n]*"
                      rf"|((?<![\w-])(?:{alternatives})=)[^&\s;,\"']*")
