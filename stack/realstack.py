"""The throwaway services behind `--real` (`up`, `walkthrough`): PostgreSQL, Kafka, Zipkin.

PostgreSQL (`devstack.postgres`, wal_level=logical) holds the monolith's database and one per
declared service (stack/services.py), so CDC runs on
pgoutput. It runs detached (pg_ctl), so its folder is recorded in `.strangler/run/` and
`down` can stop it from another process. Kafka (`devstack.kafka`, when the checkout has
it) is a child of this `up` process that dies with it, so `--real` with a local broker
stays in the foreground; `STRANGLER_KAFKA_BOOTSTRAP` names an existing broker instead.
With Kafka, the streams file is rewritten into `.strangler/streams.real.yaml` with
`transport: {kind: kafka}` for every stream. `walkthrough --real` asks for Kafka only where
the machine can start it (`kafka="optional"`: else one line says so and CDC stays direct)
and for a Zipkin (devstack.zipkin, a child like Kafka) its traces go to.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stack.errors import StackError
from stack.model import part_present
from stack.services import declared

PG_STATE = "postgres.state"

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass
class RealServices:
    run_dir: Path
    monolith_db: str = ""
    databases: dict[str, str] = field(default_factory=dict)  # service → URL
    streams: Path | None = None
    kafka: Any = None
    zipkin: Any = None  # devstack.zipkin.ZipkinServer when asked for
    progress: Progress = field(default=_quiet, repr=False)  # one line per step, for stderr

    @property
    def transport(self) -> str:
        """The CDC transport the streams run on: kafka or direct."""
        return "kafka" if self.kafka is not None else "direct"

    def start(self, *, streams: Path | None, detach: bool, state: Path, kafka: str = "required",
              zipkin: bool = False) -> RealServices:
        """`kafka`: "required" (a broker that cannot start is an error), "optional" (then the
        direct transport, said in one line) or "off"; `zipkin`: start one too."""
        from devstack import PostgresServer, ServiceUnavailable

        use_kafka = kafka != "off" and part_present("kafka") and streams is not None and streams.exists()
        if kafka != "off" and not part_present("kafka"):
            self.progress("note: Kafka is not in this checkout (devstack.kafka); "
                          "--real runs on PostgreSQL with the direct CDC transport.")
        elif use_kafka and detach and not os.environ.get("STRANGLER_KAFKA_BOOTSTRAP"):
            raise StackError(
                "--real with a local Kafka broker runs in the foreground (the broker lives as long "
                "as `strangler up`): drop --detach, or set STRANGLER_KAFKA_BOOTSTRAP to an existing broker"
            )
        self.progress("starting PostgreSQL (wal_level=logical)")
        try:
            pg = PostgresServer(outlive_owner=detach).start()  # detached: `down` stops it
        except ServiceUnavailable as exc:
            raise StackError(f"--real needs PostgreSQL: {exc}") from exc
        (self.run_dir / PG_STATE).write_text(json.dumps(
            {"dsn": pg.dsn, "port": pg.port, "datadir": pg.datadir, "root": pg._root, "owned": pg.owned}))
        self.progress(f"PostgreSQL ready at 127.0.0.1:{pg.port}")
        try:
            self.monolith_db = pg.create_database("monolith")
            self.databases = {s.name: pg.create_database(s.database) for s in declared()}
            self.streams = streams
            if use_kafka and streams is not None:
                self._start_kafka(optional=kafka == "optional")
            if self.kafka is not None and streams is not None:
                self.streams = kafka_streams(streams, state / "streams.real.yaml", self.kafka.bootstrap)
            if zipkin:
                self._start_zipkin()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_kafka(self, *, optional: bool = False) -> None:
        from devstack import ServiceUnavailable
        from devstack.kafka import KafkaServer

        self.progress("starting Kafka (KRaft, first run fetches the jars with Maven)")
        try:
            self.kafka = KafkaServer().start()
        except ServiceUnavailable as exc:
            if not optional:
                raise StackError(f"--real needs Kafka: {exc}") from exc
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self.progress(f"note: Kafka cannot start here ({first}); CDC runs on the direct transport")
            return
        self.progress(f"Kafka ready at {self.kafka.bootstrap}")

    def _start_zipkin(self) -> None:
        from devstack import ServiceUnavailable
        from devstack.zipkin import ZipkinServer

        self.progress("starting Zipkin (first run fetches its jar with Maven)")
        try:
            self.zipkin = ZipkinServer().start()
        except ServiceUnavailable as exc:
            raise StackError(f"--real needs Zipkin for its traces: {exc}") from exc
        self.progress(f"Zipkin ready at {self.zipkin.url}")

    def stop(self) -> bool:
        """Stop what `start` (here or in another process) left running; True if anything."""
        stopped = False
        if self.zipkin is not None:
            self.zipkin.stop()
            self.zipkin = None
            self.progress("stopped Zipkin")
            stopped = True
        if self.kafka is not None:
            self.kafka.stop()
            self.kafka = None
            self.progress("stopped Kafka")
            stopped = True
        return stop_postgres(self.run_dir, progress=self.progress) or stopped


def stop_postgres(run_dir: Path, *, progress: Progress = _quiet) -> bool:
    path = run_dir / PG_STATE
    if not path.exists():
        return False
    from devstack import PostgresServer

    info = json.loads(path.read_text())
    PostgresServer(dsn=info["dsn"], port=info["port"], datadir=info["datadir"],
                   owned=info["owned"], _root=info["root"]).stop()
    path.unlink(missing_ok=True)
    progress("stopped PostgreSQL")
    return True


def kafka_streams(source: Path, target: Path, bootstrap: str) -> Path:
    """A copy of the streams file with every stream on the Kafka transport."""
    doc: dict[str, Any] = yaml.safe_load(source.read_text()) or {}
    for spec in (doc.get("streams") or {}).values():
        if isinstance(spec, dict):
            spec["transport"] = {"kind": "kafka", "bootstrap": bootstrap}
    target.write_text(yaml.safe_dump(doc, sort_keys=False))
    return target
