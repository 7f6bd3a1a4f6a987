"""The Kafka transport (``transport: {kind: kafka}``): the stream's changes through Kafka
topics, so capture and apply can run in different processes and on different machines.

    capture end   :class:`cdc.transport.kafka_capture.KafkaCapture` — source events to the
                  table topics and ``<prefix>.transaction``; durable once Kafka has them
    apply end     :class:`cdc.transport.kafka_apply.KafkaApply` — whole source
                  transactions in commit order; its resume token (the offsets to read
                  next) is committed by the sink in the same target transaction as the rows
    topics        :mod:`cdc.transport.kafka_topics` — names, settings, checks at start

The halves are run by :mod:`cdc.transport.kafka_run` (``strangler cdc run --part``); one
applier per stream holds the lease in the target (:mod:`cdc.lease`), others stand by.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from cdc.mapping import TableSchema
from cdc.transport import Resume
from cdc.transport.kafka_apply import KafkaApply
from cdc.transport.kafka_capture import KafkaCapture
from cdc.transport.kafka_topics import (
    KafkaSettings,
    KafkaTransportError,
    ensure_topics,
    read_compacted,
)

log = logging.getLogger("cdc.kafka")


class KafkaTransport:
    """Both ends of one stream's Kafka transport; each end is made when first asked for."""

    in_process = False

    def __init__(self, settings: KafkaSettings, tables: Sequence[str]) -> None:
        self.settings = settings
        self.tables = list(tables)
        self._publisher: KafkaCapture | None = None
        self._schemas: dict[str, TableSchema] = {}

    def publisher(self) -> KafkaCapture:
        if self._publisher is None:
            self._publisher = KafkaCapture(self.settings, self.tables)
        return self._publisher

    def subscriber(self, resume: Resume | None) -> KafkaApply:
        """Values decode by the schemas the capture published (read by `source_schemas`, or
        told to this process's own capture end)."""
        schemas = self._schemas or (self._publisher.schemas if self._publisher is not None else {})
        return KafkaApply(self.settings, self.tables, resume=resume, schemas=schemas)

    def source_schemas(self, stop: threading.Event, timeout: float = 0.0) -> dict[str, TableSchema] | None:
        """Each source table's latest schema as the capture published it (the apply end never
        connects to the source); waits until every table has one. None if `stop` is set
        first; with `timeout`, KafkaTransportError saying which are missing."""
        ensure_topics(self.settings, self.tables)
        topic = self.settings.schema_topic
        deadline = time.monotonic() + timeout if timeout else None
        while not stop.is_set():
            try:
                raw = read_compacted(self.settings, topic, timeout=10)
            except KafkaTransportError:
                if deadline is not None and time.monotonic() > deadline:
                    raise
                stop.wait(0.2)  # a topic just created has no leader for a moment
                continue
            found = {key: TableSchema.from_json(json.loads(value)) for key, value in raw.items()}
            missing = [t for t in self.tables if t not in found]
            if not missing:
                self._schemas = {t: found[t] for t in self.tables}
                return dict(self._schemas)
            if deadline is not None and time.monotonic() > deadline:
                raise KafkaTransportError(
                    f"no schema for {', '.join(missing)} on {topic} after {timeout:.0f}s: the capture "
                    f"half publishes it when it starts (`strangler cdc run {self.settings.stream} "
                    "--part capture`)")
            log.info("%s: waiting for the capture half to publish the schema of %s", self.settings.stream,
                     ", ".join(missing))
            stop.wait(1.0)
        return None

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None


def make_transport(cfg: Any) -> KafkaTransport:
    """From a :class:`cdc.config.StreamConfig` with ``transport: {kind: kafka, …}``."""
    return KafkaTransport(KafkaSettings.from_stream(cfg), [t.source for t in cfg.tables])


__all__ = ["KafkaApply", "KafkaCapture", "KafkaSettings", "KafkaTransport", "KafkaTransportError",
           "ensure_topics", "make_transport"]
