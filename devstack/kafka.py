"""A throwaway Apache Kafka broker on loopback, for tests, benchmarks and `strangler up --real`.

One process in KRaft mode (broker and controller combined) on free loopback ports, in a
temporary data folder, with settings for fast tests: no initial rebalance delay, one
partition per topic, small segments, replication factor 1 for every internal topic. The
jars (``org.apache.kafka:kafka_2.13`` and its runtime dependencies) come from Maven Central,
fetched once with Maven into a cache folder, and run with the machine's Java 17; the storage
is formatted before the first start. ``STRANGLER_KAFKA_BOOTSTRAP`` points everything at an
existing broker instead; then nothing is started or stopped.

    with KafkaServer() as kafka:
        producer = confluent_kafka.Producer({"bootstrap.servers": kafka.bootstrap})

For fault tests, ``halt()``/``resume()`` (or ``restart()``) stop and start the same broker
on the same ports with its data kept.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from devstack import log4j2
from devstack.errors import ServiceUnavailable
from devstack.maven import ENV_CACHE as ENV_CACHE  # re-exported: where the cache lives
from devstack.maven import cache_dir as cache_dir
from devstack.maven import fetch_jars
from devstack.ports import free_port
from devstack.processes import die_with_parent, stop_process

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"  # the slf4j binding, so the broker's log reaches a file
ENV_BOOTSTRAP = "STRANGLER_KAFKA_BOOTSTRAP"
ENV_HEAP = "STRANGLER_KAFKA_HEAP"
DEFAULT_HEAP = "512m"
START_TIMEOUT = 90.0
# The JVM's flags for a broker that lives minutes on a small box (tests, laptops, the
# benchmarks): the serial collector, and only the quick C1 compiler. With C2 as well, a
# fresh broker spent as much CPU compiling as serving for its first million messages
# (benchmarks/README.md, "Kafka end to end"), which on 2 cores is taken from PostgreSQL and
# both halves; a production broker amortises that over weeks.
JVM_FLAGS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true")

# Fast, single-node settings; the data folder is thrown away afterwards.
BROKER_SETTINGS = {
    "num.partitions": "1",
    "default.replication.factor": "1",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "share.coordinator.state.topic.num.partitions": "1",
    "group.initial.rebalance.delay.ms": "0",
    # After a kill -9 the controller waits out the dead incarnation's session before the
    # restarted broker may register: 9 s by default.
    "broker.heartbeat.interval.ms": "500",
    "broker.session.timeout.ms": "3000",
    "log.segment.bytes": str(1024 * 1024),
    "log.retention.check.interval.ms": "60000",
    "auto.create.topics.enable": "true",
    "num.network.threads": "2",
    "num.io.threads": "2",
    "num.recovery.threads.per.data.dir": "1",
    "background.threads": "2",
}

POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>strangler.devstack</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""



def find_java(
    *,
    needed_by: str = f"the Kafka {KAFKA_VERSION} broker",
    package: str = "openjdk-17-jre-headless",
    instead: str = f"set {ENV_BOOTSTRAP} to an existing broker",
) -> str:
    """The `java` executable (``$JAVA_HOME/bin/java`` or PATH), checked to be Java 17 or newer.

    `needed_by`, `package` and `instead` word the error for the caller (Kafka by default).
    """
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        raise ServiceUnavailable(
            f"Java was not found: {needed_by} needs Java 17 or newer. Install it "
            f"(Debian/Ubuntu: `apt-get install {package}`), set JAVA_HOME"
            + (f", or {instead}." if instead else ".")
        )
    major = java_major(java)
    if major < 17:
        raise ServiceUnavailable(
            f"Java {major} found at {java}, but {needed_by} needs Java 17 or newer: "
            f"install {package} and set JAVA_HOME."
        )
    return java


def java_major(tool: str) -> int:
    """The major version `tool -version` reports (`java` or `javac`): 17 for "17.0.15"."""
    proc = subprocess.run([tool, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'(?:version "|javac )(\d+)(?:\.(\d+))?', proc.stderr + proc.stdout)
    if not match:
        raise ServiceUnavailable(f"`{tool} -version` did not report a version: {proc.stderr.strip()}")
    major = int(match.group(1))
    if major == 1:  # "1.8.0_…"
        major = int(match.group(2) or 0)
    return major


def kafka_jars(version: str = KAFKA_VERSION) -> Path:
    """The folder of broker jars, fetched from Maven Central on first use and cached."""
    return fetch_jars(f"kafka-{version}", POM.format(kafka=version, log4j=LOG4J_VERSION),
                      [f"kafka_2.13-{version}.jar"], f"org.apache.kafka:kafka_2.13:{version}",
                      instead=f"set {ENV_BOOTSTRAP} to an existing broker")


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def check_reachable(bootstrap: str, timeout: float = 30.0) -> None:
    """Wait until a broker at `bootstrap` answers a metadata request."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 3000})
    deadline = time.monotonic() + timeout
    while True:
        try:
            if admin.list_topics(timeout=3).brokers:
                return
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise ServiceUnavailable(f"Kafka at {bootstrap} is not reachable: {exc}") from exc
        if time.monotonic() > deadline:
            raise ServiceUnavailable(f"Kafka at {bootstrap} reports no brokers")
        time.sleep(0.1)


