"""The interfaces between the router's parts: ASGI's three aliases and what a part may ask
of the composition root (`router.proxy.Router`) or of a listener.

Place in the flow: imported by the parts (admin, identity, reload, shadow, forward, the lean
server's connection and exchange) instead of the modules that build them, so no part
imports the thing that composes it and the import graph has no circles.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from router.accesslog import AccessLog
    from router.config import Config
    from router.metrics import Metrics
    from router.state import Snapshot
    from telemetry import TracingSettings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class Reloads(Protocol):
    def reload(self, actor: str, /) -> dict[str, Any]: ...
    def status(self) -> dict[str, Any]: ...


class Tracing(Protocol):
    """What the parts ask of the router's tracing (`router.tracing.RouterTracing`)."""

    settings: TracingSettings | None

    def shadow_call(self, tail: bytes, backend: str, role: str, /) -> AbstractContextManager[bytes]: ...


class RouterCore(Protocol):
    """What the parts of a router read and call on it."""

    config_path: Path | None
    snapshot: Snapshot | None
    metrics: Metrics
    access_log: AccessLog

    @property
    def tracing(self) -> Tracing: ...

    @property
    def reloader(self) -> Reloads: ...

    def install(self, config: Config) -> None: ...
    def publish_breakers(self) -> None: ...


class Listener(Protocol):
    """What an HTTP/1.1 connection needs of the lean server that accepted it."""

    loop: asyncio.AbstractEventLoop
    app: Callable[..., Awaitable[None]]
    scheme: str
    connections: set[Any]
    max_connections: int
    stopping: bool


class Wire(Protocol):
    """What one request's exchange needs of its client connection (`router.http1`)."""

    loop: asyncio.AbstractEventLoop
    reading_paused: bool
    write_paused: bool

    def write(self, data: bytes) -> None: ...
    def writelines(self, data: Any) -> None: ...
    def flow(self) -> None: ...
    def wake(self) -> None: ...
    async def drain(self) -> None: ...
    async def wait_event(self) -> None: ...
