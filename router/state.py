"""The running state built from one `Config`: route table, connection pools, breakers.

Place in the flow: a request reads `router.snapshot` once when it starts and uses only that
object until it ends, so a reload (which swaps in a new `Snapshot` with one assignment)
never changes the config under an in-flight request. Pools and breakers of upstreams whose
address and settings are unchanged carry over into the new snapshot; pools of upstreams
that went away are retired (their in-flight exchanges finish, then they close).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from forwarding import ProxyTrust
from router.breaker import Breaker
from router.client import Pool
from router.config import Config
from router.match import RouteTable


@dataclass(frozen=True)
class Snapshot:
    config: Config
    table: RouteTable
    pools: dict[str, Pool]
    breakers: dict[str, Breaker]
    trust: ProxyTrust = field(default_factory=lambda: ProxyTrust(()))  # trusted_proxies


def build_snapshot(config: Config, previous: Snapshot | None = None) -> Snapshot:
    """A snapshot for `config`, reusing what `previous` had for unchanged upstreams.

    Must run inside the event loop (pools bind to it).
    """
    pools: dict[str, Pool] = {}
    breakers: dict[str, Breaker] = {}
    for name, up in config.upstreams.items():
        old_pool = previous.pools.get(name) if previous else None
        tls = up.tls.context if up.tls else None
        server_name = up.tls.server_name if up.tls else None
        old_tls = previous.config.upstreams[name].tls if old_pool and previous else None
        if old_pool and (old_pool.host, old_pool.port, old_pool.size, old_tls) == \
                (up.host, up.port, up.pool_size, up.tls):
            pools[name] = old_pool
            old_pool.max_connections, old_pool.idle_timeout = up.max_connections, up.idle_timeout
            old_pool.tls = tls  # the files were read again: new connections use rotated certificates
        else:
            pools[name] = Pool(name=name, host=up.host, port=up.port, size=up.pool_size,
                               max_connections=up.max_connections, idle_timeout=up.idle_timeout,
                               tls=tls, server_name=server_name)
        old_breaker = previous.breakers.get(name) if previous else None
        if old_breaker and old_breaker.config == up.breaker:
            breakers[name] = old_breaker
        else:
            breakers[name] = Breaker(up.breaker)
    if previous:
        for name, pool in previous.pools.items():
            if pools.get(name) is not pool:
                pool.close()
    return Snapshot(config=config, table=RouteTable(config.routes), pools=pools, breakers=breakers,
                    trust=ProxyTrust(config.trusted_proxies))
