"""Header routes: a request whose header matches goes to one named backend of its route.

Place in the flow: after matching, before cohorts and weights (`proxy._choose`): the first
header route of the route that matches wins. It is Argo Rollouts' `setHeaderRoute` (testers
with `X-Canary: yes` see the candidate at any weight) and what a rollout's step adds and
removes through the admin API; they may be written by hand in routes.yaml too:

    header_routes:
      - {name: testers, header: X-Canary, exact: "yes", to: catalog}
      - {name: beta, header: X-Plan, prefix: beta-, to: catalog}
      - {name: staff, header: X-User, regex: "^[a-z]+@shop\\.example$", to: catalog}

Exactly one of `exact`, `prefix`, `regex` (a Python `re`, searched with `fullmatch`); `to` is
one of the route's backends (its weight may be 0). Writes still follow ownership: the checks
in router/config.py refuse a header route that would send writes to a side not owning them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

KINDS = ("exact", "prefix", "regex")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


@dataclass(frozen=True, kw_only=True)
class HeaderRoute:
    name: str
    header: str  # lower case
    kind: str  # exact | prefix | regex
    value: str
    to: str
    pattern: re.Pattern[str] | None = None  # compiled once, for regex

    def matches(self, value: str | None) -> bool:
        if value is None:
            return False
        if self.kind == "exact":
            return value == self.value
        if self.kind == "prefix":
            return value.startswith(self.value)
        assert self.pattern is not None
        return self.pattern.fullmatch(value) is not None

    def to_doc(self) -> dict[str, str]:
        """The routes.yaml form (what the admin API writes)."""
        return {"name": self.name, "header": self.header, self.kind: self.value, "to": self.to}


Fail = Callable[[tuple[Any, ...], str, str], Exception]  # (key path, problem, fix) -> error


def parse(items: list[dict[str, Any]], at: tuple[Any, ...], backends: list[str],
          fail: Fail) -> tuple[HeaderRoute, ...]:
    """A route's `header_routes:` list, checked; errors name the entry and the fix."""
    out: list[HeaderRoute] = []
    for i, item in enumerate(items):
        where = at + (i,)
        name = str(item.get("name", ""))
        if not _NAME.match(name):
            raise fail(where + ("name",), f"{name!r} is not a header route name",
                       "use letters, digits, '.', '_' or '-' (up to 63), e.g. testers")
        if name in (r.name for r in out):
            raise fail(where + ("name",), f"header route {name!r} is listed twice", "give each one its own name")
        header = str(item.get("header", ""))
        if not _TOKEN.match(header):
            raise fail(where + ("header",), f"{header!r} is not a header name", "write e.g. X-Canary")
        given = [k for k in KINDS if k in item]
        if len(given) != 1:
            raise fail(where, f"header route {name} gives {', '.join(given) or 'no value'}",
                       "give exactly one of exact, prefix or regex, e.g. `exact: \"yes\"`")
        kind = given[0]
        value = str(item[kind])
        pattern = None
        if kind == "regex":
            try:
                pattern = re.compile(value)
            except re.error as exc:
                raise fail(where + ("regex",), f"{value!r} is not a regular expression ({exc})",
                           "write a Python regular expression; it must match the whole value") from None
        to = str(item.get("to", ""))
        if to not in backends:
            raise fail(where + ("to",), f"{to!r} is not a backend of this route",
                       f"use one of: {', '.join(backends)} (a weight of 0 is fine)")
        out.append(HeaderRoute(name=name, header=header.lower(), kind=kind, value=value, to=to,
                               pattern=pattern))
    return tuple(out)


def choose(routes: tuple[HeaderRoute, ...], header: Callable[[str], str | None]) -> str | None:
    """The backend of the first header route whose header (looked up by `header`) matches."""
    for r in routes:
        if r.matches(header(r.header)):
            return r.to
    return None
