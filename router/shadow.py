"""Shadow traffic: mirror a share of safe requests to a candidate and diff the answers.

Place in the flow: after the primary response went to the client, the proxy `offer`s the
request and the primary's captured answer. Mirroring runs on a bounded queue served by a
few worker tasks; when the queue is full the copy is dropped and counted — the primary
never waits. A worker sends the request to the candidate *and* again to the primary: the
primary-vs-primary differences are the noise (timestamps, random ids). A field is held
against the candidate unless the route's `NoiseWindow` (`router.noise`) calls it noise —
only while the primary disagrees with itself on it at a comparable rate, over the last
`noise_window` comparisons — so `net_diff_rate` is the diff rate net of noise and one noisy
moment of the primary does not blind the diff for good. Both kinds of differing pairs are
kept for inspection in status (the last `keep` per route: `pairs` real, `noise_pairs` noise
only), with credentials and the shadow's `redact:` fields masked (`router.redact`).

Sampling below 100 % draws from a generator per route, seeded by `seed:` when set.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import TYPE_CHECKING, Any

from router import redact
from router.client import fetch
from router.config import SAFE_METHODS, Config, Route
from router.diff import Response, compare, general
from router.errors import UpstreamError
from router.noise import NoiseWindow

if TYPE_CHECKING:
    from router.state import Snapshot
    from router.types import RouterCore as Router

WORKERS = 4
SHADOW_HEADER = b"x-strangler-shadow: 1\r\n"


class ShadowMirror:
    def __init__(self, router: Router) -> None:
        self.router = router
        self.queue: asyncio.Queue[tuple[Any, ...]] | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.size = 0
        self.windows: dict[str, NoiseWindow] = {}  # route → what is noise right now
        self.rngs: dict[str, tuple[int | None, random.Random]] = {}  # route → (seed, sampler)

    def configure(self, config: Config) -> None:
        sizes = [r.shadow.queue for r in config.routes if r.shadow is not None]
        self.size = max(sizes, default=0)
        for r in config.routes:
            if r.shadow is None:
                continue
            seed = r.shadow.seed
            if r.name not in self.rngs or self.rngs[r.name][0] != seed:  # a reload keeps the sequence
                self.rngs[r.name] = (seed, random.Random(seed))
            window = self.windows.get(r.name)
            if window is None or (window.window, window.ratio) != (r.shadow.noise_window, r.shadow.noise_ratio):
                self.windows[r.name] = NoiseWindow(window=r.shadow.noise_window, ratio=r.shadow.noise_ratio)

    def wants(self, route: Route, method: str) -> bool:
        s = route.shadow
        return s is not None and s.percent > 0 and method in s.methods and \
            (s.percent >= 100 or self._sampler(route).random() * 100 < s.percent)

    def _sampler(self, route: Route) -> random.Random:
        entry = self.rngs.get(route.name)
        if entry is None:  # a route installed without configure (tests driving Router directly)
            entry = self.rngs[route.name] = (None, random.Random())
        return entry[1]

    def window(self, route: Route) -> NoiseWindow:
        window = self.windows.get(route.name)
        if window is None:
            assert route.shadow is not None
            window = self.windows[route.name] = NoiseWindow(window=route.shadow.noise_window,
                                                           ratio=route.shadow.noise_ratio)
        return window

    def offer(self, route: Route, snap: Snapshot, backend: str, method: str, line: bytes,
              tail: bytes, status: int, headers: list[tuple[bytes, bytes]], body: list[bytes] | None,
              request_body: bytes | None = None, chunked: bool = False) -> None:
        """Queue a comparison; never blocks (drops and counts when the queue is full)."""
        assert route.shadow is not None
        stats = self.router.metrics.shadow_stats(route.name, route.shadow.keep)
        self.router.metrics.dirty = True
        if self.queue is None:
            self.queue = asyncio.Queue(maxsize=max(self.size, 1))
            self.tasks = [asyncio.get_running_loop().create_task(self._work()) for _ in range(WORKERS)]
        primary = Response(status, {k.decode("latin-1"): v.decode("latin-1") for k, v in headers},
                           b"".join(body) if body else b"")
        try:
            self.queue.put_nowait((route, snap, backend, method, line, tail, primary, time.time(),
                                   _framed(request_body, chunked)))
            stats["mirrored"] += 1
        except asyncio.QueueFull:
            stats["dropped"] += 1

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tasks = []
        self.queue = None

    async def _work(self) -> None:
        assert self.queue is not None
        while True:
            item = await self.queue.get()
            try:
                await self._compare(*item)
            except Exception:  # noqa: BLE001 - a shadow failure must never stop the mirror
                pass
            finally:
                self.queue.task_done()

    async def _compare(self, route: Route, snap: Snapshot, primary_name: str, method: str,
                       line: bytes, tail: bytes, primary: Response, when: float,
                       body: bytes) -> None:
        shadow = route.shadow
        assert shadow is not None
        stats = self.router.metrics.shadow_stats(route.name, shadow.keep)
        if primary_name == shadow.to:
            return  # the candidate answered the client itself: nothing to compare
        rules: dict[str, Any] = {"headers": shadow.headers, "ignore": shadow.ignore,
                                 "unordered": shadow.unordered}
        window = self.window(route)
        stats["window"] = window  # summarised by Metrics.snapshot
        try:
            with self.router.tracing.shadow_call(tail, shadow.to, "candidate") as traced:
                candidate = await self._call(snap, shadow.to, method, line, traced, body)
            # Noise: the primary asked again — only for safe methods (never repeat a write).
            again = None
            if method in SAFE_METHODS:
                with self.router.tracing.shadow_call(tail, primary_name, "primary again") as traced:
                    again = await self._call(snap, primary_name, method, line, traced, body)
        except UpstreamError:
            stats["errors"] += 1
            self.router.metrics.dirty = True
            return
        if again is not None:
            noise = compare(primary, again, **rules)
            stats["noise_compared"] += 1
            if noise:
                stats["noise_differing"] += 1
            window.noise(general(p) for p in noise)
        diffs = compare(primary, candidate, **rules)
        stats["compared"] += 1
        real_fields, _ = window.judge(general(p) for p in diffs)
        if diffs:
            stats["differing_raw"] += 1
            held = frozenset(real_fields)
            real = [p for p in diffs if general(p) in held]
            kept = _kept_pair(shadow.redact, when, method, line, real, (primary_name, primary),
                              (shadow.to, candidate))
            kept["noise"] = [p for p in diffs if general(p) not in held]
            if real:
                stats["differing"] += 1
                stats["pairs"].append(kept)
            else:
                stats["noise_pairs"].append(kept)
        self.router.metrics.dirty = True

    async def _call(self, snap: Snapshot, name: str, method: str, line: bytes, tail: bytes,
                    body: bytes) -> Response:
        upstream = snap.config.upstreams[name]
        target = snap.groups[name].any_healthy()  # the Host line names the endpoint it goes to
        head = line + target.authority + b"\r\n" + SHADOW_HEADER + tail + body
        status, headers, body = await fetch(target.pool, head, connect_timeout=upstream.connect_timeout,
                                            read_timeout=upstream.read_timeout, head_only=method == "HEAD")
        return Response(status, {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}, body)


def _framed(body: bytes | None, chunked: bool) -> bytes:
    """The request body as it goes on the wire after the head (same framing as the original)."""
    if not body:
        return b"0\r\n\r\n" if chunked else b""
    return b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body) if chunked else body


def _kept_pair(names: frozenset[str], when: float, method: str, line: bytes, diffs: list[str],
               *sides: tuple[str, Response]) -> dict[str, Any]:
    """A differing pair as `status` shows it, credentials and `redact:` fields masked."""
    pair: dict[str, Any] = {"time": when, "method": method, "diffs": diffs,
                            "path": redact.target(line.split(b" ")[1].decode("latin-1"), names)}
    for role, (backend, response) in zip(("primary", "candidate"), sides, strict=True):
        pair[role] = {"backend": backend, "status": response.status,
                      "headers": redact.headers(response.headers, names),
                      "body": redact.body(response.body, names)}
    return pair
