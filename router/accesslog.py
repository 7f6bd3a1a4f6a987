"""One JSON line per request (request id, route, backend, status, duration).

Place in the flow: the proxy hands each finished request to `AccessLog.write`; lines are
buffered and written by `flush` (called by the router's housekeeping task every 200 ms and
at shutdown) so the hot path never waits on a write.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import IO, Any


class AccessLog:
    def __init__(self, target: bool | str) -> None:
        self.enabled = bool(target)
        self._buffer: list[str] = []
        self._stream: IO[str] | None = None
        self.trace_ids: Callable[[], dict[str, str]] | None = None  # set by router.tracing when on
        if isinstance(target, str):
            self._stream = open(target, "a", buffering=1)  # noqa: SIM115 (lives as long as the log)
        elif target:
            self._stream = sys.stderr

    def write(self, *, request_id: str, method: str, path: str, route: str | None,
              backend: str | None, status: int, ms: float, error: str | None = None) -> None:
        entry: dict[str, Any] = {"ts": round(time.time(), 3), "request_id": request_id,
                                 "method": method, "path": path, "route": route,
                                 "backend": backend, "status": status, "duration_ms": round(ms, 3)}
        if error:
            entry["error"] = error
        if self.trace_ids is not None:
            entry.update(self.trace_ids())
        self._buffer.append(json.dumps(entry, separators=(",", ":")))
        if len(self._buffer) >= 256:
            self.flush()

    def flush(self) -> None:
        if self._buffer and self._stream is not None:
            lines, self._buffer = self._buffer, []
            try:
                self._stream.write("\n".join(lines) + "\n")
                self._stream.flush()
            except (OSError, ValueError):
                pass  # a closed stderr must not break request handling

    def close(self) -> None:
        self.flush()
        if self._stream is not None and self._stream is not sys.stderr:
            self._stream.close()
