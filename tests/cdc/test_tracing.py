"""cdc/tracing.py: an apply span carries its source transactions' ids and LSN range; off by default."""

from __future__ import annotations

import time

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cdc.events import ChangeEvent, Position
from cdc.tracing import ApplyTracing
from telemetry import TracingSettings
from telemetry.provider import setup


def _event(lsn: int, tx: int, table: str = "products") -> ChangeEvent:
    return ChangeEvent(op="c", table=table, key={"id": lsn}, before=None, after={"id": lsn},
                       position=Position(lsn, 1), ts_ms=1_700_000_000_000 + lsn, tx_id=tx)


def test_an_apply_span_names_the_transactions_and_the_lsn_range() -> None:
    memory = InMemorySpanExporter()
    telemetry = setup(TracingSettings(exporter="zipkin"), make_global=False,
                      exporter=InMemorySpanExporter())  # the batch path, not read here
    assert telemetry is not None
    telemetry.provider.add_span_processor(SimpleSpanProcessor(memory))
    tracing = ApplyTracing(telemetry, "catalog")
    began = time.time_ns()
    tracing.applied([_event(0x16B3748, 771), _event(0x16B3800, 771), _event(0x16B3900, 772, "categories")],
                    began, committed=True)
    (span,) = memory.get_finished_spans()
    assert span.name == "cdc.apply catalog"
    assert span.attributes["cdc.tx_ids"] == ("771", "772")
    assert span.attributes["cdc.lsn.first"] == "0/16B3748"
    assert span.attributes["cdc.lsn.last"] == "0/16B3900"
    assert span.attributes["cdc.rows"] == 3 and span.attributes["cdc.committed"] is True
    assert span.attributes["cdc.tables"] == ("categories", "products")
    assert span.start_time == began


def test_off_by_default(monkeypatch) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert ApplyTracing.from_env("catalog") is None