@dataclass
class KafkaServer:
    """One Kafka broker: started here, or the one ``STRANGLER_KAFKA_BOOTSTRAP`` names."""

    heap: str = field(default_factory=lambda: os.environ.get(ENV_HEAP, DEFAULT_HEAP))
    bootstrap: str = ""
    port: int = 0
    controller_port: int = 0
    datadir: str = ""
    owned: bool = False
    start_seconds: float = 0.0  # wall time of the last start, for the curious
    _root: str = ""
    _proc: subprocess.Popen[bytes] | None = None
    _java: str = ""
    _libs: Path | None = None

    def start(self) -> KafkaServer:
        existing = os.environ.get(ENV_BOOTSTRAP)
        if existing:
            self.bootstrap = existing
            check_reachable(existing)
            return self
        self._java = find_java()
        self._libs = kafka_jars()
        self._root = tempfile.mkdtemp(prefix="strangler-kafka-")
        self.datadir = os.path.join(self._root, "data")
        self.port, self.controller_port = free_port(), free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._write_config()
        self.owned = True
        try:
            self._format()
            self.resume()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def log_path(self) -> str:
        return os.path.join(self._root, "server.log")

    def _write_config(self) -> None:
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": self.datadir,
            **BROKER_SETTINGS,
        }
        with open(os.path.join(self._root, "server.properties"), "w") as fh:
            fh.writelines(f"{k}={v}\n" for k, v in settings.items())
        with open(os.path.join(self._root, "log4j2.properties"), "w") as fh:
            fh.write(log4j2.config(self.log_path))

    def _java_argv(self, main: str, *args: str, heap: str) -> list[str]:
        assert self._libs is not None
        return [
            self._java, f"-Xmx{heap}", "-Xms64m", *JVM_FLAGS,
            f"-Dlog4j2.configurationFile={os.path.join(self._root, 'log4j2.properties')}",
            "-cp", f"{self._libs}/*", main, *args,
        ]

    def _format(self) -> None:
        cluster_id = "-"
        while cluster_id.startswith("-"):  # the tool would read it as an option (Kafka avoids it too)
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        argv = self._java_argv(
            "kafka.tools.StorageTool", "format", "-t", cluster_id,
            "-c", os.path.join(self._root, "server.properties"), heap="256m",
        )
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
        if proc.returncode != 0:
            raise ServiceUnavailable(
                f"formatting Kafka storage failed (exit {proc.returncode}): "
                f"{(proc.stdout + proc.stderr).strip()[-1500:]}"
            )

    def resume(self) -> None:
        """Start the broker process on this server's ports and data (after `halt`)."""
        if not self.owned:
            raise ServiceUnavailable("cannot start a broker this process did not create")
        if self.running:
            return
        began = time.monotonic()
        argv = self._java_argv(
            "kafka.Kafka", os.path.join(self._root, "server.properties"), heap=self.heap
        )
        with open(os.path.join(self._root, "stdout.log"), "ab") as out:
            self._proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self._root, preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + START_TIMEOUT
        # Wait for the listener first: a client polling a closed port only fills stderr.
        while not _port_open(self.port):
            if self._proc.poll() is not None:
                raise ServiceUnavailable(
                    f"the Kafka broker exited with code {self._proc.returncode}:\n{self._log_tail()}"
                )
            if time.monotonic() > deadline:
                raise ServiceUnavailable(
                    f"the Kafka broker did not listen within {START_TIMEOUT:.0f}s:\n{self._log_tail()}"
                )
            time.sleep(0.05)
        check_reachable(self.bootstrap, timeout=max(5.0, deadline - time.monotonic()))
        self.start_seconds = time.monotonic() - began

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def halt(self, *, hard: bool = False) -> None:
        """Stop the broker process but keep its data (SIGTERM, or SIGKILL when `hard`)."""
        proc, self._proc = self._proc, None
        stop_process(proc, hard=hard)

    def restart(self, *, hard: bool = False) -> None:
        """Stop and start the same broker (same ports, data kept): for fault tests."""
        if not self.owned:
            raise ServiceUnavailable("cannot restart a broker this process did not start")
        self.halt(hard=hard)
        self.resume()

    def stop(self) -> None:
        """Stop the broker and delete its data folder (nothing to do for an existing broker).
        SIGKILL: a controlled shutdown (seconds of leader moves and log flushes) is for data
        that is kept."""
        self.halt(hard=True)
        self.owned = False
        if self._root:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = ""

    def _log_tail(self, chars: int = 3000) -> str:
        text = ""
        for name in ("stdout.log", "server.log"):
            path = os.path.join(self._root, name)
            if os.path.exists(path):
                with open(path, errors="replace") as fh:
                    text += fh.read()[-chars:]
        return text

    def __enter__(self) -> KafkaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
