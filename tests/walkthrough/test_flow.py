"""walkthrough/flow.py: the shadow recheck, against real upstreams on loopback."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from walkthrough.flow import in_flight


def test_a_differing_shadow_pair_counts_as_in_flight_only_if_both_sides_agree_now() -> None:
    """Two upstreams on loopback: /same answers alike on both (the copy caught up), /drift not
    (the price stays wrong): only the first pair was in flight; writes are never asked again."""
    def serve(price: str) -> ThreadingHTTPServer:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                body = json.dumps({"id": 1, "price": "9.99" if self.path == "/same" else price}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    mono, cat = serve("1.00"), serve("2.00")
    try:
        urls = [f"http://127.0.0.1:{s.server_address[1]}" for s in (mono, cat)]
        pairs = [{"method": "GET", "path": "/same"}, {"method": "GET", "path": "/drift"},
                 {"method": "PATCH", "path": "/same"}]
        assert in_flight(*urls, pairs, host="walkthrough.local", tries=2, pause=0.01) == 1
    finally:
        for server in (mono, cat):
            server.shutdown()
            server.server_close()
