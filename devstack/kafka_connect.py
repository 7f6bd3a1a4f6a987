"""Kafka Connect standalone with Debezium's JDBC sink connector, applying topics into PostgreSQL.

A consumer written for Debezium, run as Debezium users run it: Kafka's own
``org.apache.kafka.connect.cli.ConnectStandalone`` (one worker, offsets in a file, the REST
interface on a free loopback port) with ``io.debezium.connector.jdbc.JdbcSinkConnector`` reading
``topics`` into the database `dsn` names. The jars come from Maven Central, fetched once with
Maven into the cache folder beside Kafka's (`devstack/maven.py`), and run on the machine's
Java 17. The sink needs schemas in the messages, so the worker's converters are Kafka's
JsonConverter with ``schemas.enable=true``: the topics must hold ``{"schema", "payload"}``
JSON (a stream with ``schemas_enable: true``, or Debezium with its converter's default).

    with JdbcSink(bootstrap=kafka.bootstrap, dsn=target_dsn, topics=["shop.public.items"]) as sink:
        ...  # rows arrive in the target's table "items" (the source table's name)
        sink.check()  # raises with the task's trace if the sink failed

What Maven Central serves decides the versions (checked 2026-12): Connect 4.1.1, the broker's
line; ``io.debezium:debezium-connector-jdbc`` 3.6.0.Final, since 3.6.1.Final (the version of
our Debezium source connector) is not served, neither its POM nor its jar; its
``org.hibernate:hibernate-agroal:7.2.6.Final`` (the connection pool) is not served either, so
``org.hibernate.orm:hibernate-agroal`` and ``hibernate-core`` 7.2.19.Final, the same 7.2 line,
stand in; the MySQL, MariaDB, SQL Server and Oracle drivers it also pulls in are left out.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack import log4j2
from devstack.errors import ServiceUnavailable
from devstack.kafka import JVM_FLAGS, KAFKA_VERSION, LOG4J_VERSION, find_java
from devstack.maven import fetch_jars
from devstack.ports import free_port
from devstack.processes import die_with_parent, stop_process

CONNECT_VERSION = KAFKA_VERSION
JDBC_SINK_VERSION = "3.6.0.Final"
HIBERNATE_VERSION = "7.2.19.Final"
ENV_HEAP = "STRANGLER_CONNECT_HEAP"
DEFAULT_HEAP = "384m"
START_TIMEOUT = 120.0
MAIN_CLASS = "org.apache.kafka.connect.cli.ConnectStandalone"
SINK_CLASS = "io.debezium.connector.jdbc.JdbcSinkConnector"

POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>strangler.devstack</groupId>
  <artifactId>connect-jdbc-sink</artifactId>
  <version>{connect}-{sink}</version>
  <packaging>pom</packaging>
  <dependencyManagement>
    <dependencies>
      <dependency>
        <groupId>org.apache.kafka</groupId><artifactId>connect-api</artifactId><version>{connect}</version>
      </dependency>
      <dependency>
        <groupId>org.apache.kafka</groupId><artifactId>kafka-clients</artifactId><version>{connect}</version>
      </dependency>
      <dependency>
        <groupId>org.hibernate.orm</groupId><artifactId>hibernate-core</artifactId>
        <version>{hibernate}</version>
      </dependency>
    </dependencies>
  </dependencyManagement>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId><version>{connect}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>connect-json</artifactId><version>{connect}</version>
    </dependency>
    <dependency>
      <groupId>io.debezium</groupId><artifactId>debezium-connector-jdbc</artifactId><version>{sink}</version>
      <exclusions>
        <exclusion><groupId>org.hibernate</groupId><artifactId>hibernate-agroal</artifactId></exclusion>
        <exclusion><groupId>com.mysql</groupId><artifactId>mysql-connector-j</artifactId></exclusion>
        <exclusion><groupId>org.mariadb.jdbc</groupId><artifactId>mariadb-java-client</artifactId></exclusion>
        <exclusion><groupId>com.microsoft.sqlserver</groupId><artifactId>mssql-jdbc</artifactId></exclusion>
        <exclusion><groupId>com.oracle.database.jdbc</groupId><artifactId>ojdbc11</artifactId></exclusion>
      </exclusions>
    </dependency>
    <dependency>
      <groupId>org.hibernate.orm</groupId><artifactId>hibernate-agroal</artifactId><version>{hibernate}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""



def connect_jars() -> Path:
    """The folder of Kafka Connect's and the JDBC sink's jars, fetched on first use and cached."""
    return fetch_jars(
        f"connect-{CONNECT_VERSION}-jdbc-{JDBC_SINK_VERSION}",
        POM.format(connect=CONNECT_VERSION, sink=JDBC_SINK_VERSION, hibernate=HIBERNATE_VERSION,
                   log4j=LOG4J_VERSION),
        [f"connect-runtime-{CONNECT_VERSION}.jar", f"debezium-connector-jdbc-{JDBC_SINK_VERSION}.jar",
         f"hibernate-agroal-{HIBERNATE_VERSION}.jar"],
        f"org.apache.kafka:connect-runtime:{CONNECT_VERSION} and "
        f"io.debezium:debezium-connector-jdbc:{JDBC_SINK_VERSION}",
    )


def connect_runtime() -> tuple[str, str]:
    """`java` and the classpath that runs Kafka Connect with the JDBC sink (fetched on first use)."""
    java = find_java(needed_by=f"Kafka Connect {CONNECT_VERSION}", instead="")
    return java, f"{connect_jars()}/*"


def _jdbc_url(dsn: str) -> tuple[str, dict[str, str]]:
    """The JDBC URL of a libpq DSN, and the user/password properties the sink takes apart."""
    from psycopg2.extensions import parse_dsn

    conn = parse_dsn(dsn)
    user = conn.get("user") or os.environ.get("PGUSER") or "postgres"
    # stringtype=unspecified: a string parameter reaches PostgreSQL untyped, so a column that
    # travels as text (numeric in our default mode, interval, an enum) is read by the column's
    # own type instead of refused as character varying
    url = (f"jdbc:postgresql://{conn.get('host') or '127.0.0.1'}:{conn.get('port') or '5432'}/"
           f"{conn.get('dbname') or user}?stringtype=unspecified")
    creds = {"connection.username": user}
    if conn.get("password"):
        creds["connection.password"] = conn["password"]
    return url, creds


def _properties(path: str, props: dict[str, str]) -> None:
    # Connect reads these with java.util.Properties: escape what it would take as syntax
    def esc(text: str) -> str:
        return "".join("\\" + c if c in "\\=:#!" else c for c in text)

    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(f"{esc(k)}={esc(v)}\n" for k, v in props.items())


@dataclass(kw_only=True)
class JdbcSink:
    """Kafka Connect standalone on `bootstrap` with Debezium's JDBC sink: `topics` -> `dsn`.

    The sink upserts by the record key, deletes on delete events and tombstones, and names
    each target table after the source table (``${source.table}``); `options` are further
    connector properties (``schema.evolution``, ``collection.name.format``…) and win over
    these, `worker` further worker properties.
    """

    bootstrap: str
    dsn: str
    topics: list[str]
    name: str = "strangler-jdbc-sink"
    options: dict[str, str] = field(default_factory=dict)
    worker: dict[str, str] = field(default_factory=dict)
    heap: str = field(default_factory=lambda: os.environ.get(ENV_HEAP, DEFAULT_HEAP))
    start_timeout: float = START_TIMEOUT
    start_seconds: float = 0.0  # wall time of the last start, until the task runs
    rest_port: int = 0
    _root: str = ""
    _proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        if not self.topics:
            raise ValueError("topics: name at least one topic for the sink to read")

    def connector_properties(self) -> dict[str, str]:
        url, creds = _jdbc_url(self.dsn)
        props = {
            "name": self.name,
            "connector.class": SINK_CLASS,
            "tasks.max": "1",
            "topics": ",".join(self.topics),
            "connection.url": url,
            **creds,
            "insert.mode": "upsert",
            "primary.key.mode": "record_key",
            "delete.enabled": "true",
            "schema.evolution": "none",
            "collection.name.format": "${source.table}",
            "use.time.zone": "UTC",
        }
        return {**props, **self.options}

    def worker_properties(self) -> dict[str, str]:
        props = {
            "bootstrap.servers": self.bootstrap,
            "key.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "key.converter.schemas.enable": "true",
            "value.converter.schemas.enable": "true",
            "offset.storage.file.filename": os.path.join(self._root, "offsets.dat"),
            "offset.flush.interval.ms": "1000",
            "listeners": f"http://127.0.0.1:{self.rest_port}",
            # the connector and converters by their ServiceLoader manifests: scanning every jar
            # for plugins took twice the CPU of the whole start otherwise (~15 s against ~7 s)
            "plugin.discovery": "service_load",
            "consumer.auto.offset.reset": "earliest",
        }
        return {**props, **self.worker}

    def start(self) -> JdbcSink:
        """Start the worker with the connector; return once its task runs."""
        if self.running:
            return self
        java, classpath = connect_runtime()
        self._root = self._root or tempfile.mkdtemp(prefix="strangler-connect-")
        self.rest_port = self.rest_port or free_port()
        try:
            self._launch(java, classpath)
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self, java: str, classpath: str) -> None:
        worker, connector = (os.path.join(self._root, f) for f in ("worker.properties", "sink.properties"))
        _properties(worker, self.worker_properties())
        _properties(connector, self.connector_properties())
        with open(os.path.join(self._root, "log4j2.properties"), "w") as fh:
            fh.write(log4j2.config(self.log_path, ("org.apache.kafka", "org.hibernate")))
        began = time.monotonic()
        argv = [
            java, f"-Xmx{self.heap}", "-Xms64m", *JVM_FLAGS,  # a worker that lives minutes, as the broker
            f"-Dlog4j2.configurationFile={os.path.join(self._root, 'log4j2.properties')}",
            "-cp", classpath, MAIN_CLASS, worker, connector,
        ]
        with open(os.path.join(self._root, "stdout.log"), "ab") as out:
            self._proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self._root, preexec_fn=die_with_parent,
            )
        deadline = began + self.start_timeout
        while True:
            state = self.status()
            tasks = state.get("tasks") or []
            if tasks and all(t.get("state") == "RUNNING" for t in tasks):
                break
            self.check(state)
            if self._proc.poll() is not None:
                raise ServiceUnavailable(
                    f"Kafka Connect exited with code {self._proc.returncode} before its task ran:\n"
                    f"{self._log_tail()}"
                )
            if time.monotonic() > deadline:
                raise ServiceUnavailable(
                    f"the JDBC sink's task did not run within {self.start_timeout:.0f}s "
                    f"(status: {state}):\n{self._log_tail()}"
                )
            time.sleep(0.2)
        self.start_seconds = time.monotonic() - began

    def status(self) -> dict[str, Any]:
        """The connector's status from the worker's REST interface ({} while it is not up)."""
        url = f"http://127.0.0.1:{self.rest_port}/connectors/{self.name}/status"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                body: dict[str, Any] = json.loads(resp.read())
                return body
        except (OSError, ValueError):  # not listening yet, or the connector not created yet
            return {}

    def check(self, state: dict[str, Any] | None = None) -> None:
        """Raise ServiceUnavailable, with the worker's trace, if the connector or a task failed."""
        state = self.status() if state is None else state
        failed = [part for part in [state.get("connector") or {}, *(state.get("tasks") or [])]
                  if part.get("state") == "FAILED"]
        if failed:
            trace = str(failed[0].get("trace") or "")
            causes = [line for line in trace.splitlines() if line.startswith("Caused by: ")]
            root = causes[-1].removeprefix("Caused by: ") if causes else trace.split("\n", 1)[0]
            raise ServiceUnavailable(f"Debezium's JDBC sink failed: {root}\n{trace[:3000]}")
        if self._proc is not None and self._proc.poll() is not None:
            raise ServiceUnavailable(
                f"Kafka Connect exited with code {self._proc.returncode}:\n{self._log_tail()}")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> str:
        return os.path.join(self._root, "connect.log")

    def halt(self) -> None:
        """Stop the worker (SIGTERM; SIGKILL after 30 s), keeping its folder."""
        proc, self._proc = self._proc, None
        stop_process(proc)

    def stop(self) -> None:
        """Stop the worker and delete its folder (offsets, logs)."""
        self.halt()
        if self._root:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = ""

    def _log_tail(self, chars: int = 3000) -> str:
        text = ""
        for path in (os.path.join(self._root, "stdout.log"), self.log_path):
            with contextlib.suppress(OSError), open(path, errors="replace") as fh:
                text += fh.read()[-chars:]
        return text

    def __enter__(self) -> JdbcSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["CONNECT_VERSION", "JDBC_SINK_VERSION", "JdbcSink", "connect_jars", "connect_runtime"]
