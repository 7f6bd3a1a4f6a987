"""A throwaway Zipkin server on loopback, for tests and `strangler up`: where traces go.

One ``io.zipkin:zipkin-server`` exec jar (Armeria inside, in-memory storage) from Maven
Central, fetched once into the cache folder like the Kafka broker's jars and run with the
machine's Java 17. Spans are posted to ``spans_url`` (``/api/v2/spans``, what OpenTelemetry's
Zipkin exporter sends) and read back from ``/api/v2/traces`` and ``/api/v2/trace/<id>``.
``STRANGLER_ZIPKIN_URL`` points everything at an existing server instead; then nothing is
started or stopped.

    with ZipkinServer() as zipkin:
        os.environ["OTEL_EXPORTER_ZIPKIN_ENDPOINT"] = zipkin.spans_url

For fault tests, ``halt()``/``resume()`` stop and start it on the same port (in-memory
storage: the spans are gone).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.errors import ServiceUnavailable
from devstack.kafka import JVM_FLAGS, find_java
from devstack.maven import fetch_jars
from devstack.ports import free_port
from devstack.processes import die_with_parent, stop_process

ZIPKIN_VERSION = "3.5.1"
ENV_URL = "STRANGLER_ZIPKIN_URL"
START_TIMEOUT = 90.0

# Only the exec jar: it carries everything it runs (its own POM's dependencies are not needed).
POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>strangler.devstack</groupId>
  <artifactId>zipkin-runtime</artifactId>
  <version>{zipkin}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>io.zipkin</groupId><artifactId>zipkin-server</artifactId><version>{zipkin}</version>
      <classifier>exec</classifier>
      <exclusions><exclusion><groupId>*</groupId><artifactId>*</artifactId></exclusion></exclusions>
    </dependency>
  </dependencies>
</project>
"""


def zipkin_jar(version: str = ZIPKIN_VERSION) -> Path:
    """The exec jar, fetched from Maven Central on first use and cached."""
    name = f"zipkin-server-{version}-exec.jar"
    libs = fetch_jars(f"zipkin-{version}", POM.format(zipkin=version), [name],
                      f"io.zipkin:zipkin-server:{version}:exec",
                      instead=f"set {ENV_URL} to an existing Zipkin")
    return libs / name


def _get(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback)
        return json.loads(response.read() or b"null")


@dataclass
class ZipkinServer:
    """One Zipkin server: started here, or the one ``STRANGLER_ZIPKIN_URL`` names."""

    url: str = ""
    port: int = 0
    owned: bool = False
    start_seconds: float = 0.0
    _root: str = ""
    _proc: subprocess.Popen[bytes] | None = None
    _argv: tuple[str, ...] = ()

    @property
    def spans_url(self) -> str:
        """Where exporters post spans (Zipkin's v2 JSON API)."""
        return f"{self.url}/api/v2/spans"

    def start(self) -> ZipkinServer:
        existing = os.environ.get(ENV_URL)
        if existing:
            self.url = existing.rstrip("/")
            self._wait_ready(time.monotonic() + 10)
            return self
        java = find_java(needed_by=f"Zipkin {ZIPKIN_VERSION}", instead=f"set {ENV_URL}")
        jar = zipkin_jar()
        self._root = tempfile.mkdtemp(prefix="strangler-zipkin-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._argv = (java, "-Xmx256m", "-Xms64m", *JVM_FLAGS, "-jar", str(jar),
                      "--server.address=127.0.0.1", f"--server.port={self.port}")
        self.owned = True
        try:
            self.resume()
        except BaseException:
            self.stop()
            raise
        return self

    def resume(self) -> None:
        """Start the server process on this server's port (after `halt`)."""
        if not self.owned:
            raise ServiceUnavailable("cannot start a Zipkin this process did not create")
        if self.running:
            return
        began = time.monotonic()
        env = {**os.environ, "STORAGE_TYPE": "mem", "SELF_TRACING_ENABLED": "false",
               "COLLECTOR_SCRIBE_ENABLED": "false"}
        with open(os.path.join(self._root, "stdout.log"), "ab") as out:
            self._proc = subprocess.Popen(
                self._argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self._root, env=env, preexec_fn=die_with_parent,
            )
        self._wait_ready(time.monotonic() + START_TIMEOUT)
        self.start_seconds = time.monotonic() - began

    def _wait_ready(self, deadline: float) -> None:
        while True:
            try:
                _get(f"{self.url}/api/v2/services", timeout=2)
                return
            except (OSError, urllib.error.URLError, ValueError) as exc:
                if self._proc is not None and self._proc.poll() is not None:
                    raise ServiceUnavailable(
                        f"Zipkin exited with code {self._proc.returncode}:\n{self._log_tail()}"
                    ) from exc
                if time.monotonic() > deadline:
                    raise ServiceUnavailable(f"Zipkin at {self.url} did not answer: {exc}\n"
                                             f"{self._log_tail()}") from exc
            time.sleep(0.1)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def halt(self) -> None:
        """Stop the server process (its in-memory spans are lost); `resume` starts it again."""
        proc, self._proc = self._proc, None
        stop_process(proc, timeout=20)

    def stop(self) -> None:
        self.halt()
        self.owned = False
        if self._root:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = ""

    # --- reading traces back ---------------------------------------------------------------
    def traces(self, *, service: str | None = None, limit: int = 100,
               lookback_ms: int = 3_600_000) -> list[list[dict[str, Any]]]:
        """Recent traces (each a list of spans), newest first: ``GET /api/v2/traces``."""
        query = f"limit={limit}&lookback={lookback_ms}&endTs={int(time.time() * 1000) + 60_000}"
        if service:
            query += f"&serviceName={service}"
        return list(_get(f"{self.url}/api/v2/traces?{query}"))

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        """One trace's spans (empty when Zipkin has none of it)."""
        try:
            return list(_get(f"{self.url}/api/v2/trace/{trace_id}"))
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return []
            raise

    def _log_tail(self, chars: int = 3000) -> str:
        path = os.path.join(self._root, "stdout.log") if self._root else ""
        if path and os.path.exists(path):
            with open(path, errors="replace") as fh:
                return fh.read()[-chars:]
        return ""

    def __enter__(self) -> ZipkinServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["ENV_URL", "ZIPKIN_VERSION", "ZipkinServer", "zipkin_jar"]
