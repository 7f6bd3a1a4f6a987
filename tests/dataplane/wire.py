"""Loopback helpers for the data-plane tests: upstreams that answer their own name, a
pipelining client fast enough for tens of thousands of requests on two cores, and a plane
kept on its routes file (with traffic, if asked) while a test steers it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

from dataplane import follow, model, run
from dataplane.errors import ExportError
from devstack import free_port
from tests.conftest import service_missing

ROOT = Path(__file__).resolve().parents[2]
# wrk's requests, each another user (so the cohort hash runs); CLOSE=1: a connection per request
WRK_USERS_LUA = """counter = 0
request = function()
  counter = counter + 1
  local headers = {["X-User"] = "wrk-" .. (counter % 5000)}
  if os.getenv("CLOSE") == "1" then headers["Connection"] = "close" end
  return wrk.format("GET", "/x", headers)
end
"""


def needs(*tools: str) -> None:
    """Fail (in CI) or skip naming what to install unless every tool is here: nginx, haproxy, wrk."""
    for tool in tools:
        if tool == "wrk":
            if shutil.which("wrk") is None:
                service_missing("wrk", RuntimeError("apt-get install -y wrk (`python -m devstack.apt`)"))
            continue
        try:
            run.binary(tool)
        except ExportError as exc:
            service_missing(tool, exc)


def canary_routes(ports: dict[str, int], route: str = "root") -> str:
    """A routes file for a canary on a plane: `route` on / split monolith 100 / catalog 0 by X-User,
    each answer saying its backend."""
    return f"""ledger: ledger.jsonl
access_log: false
backend_header: X-Strangler-Backend
upstreams:
  monolith: {{url: "http://127.0.0.1:{ports['monolith']}"}}
  catalog: {{url: "http://127.0.0.1:{ports['catalog']}"}}
routes:
  - name: {route}
    match: {{prefix: /}}
    backends: {{monolith: 100, catalog: 0}}
    cohort: {{header: X-User}}
"""


def owned_routes(ports: dict[str, int], *, group: str = "products", ledger: str = "ledger.jsonl") -> str:
    """A routes file whose /api/products writes go to the owner of ownership group `group`
    (ownership.yaml beside it), reads split monolith 100 / catalog 0 by X-User."""
    return f"""ledger: {ledger}
backend_header: X-Strangler-Backend
ownership: ownership.yaml
upstreams:
  monolith: {{url: "http://127.0.0.1:{ports['monolith']}"}}
  catalog: {{url: "http://127.0.0.1:{ports['catalog']}"}}
routes:
  - name: products
    match: {{prefix: /api/products}}
    writes: {group}
    backends: {{monolith: 100, catalog: 0}}
    cohort: {{header: X-User}}
