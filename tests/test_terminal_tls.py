"""HTTPS to the payment terminal (devices/terminal/tls.py), against real TLS servers on
loopback: a pinned certificate is accepted and the connection kept alive, any other
certificate is refused before a byte of the request leaves, a CA file verifies chain and
hostname, a TLS failure after the request went out is never called "nothing was sent", and
plain HTTP or HTTPS without a trust anchor is refused up front."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import stat
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from urllib3.exceptions import InsecureRequestWarning

from devices.base import CommandTimeout, DeviceOffline, InvalidData
from devices.terminal.tls import (
    TerminalCertificate,
    TerminalCertificateRejected,
    classify_ssl_error,
    fingerprint_of,
    generate_self_signed,
    normalize_fingerprint,
    server_context,
    terminal_session,
)

TIMEOUT = (2.0, 5.0)


# --- a tiny JSON echo server, plain or TLS ---------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, mode: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = mode  # "echo", or "garbage": read the request, then answer non-TLS bytes
        self.lock = threading.Lock()
        self.accepted = 0  # TCP connections handed to a handler
        self.finished = 0  # handlers done with their connection
        self.bodies: list[bytes] = []
        self.errors: list[BaseException] = []

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that drops the TLS connection (a refused pin) is expected here: record, don't print
        import sys

        with self.lock:
            self.errors.append(sys.exc_info()[1])  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a terminal's API does
    # headers and body leave in two writes: with Nagle on, the body waits for the client's
    # delayed ACK of the headers, about 40 ms per keep-alive exchange
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.accepted += 1

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.lock:
                self.server.finished += 1

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            self.server.bodies.append(body)
        if self.server.mode == "garbage":
            # bytes outside any TLS record, written under the TLS layer after the request arrived
            os.write(self.connection.fileno(), b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


class EchoServer:
    def __init__(self, cert: TerminalCertificate | None, *, mode: str = "echo") -> None:
        self.server = _Server(mode)
        if cert is not None:
            ctx = server_context(cert.cert_path, cert.key_path)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True, do_handshake_on_connect=False)
        self.port = self.server.server_address[1]
        self.scheme = "https" if cert is not None else "http"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def url(self, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}/"

    def settle(self) -> None:
        """Wait until every accepted connection's handler has finished."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with self.server.lock:
                if self.server.accepted and self.server.finished == self.server.accepted:
                    return
            time.sleep(0.01)
        raise AssertionError(f"server still busy: {self.server.accepted} accepted, {self.server.finished} finished")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


@pytest.fixture
def cert(tmp_path: Path) -> TerminalCertificate:
    return generate_self_signed(tmp_path / "term", common_name="terminal-sim")


@pytest.fixture
def tls_server(cert: TerminalCertificate) -> Iterator[EchoServer]:
    srv = EchoServer(cert)
    yield srv
    srv.stop()


def _post(session: requests.Session, url: str, payload: dict[str, Any]) -> Any:
    resp = session.post(url, json=payload, timeout=TIMEOUT)
    resp.raise_for_status()
    return resp.json()


def _ssl_error(call: Callable[[], Any]) -> requests.exceptions.SSLError:
    with pytest.raises(requests.exceptions.SSLError) as err:
        call()
    return err.value


# --- pinning -----------------------------------------------------------------------------------


def test_the_pinned_certificate_is_accepted_and_the_connection_kept_alive(
    cert: TerminalCertificate, tls_server: EchoServer
) -> None:
    pin = ":".join(cert.fingerprint[i:i + 2] for i in range(0, 64, 2)).upper()  # as an operator pastes it
    with terminal_session(tls_server.url(), fingerprint=pin) as session, warnings.catch_warnings():
        warnings.simplefilter("error", InsecureRequestWarning)  # pinned counts as verified
        assert _post(session, tls_server.url(), {"n": 1}) == {"n": 1}
        assert _post(session, tls_server.url(), {"n": 2}) == {"n": 2}
    tls_server.settle()
    assert tls_server.server.bodies == [b'{"n": 1}', b'{"n": 2}']
    assert tls_server.server.accepted == 1  # one TLS handshake, the second POST reused it


