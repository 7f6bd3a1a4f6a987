"""Active health checks: each endpoint of an upstream with `health:` is asked, every
`interval` seconds, `GET <path>`; `fall` failures in a row take it out of its group's
balance, `rise` passes put it back.

Place in the flow: beside the request path, not on it. `state.build_snapshot` starts a
checker for every new target of a checked upstream and stops those of targets a reload
dropped; `TargetGroup.pick` reads the flag. Checks use a connection of their own (not the
request pool), so a check measures a fresh path to the endpoint and never takes a slot a
request needs. Every worker checks for itself: a flag flips in the worker that saw it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

from router.client import Pool, fetch
from router.config import HealthCheck
from router.errors import UpstreamError
from router.targets import Target


def start(target: Target, check: HealthCheck, pool: Pool) -> None:
    """Begin checking `target` (idempotent); `pool` is where its checks connect."""
    if target.checker is None:
        target.checker = asyncio.get_running_loop().create_task(_run(target, check, pool))


def stop(target: Target) -> None:
    if target.checker is not None:
        target.checker.cancel()
        target.checker = None


async def probe(target: Target, check: HealthCheck, pool: Pool) -> bool:
    """One check: an answer 200-399 within the timeout passes."""
    head = b"GET %b HTTP/1.1\r\nhost: %b\r\nuser-agent: strangler-health\r\n\r\n" % (
        check.path.encode(), target.authority)
    try:
        async with asyncio.timeout(check.timeout):
            status, _, _ = await fetch(pool, head, connect_timeout=check.timeout,
                                       read_timeout=check.timeout, limit=64 * 1024)
    except (UpstreamError, TimeoutError):
        return False
    return 200 <= status < 400


async def _run(target: Target, check: HealthCheck, pool: Pool) -> None:
    passed = failed = 0
    try:
        while True:
            ok = await probe(target, check, pool)
            if ok:
                passed, failed = passed + 1, 0
                if not target.healthy and passed >= check.rise:
                    target.healthy = True
                    _say(f"{target.key} passed {passed} health checks: back in the balance")
            else:
                passed, failed = 0, failed + 1
                if target.healthy and failed >= check.fall:
                    target.healthy = False
                    target.pool.drop_idle()  # likely dead; don't hand them to the next request
                    _say(f"{target.key} failed {failed} health checks ({check.path}): taken out")
            await asyncio.sleep(check.interval)
    finally:
        with contextlib.suppress(Exception):
            pool.close()


def _say(text: str) -> None:
    print(f"strangler router: {text}", file=sys.stderr, flush=True)
