"""One JSON line per request (request id, route, backend, status, duration).

Place in the flow: the proxy hands each finished request to `AccessLog.write`; lines are
buffered and written by `flush` (called by the router's housekeeping task every 200 ms and
at shutdown) so the hot path never waits on a write.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from json.encoder import encode_basestring_ascii as _str  # what json.dumps uses for a str
from typing import IO


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
        # The line json.dumps(entry, separators=(",", ":")) would write, without building
        # a dict and walking it per request (the log is on by default: every µs counts).
        line = (f'{{"ts":{round(time.time(), 3)!r},"request_id":{_str(request_id)},"method":'
                f'{_str(method)},"path":{_str(path)},"route":{"null" if route is None else _str(route)},'
                f'"backend":{"null" if backend is None else _str(backend)},"status":{status},'
                f'"duration_ms":{round(ms, 3)!r}')
        if error:
            line = f'{line},"error":{_str(error)}'
        if self.trace_ids is not None:  # tracing on (router.tracing): the request's ids
            ids = self.trace_ids()
            if ids:
                line = f'{line},"trace_id":"{ids["trace_id"]}","span_id":"{ids["span_id"]}"'
        self._buffer.append(line + "}")
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