def test_another_certificate_is_refused_before_the_request_is_sent(
    cert: TerminalCertificate, tls_server: EchoServer, tmp_path: Path
) -> None:
    other = generate_self_signed(tmp_path / "other", common_name="impostor")
    with terminal_session(tls_server.url(), fingerprint=other.fingerprint) as session:
        exc = _ssl_error(lambda: session.post(tls_server.url(), json={"secret": 1}, timeout=TIMEOUT))
    # the driver must catch SSLError before ConnectionError, which it subclasses
    assert isinstance(exc, requests.ConnectionError)
    typed = classify_ssl_error(exc, "term-1")
    assert type(typed) is TerminalCertificateRejected and isinstance(typed, DeviceOffline)
    assert typed.error_code == "tlsPin" and typed.device == "term-1"
    assert cert.fingerprint in str(typed)  # what the terminal presented, for the operator
    tls_server.settle()
    assert tls_server.server.accepted == 1  # the handshake did reach the server …
    assert tls_server.server.bodies == []  # … and no request did


def test_a_pin_needs_no_hostname_match(tmp_path: Path) -> None:
    # a terminal's certificate names its LAN address; the pin alone is the trust
    lan = generate_self_signed(tmp_path / "lan", common_name="terminal", hosts=("10.9.8.7",))
    srv = EchoServer(lan)
    try:
        with terminal_session(srv.url(), fingerprint=lan.fingerprint) as session:
            assert _post(session, srv.url(), {"ok": True}) == {"ok": True}
        # the same certificate through the CA path does check the address
        with terminal_session(srv.url(), ca_file=lan.cert_path) as session:
            exc = _ssl_error(lambda: session.post(srv.url(), json={}, timeout=TIMEOUT))
        assert classify_ssl_error(exc, "t").error_code == "tlsVerify"
    finally:
        srv.stop()


# --- CA file -------------------------------------------------------------------------------------


def test_a_ca_file_verifies_the_chain_and_the_hostname(tmp_path: Path) -> None:
    named = generate_self_signed(tmp_path / "named", common_name="terminal", hosts=("localhost",))
    srv = EchoServer(named)
    try:
        with terminal_session(srv.url("localhost"), ca_file=str(named.cert_path)) as session:
            assert _post(session, srv.url("localhost"), {"via": "ca"}) == {"via": "ca"}
        with terminal_session(srv.url("127.0.0.1"), ca_file=named.cert_path) as session:
            exc = _ssl_error(lambda: session.post(srv.url("127.0.0.1"), json={"x": 1}, timeout=TIMEOUT))
        typed = classify_ssl_error(exc, "t")
        assert type(typed) is TerminalCertificateRejected and typed.error_code == "tlsVerify"
        assert "127.0.0.1" in str(typed)  # OpenSSL's "IP address mismatch" names it
        srv.settle()
        assert srv.server.bodies == [b'{"via": "ca"}']  # the refused request never arrived
    finally:
        srv.stop()


def test_a_ca_file_trusts_only_its_own_certificates(cert: TerminalCertificate, tls_server: EchoServer,
                                                     tmp_path: Path) -> None:
    stranger = generate_self_signed(tmp_path / "stranger", common_name="another-ca")
    with terminal_session(tls_server.url(), ca_file=stranger.cert_path) as session:
        exc = _ssl_error(lambda: session.post(tls_server.url(), json={}, timeout=TIMEOUT))
    typed = classify_ssl_error(exc, "t")
    assert isinstance(typed, TerminalCertificateRejected) and typed.error_code == "tlsVerify"
    with terminal_session(tls_server.url(), ca_file=cert.cert_path) as session:
        assert _post(session, tls_server.url(), {"a": 1}) == {"a": 1}


# --- failures that are not about the certificate -------------------------------------------------


