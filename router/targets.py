"""An upstream's endpoints in this worker: a pool, a breaker and a health flag each.

Place in the flow: `proxy` chose an upstream (`balance`); `TargetGroup.pick` chooses which
of its endpoints gets the attempt — round-robin over the healthy ones whose breaker admits
it — and `forward` fails over to another one when the first could not take the request.
`router.health` flips `Target.healthy` from outside; the breaker does so passively.
If the checks took every endpoint out, all are tried (a check can be wrong; the request
would fail anyway).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from router.breaker import Breaker
from router.client import Pool
from router.config import Endpoint, Upstream


class Target:
    """One endpoint of an upstream (per worker)."""

    __slots__ = ("key", "endpoint", "pool", "breaker", "healthy", "authority", "checker")

    def __init__(self, key: str, endpoint: Endpoint, pool: Pool, breaker: Breaker) -> None:
        self.key = key  # the upstream's name, or name@host:port when it has several
        self.endpoint = endpoint
        self.pool = pool
        self.breaker = breaker
        self.healthy = True  # until an active check says otherwise
        self.authority = endpoint.authority.encode()  # the Host line of host_header: upstream
        self.checker: Any = None  # router.health's task while checks run

    def state(self) -> dict[str, Any]:
        state = self.breaker.snapshot()
        if self.checker is not None:
            state["healthy"] = self.healthy
        return state


class TargetGroup:
    """An upstream's targets, in the order listed."""

    __slots__ = ("upstream", "targets", "_next")

    def __init__(self, upstream: Upstream, targets: list[Target]) -> None:
        self.upstream = upstream
        self.targets = targets
        self._next = 0

    def pick(self, tried: list[Target] | None = None) -> Target | None:
        """The next target to try (its breaker admitted the request), or None."""
        targets = self.targets
        if len(targets) == 1:
            only = targets[0]
            return only if not tried and only.breaker.allow() else None
        start = self._next
        self._next = (start + 1) % len(targets)
        any_healthy = any(t.healthy for t in targets)
        for i in range(len(targets)):
            target = targets[(start + i) % len(targets)]
            if (target.healthy or not any_healthy) and (not tried or target not in tried) \
                    and target.breaker.allow():
                return target
        return None

    def untried(self, tried: list[Target]) -> bool:
        return any(t not in tried for t in self.targets)

    def any_healthy(self) -> Target:
        """A target for side traffic (whoami, shadow copies): healthy and closed if any."""
        for target in self.targets:
            if target.healthy and target.breaker.state == "closed":
                return target
        return self.targets[0]


class HealthyPools(Mapping[str, Pool]):
    """`snapshot.pools[name]`: the pool of a healthy endpoint of upstream `name` (for the
    parts that send side traffic and know nothing of endpoints)."""

    def __init__(self, groups: Mapping[str, TargetGroup]) -> None:
        self._groups = groups

    def __getitem__(self, name: str) -> Pool:
        return self._groups[name].any_healthy().pool

    def __iter__(self) -> Iterator[str]:
        return iter(self._groups)

    def __len__(self) -> int:
        return len(self._groups)
