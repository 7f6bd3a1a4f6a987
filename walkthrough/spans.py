"""Where step 5's spans go, and how they are read back for `trace_crosses`.

`SpanReceiver`, for the embedded stack (no Java, no Zipkin): `POST /api/v2/spans` with a JSON
list of spans → 202; the spans are kept in memory (up to `keep`). `ZipkinSpans`, for
`--real`: devstack's Zipkin receives them, and they are read back from its own query API
(`GET /api/v2/traces`), so the check sees what a user's Zipkin UI shows. Both are `Spans`.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol


class Spans(Protocol):
    store: str  # what the report names: "receiver" or "zipkin <url>"

    @property
    def endpoint(self) -> str:
        """Zipkin v2's `/api/v2/spans` URL the exporters post to."""
        ...

    def snapshot(self) -> list[dict[str, Any]]:
        """The spans received so far (Zipkin v2 JSON)."""
        ...

    def stop(self) -> None: ...


class SpanReceiver:
    store = "receiver"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, keep: int = 20000) -> None:
        self.spans: deque[dict[str, Any]] = deque(maxlen=keep)
        self.received = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                try:
                    spans = json.loads(body or b"[]")
                except ValueError:
                    self.send_response(400)
                    self.end_headers()
                    return
                if isinstance(spans, list):
                    receiver.spans.extend(s for s in spans if isinstance(s, dict))
                    receiver.received += len(spans)
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="span-receiver", daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/api/v2/spans"

    def start(self) -> SpanReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def snapshot(self) -> list[dict[str, Any]]:
        return list(self.spans)


class ZipkinSpans:
    """A Zipkin server's spans through its query API; `server` is devstack's `ZipkinServer`
    (`spans_url`, `traces()`), stopped by whoever started it, not here."""

    def __init__(self, server: Any, *, service: str = "catalog", limit: int = 50) -> None:
        self.server, self.service, self.limit = server, service, limit
        self.store = f"zipkin {server.url}"

    @property
    def endpoint(self) -> str:
        return str(self.server.spans_url)

    def snapshot(self) -> list[dict[str, Any]]:
        # the traces the last service took part in: a crossing trace is among them
        traces = self.server.traces(service=self.service, limit=self.limit)
        return [span for trace in traces for span in trace]

    def stop(self) -> None:
        pass
