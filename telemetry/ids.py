"""The current span's ids for log lines: ``{"trace_id": …, "span_id": …}`` or nothing."""

from __future__ import annotations

from opentelemetry import trace


def current_ids() -> dict[str, str]:
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return {}
    return {"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}
