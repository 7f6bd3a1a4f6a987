"""A running nginx's or HAProxy's own numbers, per route and backend, from its JSON access log.

Place in the flow: the canary gate on a data plane (`control.planecontrol`) asks `counts()`
for cumulative requests, errors (5xx) and a latency histogram per (route, backend), as the
router's status gives them. Both planes write one JSON line per request (dataplane/nginx.py's
`strangler_json` log_format, dataplane/haproxy.py's `log-format`): the route as the plane
names it (`@r<i>` / `@r<i>_safe` for nginx, `r<i>` for HAProxy: the route's place in the
matching order), the backend that answered, the status and the time. The log is read from
where the last call stopped; a line not yet complete waits for the next call, a line that is
not JSON (a server message) is counted in `unreadable` and skipped.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from router.metrics import BOUNDS_MS

_ROUTE = re.compile(r"@?r(\d+)(?:_safe)?\Z")


@dataclass
class Counts:
    """One backend of one route since the log began: `buckets[i]` requests took ≤ BOUNDS_MS[i]
    (not cumulative), the last one above every bound."""

    requests: int = 0
    errors: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS_MS) + 1))

    def cumulative(self) -> tuple[tuple[float, int], ...]:
        """(upper bound ms, cumulative count) pairs, the last bound `inf`: the router's shape."""
        out, total = [], 0
        for bound, n in zip((*BOUNDS_MS, float("inf")), self.buckets, strict=True):
            total += n
            out.append((bound, total))
        return tuple(out)


class AccessLog:
    def __init__(self, path: Path, route_names: tuple[str, ...]) -> None:
        self.path = path
        self.route_names = route_names  # in matching order: index i is `r<i>`
        self.offset = 0
        self.unreadable = 0
        self._counts: dict[tuple[str, str], Counts] = {}

    def counts(self) -> dict[tuple[str, str], Counts]:
        """(route name, backend) → Counts, including every line written so far."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return self._counts
        end = data.rfind(b"\n") + 1
        self.offset += end
        for line in data[:end].splitlines():
            self._add(line)
        return self._counts

    def _add(self, line: bytes) -> None:
        try:
            entry = json.loads(line)
            route = _ROUTE.match(str(entry["route"]))
            backend = str(entry["backend"])
            status = int(entry["status"])
            ms = float(entry["ms"]) if "ms" in entry else float(entry["s"]) * 1000.0
        except (ValueError, KeyError, TypeError):
            self.unreadable += 1
            return
        if route is None or not backend or int(route.group(1)) >= len(self.route_names):
            return  # no route matched (the plane's 404), or a route of an older file
        counts = self._counts.setdefault((self.route_names[int(route.group(1))], backend), Counts())
        counts.requests += 1
        counts.errors += status >= 500
        counts.buckets[bisect.bisect_left(BOUNDS_MS, ms)] += 1
