"""Errors of the router, one tree rooted at `RouterError`.

    RouterError
     ├─ ConfigError            routes.yaml is invalid; names key path, line, value and fix.
     │                         The running config stays when this is raised on reload.
     ├─ BadRequest             the client's request is refused (400/431 before forwarding;
 │                         413 body too large, 408 body too slow, also mid-upload)
     ├─ ClientGone             the client went away mid-exchange (counted, nothing to answer)
     ├─ UpstreamCut            the upstream failed after the response started (cut short)
     └─ UpstreamError          forwarding to an upstream failed (mapped to 502/504)
         ├─ UpstreamConnectError   could not connect (502); safe to retry anywhere
         ├─ UpstreamTimeout        connect or read timed out (504)
         ├─ UpstreamBusy           all of its max_connections are busy (503); nothing sent
         ├─ UpstreamTLSError       the TLS handshake failed: certificate, CA or client
         │                         certificate refused (502); names the TLS reason
         └─ UpstreamProtocolError  reset or malformed response (502)

Socket and parser errors are mapped to these once, in `router.client`.
"""

from __future__ import annotations


class RouterError(Exception):
    """Root of every error the router raises on purpose."""


class ConfigError(RouterError):
    """routes.yaml (or a change to it) is invalid; nothing was changed."""

    def __init__(self, message: str, *, key_path: str = "", line: int | None = None) -> None:
        self.key_path = key_path
        self.line = line
        super().__init__(message)


class BadRequest(RouterError):
    """The client's request is refused before anything is forwarded."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        self.status = status
        super().__init__(message)


class UpstreamError(RouterError):
    """Forwarding to an upstream failed."""

    status = 502
    kind = "upstream"
    # True when the upstream may have seen the request (a retry could repeat a side effect).
    maybe_processed = True


class UpstreamConnectError(UpstreamError):
    """The upstream refused or did not accept the connection."""

    kind = "connect"
    maybe_processed = False


class UpstreamTimeout(UpstreamError):
    """The upstream did not connect or answer within its timeout."""

    status = 504
    kind = "timeout"


class UpstreamBusy(UpstreamError):
    """Every connection the upstream may have (max_connections) is busy: nothing was sent."""

    status = 503
    kind = "busy"
    maybe_processed = False


class UpstreamTLSError(UpstreamError):
    """The TLS handshake with an upstream failed (its certificate, our CA bundle, or our
    client certificate was refused): no request was processed, as no session existed."""

    kind = "tls"
    maybe_processed = False


class UpstreamProtocolError(UpstreamError):
    """The upstream reset the connection or answered with malformed HTTP."""

    kind = "protocol"


class ClientGone(RouterError):
    """The client disconnected before its exchange ended."""


class UpstreamCut(RouterError):
    """The upstream failed after the response started: the client's response is cut short."""
