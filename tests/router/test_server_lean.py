"""The lean HTTP/1.1 front server (`python -m router --http lean`), spoken to over raw sockets."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import httpx
import pytest

from devstack import free_port
from tests.router.conftest import ADMIN_TOKEN, ROOT, RouterProc, eventually, stop


def routes(ups: dict) -> str:
    return f"""
ledger: ledger.jsonl
access_log: false
upstreams:
  a: {{url: "{ups['a'].url}"}}
routes:
  - name: all
    match: {{prefix: /}}
    backends: {{a: 100}}
"""


def launch(tmp: Path, ups: dict, http: str = "lean") -> RouterProc:
    config = tmp / "routes.yaml"
    config.write_text(routes(ups))
    port = free_port()
    log = tmp / f"router-{port}.log"
    with open(log, "wb") as handle:
        proc = subprocess.Popen([sys.executable, "-m", "router", "--config", str(config), "--host", "127.0.0.1",
                                 "--port", str(port), "--http", http], cwd=ROOT, stdout=handle, stderr=handle,
                                env={**os.environ, "STRANGLER_ADMIN_TOKEN": ADMIN_TOKEN})
    router = RouterProc(port=port, config=config, proc=proc, log=log)
    ok = eventually(lambda: proc.poll() is not None or _answers(router.url))
    if proc.poll() is not None or not ok:
        stop(proc)
        raise RuntimeError(f"router did not start: {log.read_text()[-3000:]}")
    return router


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/_strangler/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def lean(upstreams, tmp_path_factory) -> Iterator[RouterProc]:
    router = launch(tmp_path_factory.mktemp("lean"), upstreams)
    try:
        yield router
    finally:
        stop(router.proc)


def connect(router: RouterProc) -> tuple[socket.socket, BinaryIO]:
    sock = socket.create_connection(("127.0.0.1", router.port), timeout=20)
    return sock, sock.makefile("rb")


def read_response(f: BinaryIO) -> tuple[int, dict[str, str], bytes]:
    """One response from a stream (Content-Length, chunked, or until close)."""
    status_line = f.readline()
    assert status_line, "the server closed the connection"
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := f.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = f.read(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        parts = []
        while (size := int(f.readline().split(b";")[0], 16)) > 0:
            parts.append(f.read(size))
            f.readline()
        f.readline()
        body = b"".join(parts)
    else:
        body = f.read()
    return status, headers, body


def closed(sock: socket.socket, f: BinaryIO) -> bool:
    sock.settimeout(5)
    try:
        return f.read(1) == b""
    except OSError:
        return True


def test_keep_alive_serves_many_requests_on_one_connection(lean: RouterProc) -> None:
    sock, f = connect(lean)
    with sock, f:
        for i in range(5):
            sock.sendall(b"GET /echo?i=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            status, headers, body = read_response(f)
            assert status == 200 and json.loads(body)["query"] == f"i={i}"
            assert headers.get("connection") != "close"


def test_pipelined_requests_are_answered_in_order(lean: RouterProc) -> None:
    sock, f = connect(lean)
    with sock, f:
        # A slow one first: the fast ones behind it must wait their turn.
        sock.sendall(b"GET /slow?s=0.3 HTTP/1.1\r\nHost: x\r\n\r\n" + b"".join(
            b"GET /echo?i=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(8)))
        assert json.loads(read_response(f)[2])["slow"] is True
        for i in range(8):
            status, _, body = read_response(f)
            assert status == 200 and json.loads(body)["query"] == f"i={i}"


def test_chunked_upload_is_streamed_whole_in_bounded_memory(lean: RouterProc) -> None:
    base = lean.rss_kb()
    peak = base
    block = os.urandom(1 << 16)
    digest = hashlib.sha256()
    sock, f = connect(lean)
    with sock, f:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(1024):  # 64 MiB
            sock.sendall(b"%x\r\n%b\r\n" % (len(block), block))
            digest.update(block)
            if i % 128 == 0:
                peak = max(peak, lean.rss_kb())
        sock.sendall(b"0\r\n\r\n")
        status, _, body = read_response(f)
    assert status == 200
    assert json.loads(body) == {"upstream": "a", "received": 1024 * len(block), "sha256": digest.hexdigest()}
    assert peak - base < 30_000, (base, peak)


def test_expect_100_continue_is_answered_when_the_body_is_wanted(lean: RouterProc) -> None:
    sock, f = connect(lean)
    with sock, f:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        assert f.readline() == b"HTTP/1.1 100 Continue\r\n" and f.readline() == b"\r\n"
        sock.sendall(b"hello")
        status, _, body = read_response(f)
        assert status == 200 and json.loads(body)["received"] == 5


def test_large_download_in_bounded_memory(lean: RouterProc) -> None:
    base = lean.rss_kb()
    peak = base
    sock, f = connect(lean)
    with sock, f:
        sock.sendall(b"GET /download?mb=100 HTTP/1.1\r\nHost: x\r\n\r\n")
        status_line = f.readline()
        while f.readline() != b"\r\n":
            pass
        total = 0
        while (size := int(f.readline(), 16)) > 0:
            total += len(f.read(size))
            f.readline()
            if total % (8 << 20) < size:
                peak = max(peak, lean.rss_kb())
        f.readline()
    assert status_line.startswith(b"HTTP/1.1 200") and total == 100 << 20
    assert peak - base < 30_000, (base, peak)


def test_a_slow_client_holds_the_download_back(lean: RouterProc) -> None:
    base = lean.rss_kb()
    sock, f = connect(lean)
    with sock, f:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(b"GET /download?mb=200 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(1.5)  # not reading: without back-pressure the router would buffer it all
        grown = lean.rss_kb() - base
        assert f.readline().startswith(b"HTTP/1.1 200")
    assert grown < 30_000, grown
    assert httpx.get(f"{lean.url}/echo").status_code == 200


def test_a_client_leaving_mid_body_is_a_disconnect(lean: RouterProc) -> None:
    sock, f = connect(lean)
    with sock, f:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n" + b"z" * 100_000)
        assert eventually(lambda: lean.status()["in_flight"] == 1)
    assert eventually(lambda: lean.status()["in_flight"] == 0)
    assert httpx.get(f"{lean.url}/echo").status_code == 200


@pytest.mark.parametrize("head", [
    b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",  # the server's limit
    b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",  # the app's limit
    b"GET /echo HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n",
])
def test_oversized_heads_are_431(lean: RouterProc, head: bytes) -> None:
    sock, f = connect(lean)
    with sock, f:
        for i in range(0, len(head), 8192):  # over several reads, as a slow client would
            try:
                sock.sendall(head[i:i + 8192])
            except OSError:
                break  # refused before the end
        assert read_response(f)[0] == 431
    assert httpx.get(f"{lean.url}/echo").status_code == 200


@pytest.mark.parametrize("request_bytes", [
    b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
    b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n",
])
def test_conflicting_or_malformed_framing_is_400_then_close(lean: RouterProc, request_bytes: bytes) -> None:
    sock, f = connect(lean)
    with sock, f:
        sock.sendall(request_bytes)
        status = read_response(f)[0]
        if request_bytes.startswith(b"GET /echo"):  # a good request first, answered first
            assert status == 200
            status = read_response(f)[0]
        assert status == 400
        assert closed(sock, f)


def test_http_1_0_and_connection_close(lean: RouterProc) -> None:
    sock, f = connect(lean)
    with sock, f:
        sock.sendall(b"GET /echo HTTP/1.0\r\n\r\n")
        status, headers, _ = read_response(f)
        assert status == 200 and headers["connection"] == "close" and closed(sock, f)
    sock, f = connect(lean)
    with sock, f:  # HTTP/1.0 keep-alive when asked; a streamed body has no length: close ends it
        sock.sendall(b"GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        status, headers, _ = read_response(f)
        assert status == 200 and headers["connection"] == "keep-alive"
        sock.sendall(b"GET /download?mb=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        status, headers, body = read_response(f)
        assert status == 200 and len(body) == 1 << 20 and "transfer-encoding" not in headers
    sock, f = connect(lean)
    with sock, f:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, headers, _ = read_response(f)
        assert status == 200 and headers["connection"] == "close" and closed(sock, f)


def test_sigterm_finishes_the_request_in_flight(upstreams, tmp_path: Path, http: str) -> None:
    router = launch(tmp_path, upstreams, http)
    try:
        answer: list[int] = []
        thread = threading.Thread(target=lambda: answer.append(
            httpx.get(f"{router.url}/slow?s=1.5", timeout=20).status_code))
        thread.start()
        assert eventually(lambda: router.status()["in_flight"] == 1)
        router.proc.send_signal(signal.SIGTERM)
        thread.join(20)
        assert answer == [200]
        # It stops by itself (uvicorn re-raises the signal once it has shut down cleanly).
        assert router.proc.wait(20) == (0 if http == "lean" else -signal.SIGTERM)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", router.port), timeout=2).close()
    finally:
        stop(router.proc)
