"""The one pure-ASGI middleware around every request: request id, access log, metrics, faults.

Kept in plain ASGI (not `BaseHTTPMiddleware`) because it is on the hot path: it wraps
`send` to catch the status, and adds nothing else per request but a timer, a random draw
and a log line.

Fault injection (the service's fail-rate switch: its variable, e.g. `CATALOG_FAIL_RATE`, or
its admin endpoint) answers a share of
`/api/` requests with a 500 *before* they reach a route, so the canary gate in front of the
service sees real errors and rolls the rollout back; health, readiness and metrics
endpoints are never failed on purpose.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from extracted.kit.logs import request_id
from extracted.kit.metrics import Metrics

REQUEST_ID_HEADER = b"x-request-id"


class FaultSwitch:
    """The share of `/api/` requests to fail on purpose (0..1), changeable at run time."""

    def __init__(self, rate: float = 0.0, *, env: str = "the fail-rate switch",
                 rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self.body = json.dumps({"detail": f"Injected failure ({env})."}, separators=(",", ":")).encode()
        self.rate = 0.0
        self.set(rate)

    def set(self, rate: float) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fail rate {rate} is outside 0..1")
        self.rate = rate

    def fire(self) -> bool:
        return self.rate > 0.0 and (self.rate >= 1.0 or self._rng.random() < self.rate)


class ObserveMiddleware:
    """Tag, time, log and count each HTTP request; fail some `/api/` ones on purpose."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, faults: FaultSwitch, access_log: str) -> None:
        self.app = app
        self.metrics = metrics
        self.faults = faults
        self.log = logging.getLogger(access_log)  # e.g. "extracted.catalog.access"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        rid = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                rid = value.decode("latin-1")[:200]
                break
        if not rid:
            rid = uuid.uuid4().hex
        token = request_id.set(rid)
        rid_bytes = rid.encode("latin-1")
        status = 500

        async def send_tagged(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (REQUEST_ID_HEADER, rid_bytes)]
            await send(message)

        path = scope["path"]
        try:
            if path.startswith("/api/") and self.faults.fire():
                self.metrics.injected_failure()
                await _injected_failure(send_tagged, self.faults.body)
            else:
                await self.app(scope, receive, send_tagged)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            method = scope["method"]
            self.metrics.observe(method, template, status, elapsed)
            self.log.info(
                "request",
                extra={
                    "request_id": rid,
                    "method": method,
                    "path": path,
                    "route": template,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                },
            )
            request_id.reset(token)


async def _injected_failure(send: Send, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