def test_a_plain_http_server_on_the_https_url_is_offline_and_got_nothing(cert: TerminalCertificate) -> None:
    plain = EchoServer(None)
    try:
        url = plain.url().replace("http://", "https://")
        with terminal_session(url, fingerprint=cert.fingerprint) as session:
            exc = _ssl_error(lambda: session.post(url, json={"a": 1}, timeout=TIMEOUT))
        typed = classify_ssl_error(exc, "t")
        assert type(typed) is DeviceOffline and typed.error_code == "tlsHandshake"
        plain.settle()
        assert plain.server.bodies == []
    finally:
        plain.stop()


def test_a_tls_failure_after_the_request_went_out_is_not_called_nothing_sent(cert: TerminalCertificate) -> None:
    # OpenSSL names this failure exactly as it names a handshake against a plain HTTP server
    # (WRONG_VERSION_NUMBER): only where it happened tells the two apart
    srv = EchoServer(cert, mode="garbage")

    class MaySent(CommandTimeout):
        pass

    try:
        with terminal_session(srv.url(), fingerprint=cert.fingerprint) as session:
            exc = _ssl_error(lambda: session.post(srv.url(), json={"pay": 1}, timeout=TIMEOUT))
        srv.settle()
        assert srv.server.bodies == [b'{"pay": 1}']  # the terminal had the request
        typed = classify_ssl_error(exc, "t", may_have_sent=MaySent)
        assert type(typed) is MaySent and typed.error_code == "noResponse"
        default = classify_ssl_error(exc, "t")
        assert isinstance(default, CommandTimeout) and not isinstance(default, DeviceOffline)
    finally:
        srv.stop()


