"""Real processes on loopback for the router tests: small upstreams and `python -m router`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from devstack import free_port
from router.server import HTTP_SERVERS

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "test-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
IDENTITY_SECRET = "test-identity-secret-abcdef"


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"process exited with {proc.returncode}: {err[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


def stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Upstream:
    name: str
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Upstream:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.router.upstream", "--port", str(self.port), "--name", self.name],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_port(self.port, self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, grace=2.0)  # a test upstream has nothing to flush
            self.proc = None


@dataclass
class RouterProc:
    port: int
    config: Path
    proc: subprocess.Popen[bytes]
    log: Path
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, **kw: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kw)  # type: ignore[arg-type]

    def status(self) -> dict:
        return self.admin("status").json()

    def admin(self, endpoint: str, token: str = ADMIN_TOKEN) -> httpx.Response:
        """GET /_strangler/<endpoint> with a bearer token (every admin read needs one)."""
        return httpx.get(f"{self.url}/_strangler/{endpoint}", timeout=10,
                         headers={"Authorization": f"Bearer {token}"})

    def rss_kb(self) -> int:
        total = 0
        for pid in [self.proc.pid, *_children(self.proc.pid)]:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total

    def write_config(self, text: str) -> None:
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config)


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def http_option(http: str | None = None) -> list[str]:
    """`--http X` from the argument, else from STRANGLER_TEST_HTTP (run the suite per server)."""
    http = http or os.environ.get("STRANGLER_TEST_HTTP")
    return ["--http", http] if http else []


@pytest.fixture(params=HTTP_SERVERS)
def http(request: pytest.FixtureRequest) -> str:
    """Run a test on each HTTP server (framing, streaming, reload, shutdown: the parts that differ)."""
    return str(request.param)


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, Upstream]]:
    """Two real upstreams, `a` (plays the monolith) and `b` (the extracted service)."""
    ups = {name: Upstream(name, free_port()) for name in ("a", "b")}
    try:
        for up in ups.values():
            up.start()
        yield ups
    finally:
        for up in ups.values():
            up.stop()


@pytest.fixture
def start_router(tmp_path: Path) -> Iterator[Callable[..., RouterProc]]:
    """Start `python -m router` on a routes file written from `text`; stopped afterwards."""
    started: list[RouterProc] = []

    def start(text: str, *, workers: int = 1, env: dict[str, str] | None = None,
              http: str | None = None, health_port: int | None = None) -> RouterProc:
        """`health_port`: where healthz answers (the `admin_listen` port when one is set)."""
        config = tmp_path / "routes.yaml"
        config.write_text(text)
        port = free_port()
        log = tmp_path / f"router-{port}.log"
        full_env = {**os.environ, "STRANGLER_ADMIN_TOKEN": ADMIN_TOKEN,
                    "STRANGLER_IDENTITY_SECRET": IDENTITY_SECRET, **(env or {})}
        full_env = {k: v for k, v in full_env.items() if v != ""}
        with open(log, "wb") as handle:
            proc = subprocess.Popen(
                [sys.executable, "-m", "router", "--config", str(config), "--host", "127.0.0.1",
                 "--port", str(port), "--workers", str(workers),
                 *http_option(http)],
                cwd=ROOT, stdout=handle, stderr=handle, env=full_env)
        router = RouterProc(port=port, config=config, proc=proc, log=log)
        started.append(router)
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"router exited: {log.read_text()[-3000:]}")
            try:
                health = f"http://127.0.0.1:{health_port or port}/_strangler/healthz"
                if httpx.get(health, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"router did not start: {log.read_text()[-3000:]}")
            time.sleep(0.05)
        return router

    try:
        yield start
    finally:
        for router in started:
            stop(router.proc)


def raw_request(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, return everything the server answers until it closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks):
                    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:") and \
                                len(body) >= int(line.split(b":")[1]):
                            return b"".join(chunks)
        except TimeoutError:
            pass
        return b"".join(chunks)


def eventually(check: Callable[[], object], timeout: float = 15.0, interval: float = 0.05) -> object:
    """Poll until `check()` returns something truthy (the machine may be busy); return it."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
