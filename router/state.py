"""The running state built from one `Config`: route table, and per upstream its endpoints'
pools, breakers and health checks (`router.targets`).

Place in the flow: a request reads `router.snapshot` once when it starts and uses only that
object until it ends, so a reload (which swaps in a new `Snapshot` with one assignment)
never changes the config under an in-flight request. The target of an endpoint whose
address and settings are unchanged carries over into the new snapshot (pool, breaker,
health and its checker); targets that went away are retired (their in-flight exchanges
finish, then their pools close; their checks stop).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from forwarding import ProxyTrust
from router import health
from router.breaker import Breaker
from router.client import Pool
from router.config import Config, Endpoint, Upstream
from router.match import RouteTable
from router.targets import HealthyPools, Target, TargetGroup


@dataclass(frozen=True)
class Snapshot:
    config: Config
    table: RouteTable
    groups: dict[str, TargetGroup]
    trust: ProxyTrust = field(default_factory=lambda: ProxyTrust(()))  # trusted_proxies

    @property
    def pools(self) -> Mapping[str, Pool]:
        """A healthy endpoint's pool per upstream name (side traffic: whoami, shadow)."""
        return HealthyPools(self.groups)

    def targets(self) -> Iterator[Target]:
        for group in self.groups.values():
            yield from group.targets


def build_snapshot(config: Config, previous: Snapshot | None = None) -> Snapshot:
    """A snapshot for `config`, reusing what `previous` had for unchanged endpoints.

    Must run inside the event loop (pools and health checks bind to it).
    """
    old: dict[tuple[str, str], Target] = {}  # (upstream, host:port): whatever its key was
    old_configs: dict[str, Upstream] = {}
    if previous is not None:
        old = {(name, t.endpoint.authority): t for name, g in previous.groups.items() for t in g.targets}
        old_configs = dict(previous.config.upstreams)
    groups: dict[str, TargetGroup] = {}
    for name, up in config.upstreams.items():
        endpoints = up.endpoints or (Endpoint(url=up.url, host=up.host, port=up.port),)
        targets = []
        for endpoint in endpoints:
            key = name if len(endpoints) == 1 else f"{name}@{endpoint.authority}"
            # Found by address, not key: a url: that becomes a list (key "c" → "c@host:port")
            # keeps its endpoint's pool, breaker and health, under its new name.
            target = _carried(old.get((name, endpoint.authority)), old_configs.get(name), up, endpoint)
            if target is None:
                target = Target(key, endpoint, _pool(key, up, endpoint), Breaker(up.breaker))
            else:
                target.key = target.pool.name = key
            if up.health is not None:
                if target.checker is None:  # a carried target keeps its running check
                    health.start(target, up.health, _pool(key, up, endpoint, size=1))
            else:
                health.stop(target)
                target.healthy = True
            targets.append(target)
        groups[name] = TargetGroup(up, targets)
    kept = {id(t) for g in groups.values() for t in g.targets}
    for target in old.values():
        if id(target) not in kept:
            health.stop(target)
            target.pool.close()
    return Snapshot(config=config, table=RouteTable(config.routes), groups=groups,
                    trust=ProxyTrust(config.trusted_proxies))


def _carried(target: Target | None, was: Upstream | None, up: Upstream,
             endpoint: Endpoint) -> Target | None:
    """The old target, updated, when its endpoint's pool can stay; else None."""
    if target is None or was is None:
        return None
    pool = target.pool
    if (pool.host, pool.port, pool.size, was.tls) != (endpoint.host, endpoint.port, up.pool_size, up.tls):
        health.stop(target)
        pool.close()
        return None
    pool.max_connections, pool.idle_timeout = up.max_connections, up.idle_timeout
    pool.tls = up.tls.context if up.tls else None  # files read again: new connections use rotated certificates
    if target.breaker.config != up.breaker:
        target.breaker = Breaker(up.breaker)
    if was.health != up.health:
        health.stop(target)  # restarted with the new settings by the caller
    return target


def _pool(key: str, up: Upstream, endpoint: Endpoint, *, size: int | None = None) -> Pool:
    tls = up.tls.context if up.tls else None
    server_name = None
    if up.tls is not None:
        # A listed endpoint is checked against its own name unless server_name was set.
        server_name = endpoint.host if up.tls.server_name == up.host else up.tls.server_name
    return Pool(name=key, host=endpoint.host, port=endpoint.port,
                size=up.pool_size if size is None else size,
                max_connections=up.max_connections if size is None else size + 1,
                idle_timeout=up.idle_timeout, tls=tls, server_name=server_name)
