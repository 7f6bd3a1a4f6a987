"""TLS (issue 15): https upstreams with a CA bundle and a client certificate (mTLS), and TLS
on the router's own listener — against real TLS servers on loopback, with certificates
this module makes (the `openssl` command line).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from router.client import Pool, fetch
from router.config import load_config, parse_config
from router.errors import ConfigError
from tests.conftest import service_missing
from tests.router.conftest import ADMIN_TOKEN, IDENTITY_SECRET, ROOT, RouterProc, Upstream, stop


@pytest.fixture(autouse=True)
def _openssl_present() -> None:
    """The certificates come from the openssl command: fail in CI (skip elsewhere) without it."""
    if shutil.which("openssl") is None:
        service_missing("the openssl command (Debian: apt-get install openssl)",
                        FileNotFoundError("openssl is not on PATH"))


# --- certificates ---------------------------------------------------------------------------

@dataclass
class Certs:
    dir: Path

    def __getattr__(self, name: str) -> str:  # certs.ca_crt → <dir>/ca.crt
        return str(self.dir / name.replace("_", "."))


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _issue(cwd: Path, ca: str, name: str, cn: str, ext: str) -> None:
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=cwd)
    (cwd / f"{name}.ext").write_text(ext + "\nbasicConstraints=CA:FALSE\n"
                                     "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=cwd)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA, a server certificate for localhost/127.0.0.1, a client certificate, and a second
    CA that signed none of them."""
    cwd = tmp_path_factory.mktemp("certs")
    for ca in ("ca", "otherca"):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "2", "-subj", f"/CN={ca}", cwd=cwd)
    _issue(cwd, "ca", "server", "localhost",
           "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth")
    _issue(cwd, "ca", "client", "strangler-router", "extendedKeyUsage=clientAuth")
    return Certs(cwd)


# --- a real TLS upstream requiring a client certificate ---------------------------------------

