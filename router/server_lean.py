"""The lean front server: listen, serve `router.http1` connections, stop gracefully.

Place in the flow: the outermost layer of one worker (`router.server.serve_one` with
`--http lean`, the default). Runs the app's lifespan (startup before the first accept,
shutdown after the last response), closes connections idle past `keep_alive` seconds or
stuck in a request head, and on SIGTERM/SIGINT stops accepting, closes idle connections,
lets in-flight requests finish (up to `grace` seconds; a second signal stops waiting), then
shuts the app down. WebSocket tunnels (`router.tunnel`) are closed at once. uvloop when installed.
With `admin_listen`, a second listening socket serves the admin app (`router.admin.AdminListener`)
on the same loop, under the same rules, stopped with the first.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import ssl
import sys
from time import monotonic
from typing import Any

from router.errors import RouterError
from router.http1 import ASGI, HttpConnection

HEAD_TIMEOUT = 30.0  # seconds a client may take to send one request head


class LeanServer:
    """Serves one ASGI app on a listening socket until `stop()`."""

    def __init__(self, app: Any, *, keep_alive: float = 75.0, grace: float = 25.0,
                 max_connections: int = 4096, tls: ssl.SSLContext | None = None) -> None:
        self.app = app
        self.tls = tls  # listen_tls: the handshake happens before the first request byte
        self.scheme = "https" if tls is not None else "http"
        self.max_connections = max_connections  # client.max_connections (per worker)
        self.keep_alive = keep_alive
        self.grace = grace
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by serve()
        self.connections: set[HttpConnection] = set()
        self.stopping = False
        self.stopped: asyncio.Event | None = None
        self.sides: list[LeanServer] = []  # the admin listener's server, when there is one
        self.side_servers: list[asyncio.Server] = []

    async def serve(self, *, host: str, port: int, sock: socket.socket | None = None,
                    admin: tuple[Any, socket.socket] | None = None) -> None:
        """Serve until `stop()`; `admin` is (app, listening socket) of the admin listener."""
        self.loop = asyncio.get_running_loop()
        self.stopped = asyncio.Event()
        lifespan = Lifespan(self.app)
        if not await lifespan.startup():
            raise RouterError(f"the app failed to start: {lifespan.error}")
        if admin is not None:  # plain HTTP, its own connection count, the same stop
            side = LeanServer(admin[0], keep_alive=self.keep_alive, grace=self.grace,
                              max_connections=self.max_connections)
            side.loop, side.stopped = self.loop, self.stopped
            self.sides.append(side)
            self.side_servers.append(await self.loop.create_server(
                lambda: HttpConnection(side), sock=admin[1], backlog=4096))
        if sock is not None:
            server = await self.loop.create_server(lambda: HttpConnection(self), sock=sock, backlog=4096,
                                                   ssl=self.tls, ssl_handshake_timeout=self._handshake_timeout)
        else:
            server = await self.loop.create_server(lambda: HttpConnection(self), host=host, port=port,
                                                   reuse_address=True, backlog=4096, ssl=self.tls,
                                                   ssl_handshake_timeout=self._handshake_timeout)
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.stop)
        sweeper = self.loop.create_task(self._sweep())
        try:
            await self.stopped.wait()
            for listener in (server, *self.side_servers):
                listener.close()
            for side in self.sides:
                side.stopping = True
            for conn in self._all_connections():
                conn.shutdown()
            deadline = monotonic() + self.grace
            while self._all_connections() and monotonic() < deadline:
                await asyncio.sleep(0.05)
            for conn in self._all_connections():
                conn._close_with(b"")
        finally:
            sweeper.cancel()
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.loop.remove_signal_handler(sig)
            await lifespan.shutdown()

    def _all_connections(self) -> list[HttpConnection]:
        return [c for srv in (self, *self.sides) for c in srv.connections]

    @property
    def _handshake_timeout(self) -> float | None:
        # A client stalling its TLS handshake is a slow head: same bound (the sweeper never sees it).
        return HEAD_TIMEOUT if self.tls is not None else None

    def stop(self) -> None:
        if self.stopping:  # a second signal: do not wait for in-flight requests
            self.grace = 0
        self.stopping = True
        if self.stopped is not None:
            self.stopped.set()

    async def _sweep(self) -> None:
        """Close connections idle past keep-alive, or stuck in a request head (slowloris)."""
        while True:
            await asyncio.sleep(min(self.keep_alive, 5.0))
            now = monotonic()
            for conn in self._all_connections():
                idle = now - conn.last_active
                slow_head = conn.in_head and now - conn.head_started > HEAD_TIMEOUT
                if conn.current is None and (idle > self.keep_alive or slow_head):
                    conn._close_with(b"")


class Lifespan:
    """Runs the app's ASGI lifespan protocol: startup before serving, shutdown after."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.events: dict[str, asyncio.Future[None]] = {}
        self.error = ""
        self.task: asyncio.Task[None] | None = None

    async def startup(self) -> bool:
        loop = asyncio.get_running_loop()
        self.events = {k: loop.create_future() for k in ("startup", "shutdown")}
        self.task = loop.create_task(self._main())
        await self.inbox.put({"type": "lifespan.startup"})
        await asyncio.wait([self.events["startup"], self.task], return_when=asyncio.FIRST_COMPLETED)
        return self.events["startup"].done() and not self.error

    async def shutdown(self) -> None:
        if self.task is None or self.task.done():
            return
        await self.inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait([self.events["shutdown"], self.task], timeout=10)

    async def _main(self) -> None:
        try:
            await self.app({"type": "lifespan", "asgi": ASGI, "state": {}}, self.inbox.get, self._send)
        except BaseException as exc:  # noqa: BLE001
            self.error = self.error or repr(exc)

    async def _send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind.endswith(".failed"):
            self.error = message.get("message", kind)
        name = kind.split(".")[1]
        if name in self.events and not self.events[name].done():
            self.events[name].set_result(None)


def run(app: Any, *, host: str, port: int, sock: socket.socket | None = None, loop: str = "auto",
        max_connections: int = 4096, tls: ssl.SSLContext | None = None,
        admin: tuple[Any, socket.socket] | None = None) -> None:
    """Serve `app` until SIGTERM/SIGINT (uvloop when installed, unless loop="asyncio")."""
    factory = asyncio.new_event_loop
    if loop != "asyncio":
        with contextlib.suppress(ImportError):
            import uvloop

            factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        try:
            server = LeanServer(app, max_connections=max_connections, tls=tls)
            runner.run(server.serve(host=host, port=port, sock=sock, admin=admin))
        except RouterError as exc:
            print(f"strangler router: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(3) from None


__all__ = ["LeanServer", "Lifespan", "run"]
