"""A throwaway Redis server on loopback: the store router replicas share rate limits in.

Debian's ``redis-server`` (installed by `make test` through devstack/apt.py), run with no
persistence in a temporary folder, on a free port. ``STRANGLER_REDIS_URL`` points the tests at
an existing server instead; then nothing is started or stopped.

    with RedisServer() as redis:
        routes = f"rate_limit_store: {{redis: {redis.url}}}"

For fault tests, ``halt()``/``resume()`` stop and start it on the same port (no persistence:
the buckets are gone, as after a real restart of a cache).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from devstack.apt import require
from devstack.errors import ServiceUnavailable
from devstack.ports import free_port
from devstack.processes import die_with_parent, stop_process

ENV_URL = "STRANGLER_REDIS_URL"
START_TIMEOUT = 15.0


@dataclass
class RedisServer:
    """One Redis: started here, or the one ``STRANGLER_REDIS_URL`` names."""

    url: str = ""
    port: int = 0
    owned: bool = False
    _root: str = ""
    _binary: str = ""
    _proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        existing = os.environ.get(ENV_URL)
        if existing:
            self.url = existing
            return self
        self._binary = require("redis-server")
        self._root = tempfile.mkdtemp(prefix="strangler-redis-")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.owned = True
        try:
            self.resume()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def resume(self) -> None:
        """Start the server process on this server's port (after `halt`)."""
        if not self.owned:
            raise ServiceUnavailable(f"cannot start a Redis this process did not create ({ENV_URL} is set)")
        if self.running:
            return
        argv = [self._binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                "--appendonly", "no", "--dir", self._root, "--protected-mode", "yes"]
        with open(os.path.join(self._root, "redis.log"), "ab") as log:
            self._proc = subprocess.Popen(argv, stdout=log, stderr=log, preexec_fn=die_with_parent)  # noqa: PLW1509
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                tail = Path(self._root, "redis.log").read_text(errors="replace")[-2000:]
                self.halt()
                raise ServiceUnavailable(f"redis-server did not start on port {self.port}: {tail}")
            time.sleep(0.02)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def halt(self) -> None:
        """Stop the server (kill -9: an outage, not a shutdown); `resume` brings it back."""
        stop_process(self._proc, hard=True)
        self._proc = None

    def stop(self) -> None:
        self.halt()
        if self._root:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = ""

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.owned:
            self.stop()
