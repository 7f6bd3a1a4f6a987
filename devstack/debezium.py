"""Debezium's own PostgreSQL connector, run beside our capture, for comparisons and benchmarks.

It reads the same PostgreSQL source (its own slot and publication, ``plugin.name=pgoutput``)
and publishes Debezium's default JSON output (the schemaless JSON converter) into its own
topics, ``<topic_prefix>.<schema>.<table>``, on the same Kafka broker. No Kafka Connect and
no Docker: a small Java main of ours (``debezium_runner/StranglerDebezium.java``) runs
Debezium's embedded engine and sends each record with a Kafka producer, marking it processed
only once Kafka has acknowledged it. The jars (``io.debezium:debezium-embedded`` and
``debezium-connector-postgres`` with their runtime dependencies) come from Maven Central,
fetched once with Maven into the cache folder beside Kafka's, and the main is compiled there
with the JDK's `javac`; both run on the machine's Java 17.

    with DebeziumConnector(dsn=pg_dsn, bootstrap=kafka.bootstrap, topic_prefix="dbz",
                           tables=["public.orders"], slot="dbz_orders") as dbz:
        ...  # changes made now arrive in topic "dbz.public.orders"
        dbz.wait_acked(3)

`start()` returns once the snapshot (if any) has been read and the connector streams: from
then on every change is captured, though snapshot rows may still be on their way to Kafka
(`wait_acked` waits for them). ``options`` with keys ``strangler.producer.X`` set the
runner's producer setting X (``batch.size``, ``linger.ms``…). Offsets live
in a file in the run's folder: `halt()`/`kill()` and `start()` again resume from them, as
Debezium does after a crash; `stop()` deletes the folder. The replication slot outlives the
connector: drop it with `drop_slot()` when done.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from devstack import log4j2
from devstack.errors import ServiceUnavailable
from devstack.kafka import LOG4J_VERSION, find_java, java_major
from devstack.maven import cache_dir, fetch_jars
from devstack.processes import die_with_parent, stop_process

DEBEZIUM_VERSION = "3.6.1.Final"
JAVA_RELEASE = 17  # what Debezium 3.6's classes need, and what the main is compiled for
ENV_HEAP = "STRANGLER_DEBEZIUM_HEAP"
DEFAULT_HEAP = "384m"
START_TIMEOUT = 120.0
RUNNER = Path(__file__).parent / "debezium_runner" / "StranglerDebezium.java"
MAIN_CLASS = "StranglerDebezium"
JDK_PACKAGE = "openjdk-17-jdk-headless"  # javac, not only java

POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>strangler.devstack</groupId>
  <artifactId>debezium-runtime</artifactId>
  <version>{debezium}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>io.debezium</groupId><artifactId>debezium-embedded</artifactId><version>{debezium}</version>
    </dependency>
    <dependency>
      <groupId>io.debezium</groupId><artifactId>debezium-connector-postgres</artifactId>
      <version>{debezium}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""



def debezium_jars(version: str = DEBEZIUM_VERSION) -> Path:
    """The folder of Debezium's jars, fetched from Maven Central on first use and cached."""
    return fetch_jars(f"debezium-{version}", POM.format(debezium=version, log4j=LOG4J_VERSION),
                      [f"debezium-embedded-{version}.jar", f"debezium-connector-postgres-{version}.jar"],
                      f"io.debezium:debezium-embedded and debezium-connector-postgres {version}")


def find_javac(java: str) -> str:
    """The `javac` of the JDK that `java` belongs to (``$JAVA_HOME``, beside `java`, or PATH)."""
    home = os.environ.get("JAVA_HOME")
    if home:
        candidates = [os.path.join(home, "bin", "javac")]
    else:
        candidates = [os.path.join(os.path.dirname(os.path.realpath(java)), "javac")]
        candidates.append(shutil.which("javac") or "")
    javac = next((c for c in candidates if c and os.access(c, os.X_OK)), None)
    if javac is None:
        where = "in $JAVA_HOME/bin" if home else f"beside {java} and on PATH"
        raise ServiceUnavailable(
            f"javac was not found ({where}): Debezium's runner is compiled once, and that needs "
            f"a JDK, not only a JRE. Install one (Debian/Ubuntu: `apt-get install {JDK_PACKAGE}`) "
            "or set JAVA_HOME to one."
        )
    major = java_major(javac)
    if major < JAVA_RELEASE:
        raise ServiceUnavailable(
            f"javac {major} found at {javac}, but Debezium {DEBEZIUM_VERSION} needs Java "
            f"{JAVA_RELEASE} or newer: install {JDK_PACKAGE} and set JAVA_HOME."
        )
    return javac


def _runner_folder() -> Path:
    """Where the compiled main lives: named by the source's hash, so an edit recompiles."""
    digest = hashlib.sha256(RUNNER.read_bytes() + f"{DEBEZIUM_VERSION}/{JAVA_RELEASE}".encode())
    return cache_dir() / f"debezium-{DEBEZIUM_VERSION}" / f"runner-{digest.hexdigest()[:12]}"


