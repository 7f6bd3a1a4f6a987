"""Structured logs: one JSON object per line on stderr, carrying the request id.

The request id comes from the router (`X-Request-ID`) or is made here, is echoed in the
response, and is put on every log record written while the request runs (a contextvar),
so one grep follows a request from the router's access log into the service.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Callable

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "service_request_id", default=None
)

# Set by `with_trace_ids` when tracing is on: the current span's ids for each line.
_trace_ids: Callable[[], dict[str, str]] | None = None

# Attributes every LogRecord has; anything else was passed with `extra=` and is logged.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName", "color_message"}


class JSONFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "msg", "request_id", ...extra}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid:
            doc["request_id"] = rid
        if _trace_ids is not None:
            doc.update(_trace_ids())
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in doc:
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


def with_trace_ids() -> None:
    """Put ``trace_id``/``span_id`` on every line (tracing is on)."""
    global _trace_ids
    from telemetry.ids import current_ids

    _trace_ids = current_ids


def configure(logger: str, level: str = "INFO") -> None:
    """Send the service's logs (`logger` and below, e.g. "extracted.catalog") and uvicorn's
    errors to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    for name in (logger, "uvicorn.error"):
        target = logging.getLogger(name)
        target.handlers[:] = [handler]
        target.setLevel(level)
        target.propagate = False
