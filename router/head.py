"""The client's request head, read once; the upstream's request head, built once.

Place in the flow: the first and the fourth stage of `router.proxy` (read → match → choose →
*build* → forward). `read` makes one pass over the ASGI header list: it refuses what is
ambiguous (two Hosts, conflicting Content-Length, Transfer-Encoding other than a lone
`chunked`, a missing Host on HTTP/1.1, too many header bytes), picks out the headers the
router interprets and keeps the rest, raw, for the upstream. `upstream_tail` is everything
after the Host line, the same whichever upstream (or endpoint) answers.
"""

from __future__ import annotations

import re
from random import getrandbits

from router.errors import BadRequest
from router.forward import HOP_BY_HOP
from router.types import Scope

# Request headers the router drops and sets itself (or must never forward).
REQ_SKIP = HOP_BY_HOP | {b"host", b"content-length", b"x-forwarded-for", b"x-forwarded-proto",
                         b"x-forwarded-host", b"x-request-id", b"traceparent",
                         b"x-strangler-identity", b"expect", b"forwarded"}
IDENTITY_HEADER = b"x-strangler-identity"
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
_TRACEPARENT = re.compile(rb"^00-([0-9a-f]{32})-[0-9a-f]{16}-([0-9a-f]{2})$")
_ACCEPTED = frozenset({b"close", b"keep-alive", b""})


class Head:
    """What the router reads from a request head; `fwd` is what it passes on unchanged.

    The class holds the defaults: a request sets only the headers it has."""

    host: bytes | None = None
    cl: bytes | None = None
    te: bytes | None = None
    connection: bytes | None = None
    xff: bytes | None = None
    xfp: bytes | None = None
    xfh: bytes | None = None
    forwarded: bytes | None = None
    rid: bytes | None = None
    tp: bytes | None = None
    cookie: bytes | None = None
    upgrade: bytes | None = None
    has_body = False

    def __init__(self) -> None:
        self.fwd: list[tuple[bytes, bytes]] = []

    @property
    def anything_forwarded(self) -> bool:
        return bool(self.xff or self.xfp or self.xfh or self.forwarded)

    def request_id(self) -> str:
        """The client's X-Request-ID when well formed, else a new one."""
        rid = self.rid
        if rid is not None and _REQUEST_ID.match(rid):
            return rid.decode()
        return f"{getrandbits(128):032x}"


def read(scope: Scope, max_header_bytes: int) -> Head:
    """One pass over the request headers (raises `BadRequest` with the status to answer)."""
    head = Head()
    fwd = head.fwd
    size = 0
    for name, value in scope["headers"]:
        size += len(name) + len(value) + 4
        if name in REQ_SKIP:
            if name == b"host" and head.host is None:
                head.host = value  # the one most requests have
            else:
                _interpret(head, name, value)
            continue
        if name == b"cookie":
            head.cookie = value if head.cookie is None else head.cookie + b"; " + value
        fwd.append((name, value))
    if size > max_header_bytes:
        raise BadRequest(f"request headers exceed {max_header_bytes} bytes", status=431)
    te, cl = head.te, head.cl
    if te is not None and (cl is not None or te.strip().lower() != b"chunked"):
        raise BadRequest("Transfer-Encoding must be exactly 'chunked' and never combined with "
                         "Content-Length")
    if cl is not None and not cl.isdigit():
        raise BadRequest("Content-Length is not a number")
    if head.connection is not None:
        named = {t.strip().lower() for t in head.connection.split(b",")} - _ACCEPTED
        if named:
            head.fwd = [(n, v) for n, v in fwd if n not in named]
    if head.host is None and scope.get("http_version") == "1.1":
        raise BadRequest("an HTTP/1.1 request needs a Host header (RFC 9112 §3.2)")
    if te is not None or (cl is not None and cl != b"0"):
        head.has_body = True
    return head


def _interpret(head: Head, name: bytes, value: bytes) -> None:
    if name == b"host":
        if head.host is not None:
            raise BadRequest("more than one Host header (RFC 9112 §3.2)")
        head.host = value
    elif name == b"content-length":
        if head.cl is not None and head.cl != value:
            raise BadRequest("conflicting Content-Length headers")
        head.cl = value
    elif name == b"transfer-encoding":
        head.te = value if head.te is None else head.te + b"," + value
    elif name == b"connection":
        head.connection = value if head.connection is None else head.connection + b"," + value
    elif name == b"x-forwarded-for":
        head.xff = value if head.xff is None else head.xff + b", " + value
    elif name == b"x-forwarded-proto":
        head.xfp = value if head.xfp is None else head.xfp + b", " + value
    elif name == b"x-forwarded-host":
        head.xfh = value if head.xfh is None else head.xfh + b", " + value
    elif name == b"forwarded":
        head.forwarded = value if head.forwarded is None else head.forwarded + b", " + value
    elif name == b"x-request-id":
        head.rid = value
    elif name == b"traceparent":
        head.tp = value
    elif name == b"upgrade":
        head.upgrade = value


def traceparent(tp: bytes | None) -> bytes:
    """The client's trace continued with a new span, or a new trace."""
    trace = _TRACEPARENT.match(tp) if tp is not None else None
    if trace is not None:
        return b"00-%b-%016x-%b" % (trace.group(1), getrandbits(64), trace.group(2))
    ids = b"%048x" % getrandbits(192)  # a trace id and a span id in one draw
    return b"00-%b-%b-01" % (ids[:32], ids[32:])


def upstream_tail(head: Head, *, request_id: str, xff: bytes, scheme: str, host: bytes | None,
                  websocket: bool, identity: bytes | None, trace: bytes | None = None) -> bytes:
    """The request head after the Host line, ending with the blank line (`trace`: the
    traceparent to send, when router.tracing made one)."""
    parts = []
    for nv in head.fwd:
        parts.append(b"%b: %b\r\n" % nv)
    if trace is not None:
        pass
    elif head.tp is None:  # a new trace (most requests): its id and the span id in one draw
        ids = b"%048x" % getrandbits(192)
        trace = b"00-%b-%b-01" % (ids[:32], ids[32:])
    else:
        trace = traceparent(head.tp)
    parts.append(b"x-forwarded-for: %b\r\nx-forwarded-proto: %b\r\nx-request-id: %b\r\n"
                 b"traceparent: %b\r\n" % (xff, scheme.encode(), request_id.encode(), trace))
    if host is not None:
        parts.append(b"x-forwarded-host: %b\r\n" % host)
    if websocket:
        parts.append(b"connection: upgrade\r\nupgrade: websocket\r\n")
    if head.te is not None:
        parts.append(b"transfer-encoding: chunked\r\n")
    elif head.cl is not None:
        parts.append(b"content-length: %b\r\n" % head.cl)
    if identity is not None:
        parts.append(b"%b: %b\r\n" % (IDENTITY_HEADER, identity))
    parts.append(b"\r\n")
    return b"".join(parts)


def request_line(method: str, path: str, query: bytes | None) -> bytes:
    """`GET /path?q HTTP/1.1` and the start of the Host line (the endpoint adds its value)."""
    target = (path + "?" + query.decode("latin-1")) if query else path
    return f"{method} {target} HTTP/1.1\r\nhost: ".encode("latin-1")
