"""Running the router: one process, or a supervisor with N worker processes.

Place in the flow: the outermost layer. `python -m router --config routes.yaml --host H
--port P --workers N [--http lean|uvicorn]`. The HTTP server is `lean` by default: the
router's own HTTP/1.1 server on httptools (`router.server_lean`, chosen by measurement:
benchmarks/README.md); `uvicorn` (httptools parser, no access log of its own,
`proxy_headers=False` so a client cannot spoof its address through `X-Forwarded-For`) is
the alternative. Both use uvloop when installed (`STRANGLER_LOOP=asyncio` forces the stdlib
loop) and run the same ASGI app, lifespan included.

With N > 1 the supervisor binds the socket once and forks N workers sharing it, gives them
a shared metrics folder (summed on read), writes ledger entries for hand edits of the file
(it is the reload leader), forwards SIGHUP to every worker, and restarts a worker that died.

`admin_listen: host:port` (read at start): a second socket, bound once like the first and
shared by the workers, on which each worker serves only the admin API
(`router.admin.AdminListener`) with the same HTTP server as the public port.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Literal

from router.admin import SUPERVISOR_ENV
from router.config import load_config
from router.errors import ConfigError
from router.metrics import mark_exited
from router.reload import ConfigWatcher
from router.tls import ListenTLS

METRICS_ENV = "STRANGLER_METRICS_DIR"
HTTP_SERVERS = ("lean", "uvicorn")
DEFAULT_HTTP = "lean"


def _uvicorn_config(app: object, *, max_connections: int = 4096, lifespan: Literal["on", "off"] = "on",
                    **kwargs: object) -> object:
    import uvicorn

    loop = os.environ.get("STRANGLER_LOOP", "")  # "asyncio" forces the stdlib loop
    if loop != "asyncio":
        try:
            import uvloop  # noqa: F401

            loop = "uvloop"
        except ImportError:
            loop = "asyncio"
    from router.uvicorn_protocol import bounded_protocol

    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        http=bounded_protocol(max_connections), loop=loop, lifespan=lifespan, access_log=False, proxy_headers=False,
        server_header=False, date_header=False, log_level="warning", timeout_keep_alive=75,
        ws="none",  # Upgrade reaches the router as http + `strangler.upgrade` (router.tunnel)
        backlog=4096, **kwargs)  # type: ignore[arg-type]


def _uvicorn_tls(tls: ListenTLS | None) -> dict[str, object]:
    if tls is None:
        return {}
    options: dict[str, object] = {"ssl_certfile": tls.cert, "ssl_keyfile": tls.key}
    if tls.client_ca is not None:
        options |= {"ssl_ca_certs": tls.client_ca, "ssl_cert_reqs": ssl.CERT_REQUIRED}
    return options


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket workers can inherit."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.set_inheritable(True)
    return sock


def serve_one(config_path: Path, *, host: str, port: int, sock: socket.socket | None = None,
              metrics_dir: str | None = None, leader: bool = True, http: str = DEFAULT_HTTP,
              admin_sock: socket.socket | None = None) -> None:
    """Run one worker in this process until SIGINT/SIGTERM."""
    from router.admin import AdminListener
    from router.proxy import Router

    # Until the app's loop installs its handlers, a reload or flush request must not kill us.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    app = Router(config_path=config_path, metrics_dir=metrics_dir, leader=leader)
    config = load_config(config_path)  # client.max_connections, listen_tls, admin_listen: read at start
    max_connections = config.client.max_connections
    tls = config.listen_tls
    if admin_sock is None and config.admin_listen is not None:
        admin_sock = listen(*config.admin_listen)
    admin = (AdminListener(app, app.admin), admin_sock) if admin_sock is not None else None
    if http == "lean":
        from router import server_lean

        server_lean.run(app, host=host, port=port, sock=sock, loop=os.environ.get("STRANGLER_LOOP", "auto"),
                        max_connections=max_connections, tls=tls.context if tls else None, admin=admin)
        return
    import uvicorn

    server = uvicorn.Server(_uvicorn_config(app, host=host, port=port,  # type: ignore[arg-type]
                                            max_connections=max_connections,
                                            **_uvicorn_tls(tls)))  # type: ignore[arg-type]
    if admin is None:
        server.run(sockets=[sock] if sock is not None else None)
        return

    class SideServer(uvicorn.Server):
        """The admin listener under uvicorn: the public server owns the signals and the
        lifespan; this one stops when that one has."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    side = SideServer(_uvicorn_config(admin[0], max_connections=max_connections,  # type: ignore[arg-type]
                                      lifespan="off"))

    async def both() -> None:
        task = asyncio.ensure_future(side.serve(sockets=[admin[1]]))
        try:
            await server.serve(sockets=[sock if sock is not None else listen(host, port)])
        finally:
            side.should_exit = True
            await task

    with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
        runner.run(both())


