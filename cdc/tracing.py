"""Apply spans for a stream (off unless OTEL_* turns tracing on; `telemetry.settings`).

One span per batch the applier writes, ``cdc.apply <stream>``, whose attributes carry the
source transactions' identity: their ids (``cdc.tx_ids``, PostgreSQL xids as the source
reported them), the LSN range of the batch's changes (``cdc.lsn.first``/``cdc.lsn.last``,
as ``0/16B3748``), the rows, the tables, and whether the batch ended at a commit. So a
change's apply is found from its commit: search Zipkin by tag ``cdc.tx_ids`` or the LSN.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from cdc.events import ChangeEvent, lsn_str
from telemetry import TracingSettings

SERVICE_NAME = "cdc"
MAX_TX_IDS = 50  # a batch of many small transactions names the first ones (and counts all)


class ApplyTracing:
    def __init__(self, telemetry: Any, stream: str) -> None:
        self.tracer = telemetry.tracer("strangler.cdc")
        self.stream = stream

    @classmethod
    def from_env(cls, stream: str) -> ApplyTracing | None:
        settings = TracingSettings.from_env(service_name=SERVICE_NAME)
        if not settings.enabled:
            return None
        from telemetry.provider import installed, setup

        telemetry = installed() or setup(settings)
        return cls(telemetry, stream)

    def applied(self, events: Sequence[ChangeEvent], began_ns: int, *, committed: bool) -> None:
        """A span for a batch written from `began_ns` (time.time_ns()) until now."""
        from opentelemetry.trace import SpanKind

        tx_ids = list(dict.fromkeys(ev.tx_id for ev in events if ev.tx_id is not None))
        attributes: dict[str, Any] = {
            "strangler.stream": self.stream, "cdc.rows": len(events),
            "cdc.tables": sorted({ev.table for ev in events}),
            "cdc.tx_ids": [str(tx) for tx in tx_ids[:MAX_TX_IDS]], "cdc.tx_count": len(tx_ids),
            "cdc.lsn.first": lsn_str(events[0].position.lsn),
            "cdc.lsn.last": lsn_str(events[-1].position.lsn),
            "cdc.committed": committed,
        }
        commit_ms = max(ev.ts_ms for ev in events)
        if commit_ms:
            attributes["cdc.source_commit_ts_ms"] = commit_ms
        span = self.tracer.start_span(f"cdc.apply {self.stream}", kind=SpanKind.CONSUMER,
                                      start_time=began_ns, attributes=attributes)
        span.end(end_time=time.time_ns())