class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the router's pool may reuse the session

    def do_GET(self) -> None:  # noqa: N802
        peer = self.connection.getpeercert() or {}  # type: ignore[attr-defined]
        subject = dict(pair[0] for pair in peer.get("subject", ()))
        body = json.dumps({"upstream": "tls", "path": self.path, "client_cn": subject.get("commonName"),
                           "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class TLSUpstream(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, certs: Certs) -> None:
        super().__init__(("127.0.0.1", 0), _Echo)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(certs.server_crt, certs.server_key)
        self.ctx.load_verify_locations(certs.ca_crt)
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.handshakes = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}"

    def finish_request(self, request: Any, client_address: Any) -> None:
        tls = self.ctx.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        try:
            tls.settimeout(5)
            tls.do_handshake()
        except (ssl.SSLError, OSError):
            # Like nginx's lingering close: let the alert reach the client before the socket
            # goes (closing with its unread request would reset the connection instead).
            tls.shutdown(socket.SHUT_WR)
            try:
                while socket.socket.recv(tls, 4096):
                    pass
            except OSError:
                pass
            tls.close()
            return
        self.handshakes += 1
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            tls.close()


@pytest.fixture(scope="module")
def tls_upstream(certs: Certs) -> Iterator[TLSUpstream]:
    server = TLSUpstream(certs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _trusting(certs: Certs, *, with_client_cert: bool = False) -> ssl.SSLContext:
    """A client context trusting the test CA (a fresh one: httpx may change what it is given)."""
    ctx = ssl.create_default_context(cafile=certs.ca_crt)
    if with_client_cert:
        ctx.load_cert_chain(certs.client_crt, certs.client_key)
    return ctx


def _routes(url: str, tls: str, extra: str = "") -> str:
    return f"""
upstreams:
  svc:
    url: {url}
    tls: {tls}
routes:
  - name: all
    match: {{prefix: /}}
    backends: {{svc: 100}}
{extra}"""


def _get(router: RouterProc, path: str = "/hello") -> httpx.Response:
    with router.client() as client:
        return client.get(path)


# --- https upstreams ----------------------------------------------------------------------------

def test_mtls_upstream_answers_through_the_router_on_one_pooled_session(
        certs: Certs, tls_upstream: TLSUpstream, start_router: Callable[..., RouterProc], http: str) -> None:
    tls = f"{{ca: {certs.ca_crt}, cert: {certs.client_crt}, key: {certs.client_key}}}"
    router = start_router(_routes(tls_upstream.url, tls), http=http)
    before = tls_upstream.handshakes
    with router.client() as client:
        first = client.get("/hello")
        second = client.get("/again")
    assert first.status_code == 200, first.text
    assert second.status_code == 200, second.text
    seen = first.json()
    assert seen["upstream"] == "tls" and seen["path"] == "/hello"
    assert seen["client_cn"] == "strangler-router"  # the upstream verified our client certificate
    assert seen["headers"]["x-forwarded-proto"] == "http"  # the client's scheme, not the upstream's
    assert tls_upstream.handshakes - before == 1  # the second request reused the pooled session


def test_an_upstream_certificate_from_an_untrusted_ca_gets_502_naming_the_upstream(
        certs: Certs, tls_upstream: TLSUpstream, start_router: Callable[..., RouterProc]) -> None:
    tls = f"{{ca: {certs.otherca_crt}, cert: {certs.client_crt}, key: {certs.client_key}}}"
    router = start_router(_routes(tls_upstream.url, tls))
    answer = _get(router)
    assert answer.status_code == 502
    body = answer.json()
    assert body["error"] == "upstream_tls" and body["upstream"] == "svc"
    assert "TLS handshake with svc" in body["detail"]
    assert "certificate" in body["detail"] and "Traceback" not in answer.text


def test_a_missing_client_certificate_gets_502_saying_the_upstream_refused_the_session(
        certs: Certs, tls_upstream: TLSUpstream, start_router: Callable[..., RouterProc]) -> None:
    router = start_router(_routes(tls_upstream.url, f"{{ca: {certs.ca_crt}}}"))
    answer = _get(router)
    assert answer.status_code == 502
    body = answer.json()
    assert body["error"] == "upstream_tls" and body["upstream"] == "svc"
    assert "svc" in body["detail"] and "client certificate" in body["detail"]


def test_side_fetches_use_the_tls_context_of_an_https_upstream(certs: Certs, tls_upstream: TLSUpstream) -> None:
    """Shadow copies, whoami and health checks go through `router.client.fetch`."""
    config = parse_config(_routes(tls_upstream.url, f"{{ca: {certs.ca_crt}, cert: {certs.client_crt}, "
                                                    f"key: {certs.client_key}}}"))
    up = config.upstreams["svc"]
    assert up.port == tls_upstream.server_address[1] and up.tls is not None

    async def go() -> tuple[int, bytes]:
        pool = Pool(name="svc", host=up.host, port=up.port, size=4, tls=up.tls.context if up.tls else None,
                    server_name=up.tls.server_name if up.tls else None)
        try:
            head = f"GET /side HTTP/1.1\r\nhost: {up.authority}\r\n\r\n".encode()
            status, _, body = await fetch(pool, head, connect_timeout=2, read_timeout=5)
            return status, body
        finally:
            pool.close()

    status, body = asyncio.run(go())
    assert status == 200 and json.loads(body)["client_cn"] == "strangler-router"


# --- config validation --------------------------------------------------------------------------

def _config_error(text: str, tmp_path: Path) -> ConfigError:
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value


def test_tls_files_resolve_beside_routes_yaml_and_bad_ones_name_the_key_and_fix(
        certs: Certs, tmp_path: Path) -> None:
    (tmp_path / "pki").mkdir()
    shutil.copy(certs.ca_crt, tmp_path / "pki" / "ca.pem")
    path = tmp_path / "routes.yaml"
    path.write_text(_routes("https://127.0.0.1:9443", "{ca: pki/ca.pem, server_name: svc.internal}"))
    up = load_config(path).upstreams["svc"]
    assert up.tls is not None and up.tls.ca == str(tmp_path / "pki" / "ca.pem")
    assert up.tls.server_name == "svc.internal" and up.port == 9443

    missing = _config_error(_routes("https://127.0.0.1:9443", "{ca: pki/nope.pem}"), tmp_path)
    assert missing.key_path == "upstreams.svc.tls.ca"
    assert str(tmp_path / "pki" / "nope.pem") in str(missing) and "fix:" in str(missing)

    lone_key = _config_error(_routes("https://127.0.0.1:9443", f"{{key: {certs.client_key}}}"), tmp_path)
    assert lone_key.key_path == "upstreams.svc.tls.key" and "add `cert:`" in str(lone_key)

    plain = _config_error(_routes("http://127.0.0.1:9443", "{ca: pki/ca.pem}"), tmp_path)
    assert plain.key_path == "upstreams.svc.tls" and "https://127.0.0.1:9443" in str(plain)

    not_pem = _config_error(_routes("https://127.0.0.1:9443", f"{{ca: {path}}}"), tmp_path)
    assert not_pem.key_path == "upstreams.svc.tls.ca" and "PEM" in str(not_pem)

    listener = _config_error(_routes("https://127.0.0.1:9443", "{ca: pki/ca.pem}",
                                     f"listen_tls: {{cert: {certs.server_crt}, key: pki/missing.key}}"),
                             tmp_path)
    assert listener.key_path == "listen_tls.key" and "fix:" in str(listener)


# --- TLS on the listener ------------------------------------------------------------------------

@pytest.fixture
def start_tls_router(tmp_path: Path, certs: Certs) -> Iterator[Callable[..., RouterProc]]:
    """Start `python -m router` with `listen_tls`; waits until it answers over https."""
    import os
    import sys

    from devstack import free_port

    started: list[RouterProc] = []

    def start(text: str, *, http: str) -> RouterProc:
        config = tmp_path / "routes.yaml"
        config.write_text(text)
        port = free_port()
        log = tmp_path / f"router-{port}.log"
        env = {**os.environ, "STRANGLER_ADMIN_TOKEN": ADMIN_TOKEN, "STRANGLER_IDENTITY_SECRET": IDENTITY_SECRET}
        with open(log, "wb") as handle:
            proc = subprocess.Popen([sys.executable, "-m", "router", "--config", str(config), "--host",
                                     "127.0.0.1", "--port", str(port), "--http", http],
                                    cwd=ROOT, stdout=handle, stderr=handle, env=env)
        router = RouterProc(port=port, config=config, proc=proc, log=log)
        started.append(router)
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"router exited: {log.read_text()[-3000:]}")
            try:
                with httpx.Client(verify=_trusting(certs, with_client_cert=True), timeout=1) as client:
                    if client.get(f"https://127.0.0.1:{port}/_strangler/healthz").status_code == 200:
                        return router
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"router did not start: {log.read_text()[-3000:]}")
            time.sleep(0.05)

    try:
        yield start
    finally:
        for router in started:
            stop(router.proc)