def run(config_path: Path, *, host: str, port: int, workers: int, http: str = DEFAULT_HTTP) -> int:
    if http not in HTTP_SERVERS:
        print(f"strangler router: --http must be one of {', '.join(HTTP_SERVERS)}, not {http!r}",
              file=sys.stderr)
        return 2
    try:
        config = load_config(config_path)  # refuse a bad file before binding anything
    except ConfigError as exc:
        print(f"strangler router: {exc}", file=sys.stderr)
        return 2
    if config.admin_listen == (host, port):
        print(f"strangler router: admin_listen {host}:{port} is the public port too; give the admin "
              "API a port of its own (or remove admin_listen to serve it on the public port)", file=sys.stderr)
        return 2
    bound = _bind(host, port, config.admin_listen)
    if bound is None:
        return 2
    sock, admin_sock = bound
    if workers <= 1:
        serve_one(config_path, host=host, port=port, sock=sock, metrics_dir=os.environ.get(METRICS_ENV),
                  http=http, admin_sock=admin_sock)
        return 0
    return Supervisor(config_path, host=host, port=port, workers=workers, http=http,
                      sock=sock, admin_sock=admin_sock).run()


def _bind(host: str, port: int, admin: tuple[str, int] | None) -> tuple[socket.socket, socket.socket | None] | None:
    """The public socket and the admin listener's, bound once for every worker; None (and
    why, on stderr) when either cannot be."""
    wanted = [("--host/--port", host, port)] + ([("admin_listen", *admin)] if admin else [])
    socks: list[socket.socket] = []
    for what, h, p in wanted:
        try:
            socks.append(listen(h, p))
        except OSError as exc:
            for s in socks:
                s.close()
            busy = " (another router, or another server, is on it)" if exc.errno == errno.EADDRINUSE else ""
            print(f"strangler router: cannot listen on {h}:{p} ({what}): {exc.strerror or exc}{busy}; "
                  f"stop what is there or choose another port", file=sys.stderr)
            return None
    return socks[0], (socks[1] if admin else None)


class Supervisor:
    def __init__(self, config_path: Path, *, host: str, port: int, workers: int,
                 http: str = DEFAULT_HTTP, sock: socket.socket | None = None,
                 admin_sock: socket.socket | None = None) -> None:
        if http not in HTTP_SERVERS:
            raise ValueError(f"http= must be one of {HTTP_SERVERS}, not {http!r}")
        self.config_path = config_path
        self.http = http
        self.host, self.port, self.workers = host, port, workers
        self.children: dict[int, int] = {}  # pid → slot
        self.stopping = False
        self.hup = False
        self.sock = sock  # bound by `run` (None: bound here)
        self.admin_sock = admin_sock

    def run(self) -> int:
        sock = self.sock or listen(self.host, self.port)
        config = load_config(self.config_path)
        if self.admin_sock is None and config.admin_listen:
            self.admin_sock = listen(*config.admin_listen)
        metrics_dir = tempfile.mkdtemp(prefix="strangler-metrics-")
        os.environ[METRICS_ENV] = metrics_dir
        os.environ[SUPERVISOR_ENV] = str(os.getpid())
        watcher = ConfigWatcher(self.config_path, leader=True, current=config)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        scheme = "https" if watcher.current and watcher.current.listen_tls else "http"
        print(f"strangler router: {self.workers} workers on {scheme}://{self.host}:{self.port}",
              file=sys.stderr, flush=True)
        try:
            for slot in range(self.workers):
                self._spawn(slot, sock, metrics_dir)
            interval = watcher.current.reload_interval if watcher.current else 1.0
            while not self.stopping:
                time.sleep(min(interval, 0.2))
                if self.hup:
                    self.hup = False
                    watcher.check("sighup")
                    self._signal_all(signal.SIGHUP)
                elif watcher.changed():
                    watcher.check("file-watch")  # workers see the change themselves
                self._reap(sock, metrics_dir)
        finally:
            self._signal_all(signal.SIGTERM)
            deadline = time.monotonic() + 30
            while self.children and time.monotonic() < deadline:
                self._reap(sock, metrics_dir, respawn=False)
                time.sleep(0.05)
            self._signal_all(signal.SIGKILL)
            sock.close()
            if self.admin_sock is not None:
                self.admin_sock.close()
            shutil.rmtree(metrics_dir, ignore_errors=True)
        return 0

    def _spawn(self, slot: int, sock: socket.socket, metrics_dir: str) -> None:
        pid = os.fork()
        if pid == 0:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            try:
                serve_one(self.config_path, host=self.host, port=self.port, sock=sock,
                          metrics_dir=metrics_dir, leader=False, http=self.http, admin_sock=self.admin_sock)
            finally:
                os._exit(0)
        self.children[pid] = slot

    def _reap(self, sock: socket.socket, metrics_dir: str, respawn: bool = True) -> None:
        while self.children:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            slot = self.children.pop(pid, None)
            # Its counters still count, but it must never be signalled again (pid reuse).
            mark_exited(Path(metrics_dir) / f"worker-{pid}.json")
            if respawn and not self.stopping and slot is not None:
                print(f"strangler router: worker {pid} died; starting a new one", file=sys.stderr)
                self._spawn(slot, sock, metrics_dir)

    def _signal_all(self, sig: int) -> None:
        for pid in list(self.children):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                self.children.pop(pid, None)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self.hup = True


__all__ = ["Supervisor", "run", "serve_one"]