"""


@contextmanager
def followed(target: str, routes: Path, *, folder: Path | None = None,
             traffic: bool = False) -> Iterator[tuple[run.Running, list[follow.Applied]]]:
    """`target` started on `routes` and kept on it by a Follower thread (what it applied, in
    order); with `traffic`, a stream of new users in the background. All stopped on exit."""
    plan = model.load_plan(routes)
    with run.start(target, plan, port=free_port(), folder=folder) as server:
        applied: list[follow.Applied] = []
        stop = threading.Event()
        follower = follow.Follower(server, routes, plan)
        threads = [threading.Thread(target=follower.follow, args=(stop,),
                                    kwargs={"interval": 0.02, "report": applied.append})]
        if traffic:
            threads.append(threading.Thread(target=_traffic, args=(server.port, stop)))
        for t in threads:
            t.start()
        try:
            yield server, applied
        finally:
            stop.set()
            for t in threads:
                t.join(40)


def _traffic(port: int, stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        with contextlib.suppress(ConnectionError):  # nginx's reload closes keep-alive connections
            answers(port, [(f"/x/{n + i}", {"X-User": f"user-{n + i}"}) for i in range(40)], connections=2)
        n += 40
        stop.wait(0.02)


@contextmanager
def named_upstreams(names: Sequence[str], seen: dict[str, list[bytes]] | None = None,
                    failing: Sequence[str] = ()) -> Iterator[dict[str, int]]:
    """One HTTP/1.1 keep-alive server per name on loopback, each answering its name (and
    appending each request line to `seen[name]` when given); those in `failing` with a 500."""
    loop = asyncio.new_event_loop()
    ports = {name: free_port() for name in names}
    ready = threading.Event()

    def serve(name: str):  # type: ignore[no-untyped-def]
        body = name.encode()

        status = b"500 Internal Server Error" if name in failing else b"200 OK"

        def answer(saw_identity: bool) -> bytes:
            return (b"HTTP/1.1 %b\r\ncontent-type: text/plain\r\nx-saw-identity: %b\r\n"
                    b"content-length: %d\r\n\r\n%b" % (status, b"yes" if saw_identity else b"no", len(body), body))

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    if seen is not None:
                        seen.setdefault(name, []).append(head.split(b"\r\n", 1)[0])
                    lower = head.lower()
                    for line in lower.split(b"\r\n"):
                        if line.startswith(b"content-length:"):
                            await reader.readexactly(int(line.split(b":")[1]))
                    writer.write(answer(b"\r\nx-strangler-identity:" in lower))
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()
        return handle

    async def main() -> None:
        for name, port in ports.items():
            await asyncio.start_server(serve(name), "127.0.0.1", port, backlog=512)
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(main()), loop.run_forever()), daemon=True)
    thread.start()
    assert ready.wait(10), "the loopback upstreams did not start"
    try:
        yield ports
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def backends_seen(port: int, requests: Sequence[tuple[str, dict[str, str]]], *,
                  header: str = "x-strangler-backend") -> list[str]:
    """The backend each request's answer came from (the upstream's body, checked against
    the data plane's `header`), in order."""
    out = []
    for (status, headers, body), request in zip(answers(port, requests), requests, strict=True):
        assert status == 200, (status, request, body[:200])
        assert headers.get(header.encode()) == body, (request, headers, body)
        out.append(body.decode())
    return out


def answers(port: int, requests: Sequence[tuple[str, dict[str, str]]] | Sequence[tuple[str, dict[str, str], str]],
            *, connections: int = 4, window: int = 200) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """Send (path, headers[, method]) requests pipelined over a few keep-alive connections;
    the answers (status, lower-case headers, body) in order."""
    chunks = [list(range(i, len(requests), connections)) for i in range(connections)]
    out: list[tuple[int, dict[bytes, bytes], bytes]] = [(0, {}, b"")] * len(requests)

    def run(indexes: list[int]) -> None:
        # A connection per window: servers close keep-alive connections after some number
        # of requests (nginx: keepalive_requests 1000).
        for start in range(0, len(indexes), window):
            batch = indexes[start:start + window]
            with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
                reader = _Reader(sock)
                sock.sendall(b"".join(_request(*requests[i]) for i in batch))
                for i in batch:
                    out[i] = reader.response()

    with ThreadPoolExecutor(connections) as pool:
        for f in [pool.submit(run, c) for c in chunks if c]:
            f.result()
    return out


@contextmanager
def router_process(routes: Path, log: Path) -> Iterator[int]:
    """Strangler's router serving `routes` on a free loopback port (its port), until exit."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "STRANGLER_IDENTITY_SECRET"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "router", "--config", str(routes), "--host", "127.0.0.1",
                                 "--port", str(port)], cwd=ROOT, stdout=out, stderr=out, env=env)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, f"the router exited: {log.read_text()[-2000:]}"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/_strangler/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"the router never answered healthz: {log.read_text()[-2000:]}"
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def _request(path: str, headers: dict[str, str], method: str = "GET") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: shop.test", *(f"{k}: {v}" for k, v in headers.items())]
    if method in ("POST", "PUT", "PATCH"):
        lines.append("Content-Length: 2")
        return ("\r\n".join(lines) + "\r\n\r\n{}").encode("latin-1")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf = sock, b""

    def _more(self) -> None:
        chunk = self.sock.recv(262144)
        if not chunk:
            raise ConnectionError("the data plane closed the connection mid-answer")
        self.buf += chunk

    def response(self) -> tuple[int, dict[bytes, bytes], bytes]:
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers.setdefault(k.strip().lower(), v.strip())
        n = int(headers.get(b"content-length", b"0"))
        while len(self.buf) < n:
            self._more()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body
