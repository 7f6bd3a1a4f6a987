"""TLS contexts, built once when routes.yaml is loaded: to https upstreams, and on the listener.

Place in the flow: `router.config` calls these while it validates the file, so a missing or
unreadable certificate is refused with its key path like any other bad value, and the
request path only hands the finished `ssl.SSLContext` to a new connection (nothing TLS is
done per request). Files are read again on every reload, so rotated certificates take
effect for new connections without a restart.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path


class TLSSetupError(Exception):
    """A TLS file or setting is unusable: `key` (under the section), the problem and the fix."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key, self.problem, self.fix = key, problem, fix
        super().__init__(f"{key}: {problem} — fix: {fix}")


@dataclass(frozen=True, kw_only=True)
class UpstreamTLS:
    """`upstreams.<name>.tls`: how the router verifies an https upstream and proves itself."""

    ca: str | None = None  # absolute paths
    cert: str | None = None
    key: str | None = None
    server_name: str = ""  # SNI and the name the certificate must carry
    verify: bool = True
    context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, kw_only=True)
class ListenTLS:
    """`listen_tls`: the router terminates TLS itself (and with `client_ca`, requires mTLS)."""

    cert: str
    key: str
    client_ca: str | None = None
    context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)


def resolve(base: Path, value: str | None) -> str | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def upstream_tls(spec: dict[str, object], *, host: str, base: Path) -> UpstreamTLS:
    """The validated `tls` section of an https upstream, with its client context built."""
    if "key" in spec and "cert" not in spec:
        raise TLSSetupError("key", "a client key without its certificate",
                            "add `cert:` (the client certificate the key belongs to) or remove `key:`")
    tls = UpstreamTLS(ca=resolve(base, spec.get("ca")), cert=resolve(base, spec.get("cert")),  # type: ignore[arg-type]
                      key=resolve(base, spec.get("key")),  # type: ignore[arg-type]
                      server_name=str(spec.get("server_name", host)), verify=bool(spec.get("verify", True)))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # TLS 1.2+, hostname checked, cert required
    ctx.set_alpn_protocols(["http/1.1"])
    if tls.ca is not None:
        _load_ca(ctx, "ca", tls.ca)
    else:
        ctx.load_default_certs()
    if not tls.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.cert is not None:
        _load_chain(ctx, tls.cert, tls.key)
    return UpstreamTLS(**{**tls.__dict__, "context": ctx})


def listen_tls(spec: dict[str, str], *, base: Path) -> ListenTLS:
    """The validated `listen_tls` section, with its server context built."""
    tls = ListenTLS(cert=resolve(base, spec["cert"]), key=resolve(base, spec["key"]),  # type: ignore[arg-type]
                    client_ca=resolve(base, spec.get("client_ca")))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_alpn_protocols(["http/1.1"])
    _load_chain(ctx, tls.cert, tls.key)
    if tls.client_ca is not None:
        _load_ca(ctx, "client_ca", tls.client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ListenTLS(**{**tls.__dict__, "context": ctx})


def _readable(key: str, path: str) -> None:
    p = Path(path)
    if not p.is_file():
        raise TLSSetupError(key, f"{path} does not exist or is not a file",
                            "write the path of a PEM file (relative paths are read beside routes.yaml)")
    try:
        p.open("rb").close()
    except OSError as exc:
        raise TLSSetupError(key, f"{path} cannot be read ({exc.strerror})",
                            "let the router's user read it") from exc


def _load_ca(ctx: ssl.SSLContext, key: str, path: str) -> None:
    _readable(key, path)
    try:
        ctx.load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        raise TLSSetupError(key, f"{path} holds no usable PEM certificate ({exc.reason or exc})",
                            "point it at a PEM bundle of CA certificates (-----BEGIN CERTIFICATE-----)") from exc


def _load_chain(ctx: ssl.SSLContext, cert: str, key: str | None) -> None:
    _readable("cert", cert)
    if key is not None:
        _readable("key", key)
    try:
        # A password callback stops OpenSSL from prompting on the terminal for an encrypted key.
        ctx.load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as exc:
        where = "key" if key is not None and "KEY" in str(exc).upper() else "cert"
        raise TLSSetupError(where, f"cannot load the certificate {cert} with key {key or cert} "
                            f"({exc.reason or exc})",
                            "give a PEM certificate and its own unencrypted PEM private key "
                            "(`key:`, or appended to the certificate file)") from exc


def handshake_reason(exc: ssl.SSLError) -> str:
    """What went wrong in a TLS handshake, in the words a person can act on."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"its certificate was not accepted: {exc.verify_message}"
    reason = (exc.reason or str(exc)).replace("_", " ").lower()
    if "alert" in reason:
        return f"it refused the session ({reason}: is our client certificate missing or not signed by a CA it trusts?)"
    return reason