def _compile_runner(javac: str, libs: Path, folder: Path) -> None:
    done = folder / ".complete"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / ".lock-runner", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return
        staging = folder.with_name(folder.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        proc = subprocess.run(
            [javac, "--release", str(JAVA_RELEASE), "-encoding", "UTF-8", "-nowarn",
             "-cp", f"{libs}/*", "-d", str(staging), str(RUNNER)],
            capture_output=True, text=True, check=False, timeout=300,
        )
        if proc.returncode != 0:
            raise ServiceUnavailable(
                f"compiling {RUNNER.name} failed (exit {proc.returncode}): "
                f"{(proc.stdout + proc.stderr).strip()[-1500:]}"
            )
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
        done.write_text(RUNNER.name + "\n")


def debezium_runtime() -> tuple[str, str]:
    """`java` and the classpath that runs Debezium: jars fetched and main compiled on first use.

    The tools are looked up before anything is fetched, so a missing one is said at once.
    """
    java = find_java(needed_by=f"Debezium {DEBEZIUM_VERSION}", package=JDK_PACKAGE, instead="")
    classes = _runner_folder()
    javac = None if (classes / ".complete").exists() else find_javac(java)
    libs = debezium_jars()
    if javac is not None:
        _compile_runner(javac, libs, classes)
    return java, f"{classes}{os.pathsep}{libs}/*"


def _escape(text: str, *, key: bool = False) -> str:
    """`text` as java.util.Properties reads it back (ISO 8859-1 with backslash escapes)."""
    out = []
    for i, ch in enumerate(text):
        if ch in "\\=:#!" or (ch == " " and (key or i == 0)):
            out.append("\\" + ch)
        elif ch in "\t\n\r\f":
            out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}[ch])
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            units = ch.encode("utf-16-be")
            out.extend(f"\\u{units[j]:02x}{units[j + 1]:02x}" for j in range(0, len(units), 2))
    return "".join(out)


def _regex_literal(name: str) -> str:
    """A table name as the literal regular expression Debezium's include lists take."""
    return re.sub(r"([.$^*+?()\[\]{}|\\])", r"\\\1", name)


