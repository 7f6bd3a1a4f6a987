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

from collections.abc import Sequence
from typing import Any

from cdc.transport import Resume
from cdc.transport.kafka_apply import KafkaApply
from cdc.transport.kafka_capture import KafkaCapture
from cdc.transport.kafka_topics import KafkaSettings, KafkaTransportError, ensure_topics


class KafkaTransport:
    """Both ends of one stream's Kafka transport; each end is made when first asked for."""

    in_process = False

    def __init__(self, settings: KafkaSettings, tables: Sequence[str]) -> None:
        self.settings = settings
        self.tables = list(tables)
        self._publisher: KafkaCapture | None = None

    def publisher(self) -> KafkaCapture:
        if self._publisher is None:
            self._publisher = KafkaCapture(self.settings, self.tables)
        return self._publisher

    def subscriber(self, resume: Resume | None) -> KafkaApply:
        return KafkaApply(self.settings, self.tables, resume=resume)

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None


def make_transport(cfg: Any) -> KafkaTransport:
    """From a :class:`cdc.config.StreamConfig` with ``transport: {kind: kafka, …}``."""
    return KafkaTransport(KafkaSettings.from_stream(cfg), [t.source for t in cfg.tables])


__all__ = ["KafkaApply", "KafkaCapture", "KafkaSettings", "KafkaTransport", "KafkaTransportError",
           "ensure_topics", "make_transport"]