def test_the_server_refuses_tls_below_1_2(cert: TerminalCertificate) -> None:
    def handshake(server_ctx: ssl.SSLContext) -> str:
        listener = socket.create_server(("127.0.0.1", 0))

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

        thread = threading.Thread(target=serve)
        thread.start()
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            client.set_ciphers("DEFAULT:@SECLEVEL=0")
            client.minimum_version, client.maximum_version = ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1
        try:
            with socket.create_connection(listener.getsockname(), timeout=5) as raw, client.wrap_socket(raw) as tls:
                tls.send(b"x")
                return str(tls.version())
        except ssl.SSLError as exc:
            return f"refused: {exc.reason}"
        finally:
            thread.join(5)
            listener.close()

    lenient = server_context(cert.cert_path, cert.key_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        lenient.minimum_version = ssl.TLSVersion.TLSv1
        lenient.set_ciphers("DEFAULT:@SECLEVEL=0")
    assert handshake(lenient) == "TLSv1.1"  # the old client really can talk TLS 1.1 here …
    assert handshake(server_context(cert.cert_path, cert.key_path)).startswith("refused")  # … but not to us


# --- refusals up front -----------------------------------------------------------------------------


def test_plain_http_is_refused_unless_allowed(cert: TerminalCertificate) -> None:
    plain = EchoServer(None)
    try:
        with pytest.raises(InvalidData) as err:
            terminal_session(plain.url(), device="term-1")
        assert err.value.error_code == "insecureUrl" and err.value.device == "term-1"
        with pytest.raises(InvalidData) as err:  # a pin on a plain url would protect nothing
            terminal_session(plain.url(), fingerprint=cert.fingerprint, allow_plain_http=True)
        assert err.value.error_code == "insecureUrl"
        with terminal_session(plain.url(), allow_plain_http=True) as session:
            assert _post(session, plain.url(), {"sim": 1}) == {"sim": 1}
        # a TLS session cannot be talked (or redirected) into plain HTTP either
        with terminal_session("https://127.0.0.1:8443/", fingerprint=cert.fingerprint) as session:
            with pytest.raises(InvalidData) as err:
                session.post(plain.url(), json={"leak": 1}, timeout=TIMEOUT)
        assert err.value.error_code == "insecureUrl"
        plain.settle()
        assert plain.server.bodies == [b'{"sim": 1}']
    finally:
        plain.stop()


def test_https_needs_exactly_one_trust_anchor(cert: TerminalCertificate, tmp_path: Path) -> None:
    url = "https://192.168.1.50:8443/"
    for kwargs in ({}, {"allow_plain_http": True},
                   {"fingerprint": cert.fingerprint, "ca_file": cert.cert_path},
                   {"ca_file": tmp_path / "missing.pem"}):
        with pytest.raises(InvalidData) as err:
            terminal_session(url, **kwargs)  # type: ignore[arg-type]
        assert err.value.error_code == "noTrustAnchor", kwargs
    with pytest.raises(InvalidData) as err:
        terminal_session("ftp://192.168.1.50/")
    assert err.value.error_code == "url"
    terminal_session(url, fingerprint=cert.fingerprint).close()  # and the good cases build
    terminal_session(url, ca_file=cert.cert_path).close()


# --- fingerprints and the generated certificate ---------------------------------------------------


FP = "5e8f16062ea3cd2c4a0d547876baa6f38cabf625b4a1c6e3c2e4e0f3a9d2b7c1"


@pytest.mark.parametrize("text", [
    FP,
    FP.upper(),
    ":".join(FP[i:i + 2] for i in range(0, 64, 2)),
    " ".join(FP[i:i + 2].upper() for i in range(0, 64, 2)),
    f"  {FP}\n",
    "sha256 Fingerprint=" + ":".join(FP[i:i + 2].upper() for i in range(0, 64, 2)),  # openssl x509 -fingerprint
])
def test_fingerprints_are_normalized(text: str) -> None:
    assert normalize_fingerprint(text) == FP


@pytest.mark.parametrize("text", [
    "",
    FP[:-2],  # 31 bytes
    FP + "00",  # 33 bytes
    "a9993e364706816aba3e25717850c26c9cd0d89d",  # a SHA-1 fingerprint: too weak to pin
    FP[:-1] + "g",
    "sha256=" + FP,  # only openssl's "… Fingerprint=" label is read
])
def test_malformed_fingerprints_are_refused(text: str) -> None:
    with pytest.raises(InvalidData) as err:
        normalize_fingerprint(text, device="term-1")
    assert err.value.error_code == "fingerprint" and err.value.device == "term-1"


def test_the_fingerprint_is_sha256_of_what_the_server_presents(cert: TerminalCertificate,
                                                               tls_server: EchoServer) -> None:
    served_pem = ssl.get_server_certificate(("127.0.0.1", tls_server.port), timeout=5)
    served_der = ssl.PEM_cert_to_DER_cert(served_pem)
    assert hashlib.sha256(served_der).hexdigest() == cert.fingerprint
    assert fingerprint_of(served_pem.encode()) == fingerprint_of(served_der) == cert.fingerprint
    with pytest.raises(InvalidData):
        fingerprint_of(b"not a certificate")


def test_the_generated_certificate_and_key(tmp_path: Path) -> None:
    target = tmp_path / "cert"
    target.mkdir()
    stale = target / "key.pem"
    stale.write_text("old")
    stale.chmod(0o644)  # an older, world-readable key file is tightened, not kept
    old_umask = os.umask(0o000)
    try:
        made = generate_self_signed(target, common_name="POI-1", hosts=("192.168.1.50", "terminal.local"), days=30)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(made.key_path.stat().st_mode) == 0o600
    loaded = x509.load_pem_x509_certificate(made.cert_path.read_bytes())
    san = loaded.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["192.168.1.50"]
    assert san.get_values_for_type(x509.DNSName) == ["terminal.local"]
    key = loaded.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    assert 29 <= (loaded.not_valid_after_utc - loaded.not_valid_before_utc).days <= 31
    assert made.fingerprint == fingerprint_of(made.cert_path.read_bytes())
    assert b"PRIVATE KEY" in made.key_path.read_bytes()
    assert "PRIVATE" not in repr(made)  # the returned value holds paths, never key material
