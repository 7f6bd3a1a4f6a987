"""The handover's side of a running router: find it, have it reload, and wait until every
worker serves the new ownership.yaml (and, while writes are held, has none in flight)."""

from __future__ import annotations

import time

from control.routerapi import RouterAPI, find_router
from handover.errors import PhaseFailed


def router_url(explicit: str | None) -> str | None:
    """The running router's URL, or None when none answers (a router started later reads
    ownership.yaml itself)."""
    import httpx

    url = find_router(explicit)
    if url is None:
        return None
    try:
        httpx.get(f"{url}/_strangler/status", timeout=2.0)
    except httpx.TransportError:
        return None
    return url


def router_sync(url: str, sha: str, group: str, *, drained: bool, timeout: float) -> int:
    """POST reload, then wait until every worker serves ownership `sha` (and, `drained`, has
    no write of `group` in flight). The only place that reads the router's ownership status."""
    deadline = time.monotonic() + timeout
    with RouterAPI(url) as api:
        api.reload()
        while True:
            own = api.status().get("ownership")
            if not isinstance(own, dict):
                raise PhaseFailed(f"the router at {url} does not report ownership in its status; it "
                                  "predates write ownership: upgrade it, then run this again")
            workers = own.get("workers") or []
            behind = [w for w in workers if w.get("sha256") != sha
                      or (drained and int((w.get("inflight_writes") or {}).get(group, 0)) > 0)]
            if workers and not behind:
                return len(workers)
            if time.monotonic() >= deadline:
                raise PhaseFailed(f"router workers {[w.get('pid') for w in behind]} did not confirm "
                                  f"ownership {sha[:12]}{' with no write in flight' if drained else ''} "
                                  f"within {timeout:.1f} s")
            time.sleep(0.05)