@dataclass(kw_only=True)
class DebeziumConnector:
    """Debezium's PostgreSQL connector on `dsn`, publishing to `bootstrap` under `topic_prefix`.

    `tables` are ``schema.table`` names (all tables when empty); `slot` and `publication`
    default to ``dbz_<topic_prefix>``; `options` are further Debezium properties
    (``decimal.handling.mode``, ``tombstones.on.delete``, ``provide.transaction.metadata``…)
    and win over every property set here.
    """

    dsn: str
    bootstrap: str
    topic_prefix: str
    tables: list[str] = field(default_factory=list)
    slot: str = ""
    publication: str = ""
    snapshot_mode: str = "initial"
    options: dict[str, str] = field(default_factory=dict)
    heap: str = field(default_factory=lambda: os.environ.get(ENV_HEAP, DEFAULT_HEAP))
    start_timeout: float = START_TIMEOUT
    start_seconds: float = 0.0  # wall time of the last start, until "streaming"
    _root: str = ""
    _proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.topic_prefix):
            raise ValueError(
                f"topic_prefix={self.topic_prefix!r}: use letters, digits, '_', '.' or '-' "
                "(it starts every topic name)"
            )
        for table in self.tables:
            if table.count(".") != 1:
                raise ValueError(f"tables: {table!r} is not 'schema.table' (e.g. 'public.orders')")
        default = "dbz_" + re.sub(r"[^a-z0-9_]", "_", self.topic_prefix.lower())
        self.slot = self.slot or default[:63]
        self.publication = self.publication or default[:63]

    def properties(self) -> dict[str, str]:
        """The Debezium engine's properties (the runner's own ``strangler.*`` ones aside)."""
        from psycopg2.extensions import parse_dsn

        conn = parse_dsn(self.dsn)
        user = conn.get("user") or os.environ.get("PGUSER") or "postgres"
        props = {
            "name": f"strangler-{self.topic_prefix}",
            "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "plugin.name": "pgoutput",
            "database.hostname": conn.get("host") or "127.0.0.1",
            "database.port": conn.get("port") or "5432",
            "database.user": user,
            "database.dbname": conn.get("dbname") or user,
            "topic.prefix": self.topic_prefix,
            "slot.name": self.slot,
            "publication.name": self.publication,
            "publication.autocreate.mode": "filtered",
            "snapshot.mode": self.snapshot_mode,
            "key.converter.schemas.enable": "false",
            "value.converter.schemas.enable": "false",
            "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
            "offset.storage.file.filename": os.path.join(self._root, "offsets.dat"),
            "offset.flush.interval.ms": "1000",
        }
        if conn.get("password"):
            props["database.password"] = conn["password"]
        if self.tables:
            props["table.include.list"] = ",".join(_regex_literal(t) for t in self.tables)
        return {**props, **self.options}

    def start(self) -> DebeziumConnector:
        """Start the connector (again, after `halt`: from the kept offsets); return once it streams."""
        if self.running:
            return self
        java, classpath = debezium_runtime()
        fresh = not self._root
        if fresh:
            self._root = tempfile.mkdtemp(prefix="strangler-debezium-")
        try:
            self._launch(java, classpath)
        except BaseException:
            if fresh:
                self.stop()
            else:
                self.halt(hard=True)
            raise
        return self

    def _launch(self, java: str, classpath: str) -> None:
        props = {**self.properties(), "strangler.bootstrap": self.bootstrap,
                 "strangler.status": self.status_path}
        path = os.path.join(self._root, "debezium.properties")
        with open(path, "w", encoding="latin-1") as fh:
            fh.writelines(f"{_escape(k, key=True)}={_escape(v)}\n" for k, v in props.items())
        with open(os.path.join(self._root, "log4j2.properties"), "w") as fh:
            fh.write(log4j2.config(self.log_path))
        open(self.status_path, "w").close()  # counts start again with each process
        began = time.monotonic()
        argv = [
            java, f"-Xmx{self.heap}", "-Xms64m", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={os.path.join(self._root, 'log4j2.properties')}",
            "-cp", classpath, MAIN_CLASS, path,
        ]
        with open(os.path.join(self._root, "stdout.log"), "ab") as out:
            self._proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self._root, preexec_fn=die_with_parent,
            )
        deadline = began + self.start_timeout
        while True:
            lines = self.status()
            failed = [line for line in lines if line.startswith("failed")]
            if failed:
                raise ServiceUnavailable(f"Debezium {failed[0]}\n{self._log_tail()}")
            if "streaming" in lines:
                break
            if self._proc.poll() is not None:
                raise ServiceUnavailable(
                    f"Debezium exited with code {self._proc.returncode} before streaming:\n"
                    f"{self._log_tail()}"
                )
            if time.monotonic() > deadline:
                raise ServiceUnavailable(
                    f"Debezium did not stream within {self.start_timeout:.0f}s "
                    f"(status: {lines}):\n{self._log_tail()}"
                )
            time.sleep(0.1)
        self.start_seconds = time.monotonic() - began

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> str:
        return os.path.join(self._root, "debezium.log")

    @property
    def status_path(self) -> str:
        return os.path.join(self._root, "status")

    def status(self) -> list[str]:
        """The runner's status lines so far ("started", "streaming", "acked N T", …)."""
        try:
            with open(self.status_path, encoding="utf-8", errors="replace") as fh:
                return fh.read().splitlines()
        except FileNotFoundError:
            return []

    def _last_acked(self) -> tuple[int, float]:
        for line in reversed(self.status()):
            if line.startswith("acked "):
                _, count, at_ms = line.split()
                return int(count), int(at_ms) / 1000.0
        return 0, 0.0

    @property
    def acked(self) -> int:
        """Records Kafka has acknowledged since this process started (seen within 0.1 s)."""
        return self._last_acked()[0]

    @property
    def acked_at(self) -> float:
        """When (epoch seconds) the last of them was acknowledged; 0.0 before any."""
        return self._last_acked()[1]

    def wait_acked(self, count: int, timeout: float = 30.0) -> int:
        """Wait until at least `count` records are acknowledged; the number acknowledged."""
        deadline = time.monotonic() + timeout
        while (acked := self.acked) < count:
            if not self.running:
                raise ServiceUnavailable(f"Debezium stopped at {acked} records:\n{self._log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"Debezium acknowledged {acked} of {count} records in {timeout:.0f}s")
            time.sleep(0.05)
        return acked

    def halt(self, *, hard: bool = False) -> None:
        """Stop the process (SIGTERM, or SIGKILL when `hard`), keeping offsets and logs."""
        proc, self._proc = self._proc, None
        stop_process(proc, hard=hard)

    def kill(self) -> None:
        """kill -9, for fault tests: the offsets kept are those flushed before it."""
        self.halt(hard=True)

    def stop(self) -> None:
        """Stop the process and delete its folder (the slot stays: see `drop_slot`)."""
        self.halt()
        if self._root:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = ""

    def drop_slot(self, timeout: float = 10.0) -> None:
        """Drop the connector's replication slot (once stopped: a slot in use cannot go)."""
        import psycopg2

        if self.running:
            raise ServiceUnavailable("stop the connector before dropping its slot")
        deadline = time.monotonic() + timeout
        conn = psycopg2.connect(self.dsn)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                while True:  # the walsender lets go of the slot a moment after the JVM is gone
                    try:
                        cur.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                                    " WHERE slot_name = %s", (self.slot,))
                        return
                    except psycopg2.errors.ObjectInUse:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.1)
        finally:
            conn.close()

    def _log_tail(self, chars: int = 3000) -> str:
        text = ""
        for path in (os.path.join(self._root, "stdout.log"), self.log_path):
            with contextlib.suppress(OSError), open(path, errors="replace") as fh:
                text += fh.read()[-chars:]
        return text

    def __enter__(self) -> DebeziumConnector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