def _listener_routes(certs: Certs, upstreams: dict[str, Upstream], client_ca: bool = False) -> str:
    ca = f", client_ca: {certs.ca_crt}" if client_ca else ""
    return f"""
listen_tls: {{cert: {certs.server_crt}, key: {certs.server_key}{ca}}}
upstreams:
  a: {{url: {upstreams['a'].url}}}
  b: {{url: {upstreams['b'].url}}}
routes:
  - name: split
    match: {{prefix: /}}
    backends: {{a: 50, b: 50}}
"""


def test_the_tls_listener_answers_over_https_and_tells_upstreams_the_scheme(
        certs: Certs, upstreams: dict[str, Upstream], start_tls_router: Callable[..., RouterProc],
        http: str) -> None:
    router = start_tls_router(_listener_routes(certs, upstreams), http=http)
    with httpx.Client(verify=_trusting(certs), timeout=10) as client:
        answer = client.get(f"https://127.0.0.1:{router.port}/echo")
    assert answer.status_code == 200, answer.text
    seen = dict(answer.json()["headers"])
    assert seen["x-forwarded-proto"] == "https"
    cohort = answer.headers["set-cookie"]  # an anonymous visitor of a split route
    assert cohort.startswith("strangler_cohort=") and "Secure" in cohort
    with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port is not served
        httpx.get(f"http://127.0.0.1:{router.port}/echo", timeout=2)


def test_the_tls_listener_with_client_ca_requires_a_client_certificate(
        certs: Certs, upstreams: dict[str, Upstream], start_tls_router: Callable[..., RouterProc],
        http: str) -> None:
    router = start_tls_router(_listener_routes(certs, upstreams, client_ca=True), http=http)
    url = f"https://127.0.0.1:{router.port}/echo"
    with httpx.Client(verify=_trusting(certs, with_client_cert=True), timeout=10) as client:
        assert client.get(url).status_code == 200
    with pytest.raises(httpx.HTTPError), httpx.Client(verify=_trusting(certs), timeout=5) as client:
        client.get(url)
