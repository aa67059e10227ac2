"""HTTPS to the payment terminal: a pinned certificate (or a CA file), typed TLS failures, and a
generated certificate for the simulator.

Why: real terminals serve their local nexo API over HTTPS (port 8443) with a certificate of
their own, usually self-signed and addressed by a LAN IP. Trusting the system CA store would
prove nothing about *that* terminal, and hostname checks do not fit an IP on a shop LAN, so
the kiosk pins the SHA-256 fingerprint of the terminal's certificate: the handshake must
present exactly that certificate. Where a site runs its own CA, a CA file with the usual
chain and hostname checks can be used instead. Plain HTTP is refused unless asked for
(the simulator, the demo).

The other reason this module exists: a TLS failure during the handshake means no request byte
left the kiosk, so the sale cannot have happened (`DeviceOffline`); a TLS failure after the
request went out means it may have happened (a `CommandTimeout`, so the caller asks
`transaction_status`). requests reports both as the same `requests.exceptions.SSLError`, so
connections made by `terminal_session` mark handshake failures and `classify_ssl_error` tells
them apart. See docs/payment-terminal.md, "Transport security (TLS)".
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import ipaddress
import os
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlsplit

import requests
from requests.adapters import BaseAdapter, HTTPAdapter
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import MaxRetryError
from urllib3.exceptions import SSLError as Urllib3SSLError

from devices.base import CommandTimeout, DeviceError, DeviceOffline, InvalidData

#: TLS below 1.2 is refused both ways (PCI DSS has required 1.2+ since 2018)
MIN_TLS = ssl.TLSVersion.TLSv1_2
_SHA256_HEX = 64


# --- errors --------------------------------------------------------------------------------


class TerminalCertificateRejected(DeviceOffline):
    """The terminal presented a certificate we do not trust: not the pinned one (error_code
    `tlsPin`) or one that fails CA/hostname verification (`tlsVerify`). The handshake failed
    before any request byte was sent, so the sale cannot have happened; the device is
    treated as offline until the certificate (or the pin) is put right."""

    def __init__(self, message: str, *, device: str = "", error_code: str = "tlsPin") -> None:
        super().__init__(message, device=device, error_code=error_code)


class _HandshakeFailed(Urllib3SSLError):
    """Raised by our connections for an SSL failure inside `connect()`, i.e. before any HTTP
    byte was written. A urllib3 SSLError (not an ssl.SSLError), so urllib3 passes it through
    unwrapped into MaxRetryError.reason and requests into requests.exceptions.SSLError."""

    def __init__(self, original: BaseException, *, pin_mismatch: bool) -> None:
        super().__init__(str(original))
        self.original = original
        self.pin_mismatch = pin_mismatch


# --- fingerprints --------------------------------------------------------------------------


def normalize_fingerprint(text: str, *, device: str = "terminal") -> str:
    """A SHA-256 certificate fingerprint as 64 lowercase hex digits.

    Accepts what operators paste: any case, bytes separated by colons, spaces or dashes, and
    the output of `openssl x509 -noout -fingerprint -sha256` ("sha256 Fingerprint=AB:CD:…").
    Anything that is not exactly 32 bytes of hex is refused, SHA-1/MD5 pins included
    (urllib3 would accept those by their length)."""
    if not isinstance(text, str):
        raise InvalidData(f"{device}: the certificate fingerprint must be text", device=device,
                          error_code="fingerprint")
    value = text.strip()
    if "=" in value:  # openssl's "sha256 Fingerprint=…"
        label, _, value = value.rpartition("=")
        if "fingerprint" not in label.lower():
            raise InvalidData(f"{device}: cannot read a fingerprint from {text!r}", device=device,
                              error_code="fingerprint")
    digits = re.sub(r"[\s:\-]", "", value).lower()
    if not re.fullmatch(r"[0-9a-f]*", digits):
        raise InvalidData(f"{device}: a certificate fingerprint holds hex digits only", device=device,
                          error_code="fingerprint")
    if len(digits) != _SHA256_HEX:
        raise InvalidData(
            f"{device}: a SHA-256 fingerprint has {_SHA256_HEX} hex digits, this one has {len(digits)}",
            device=device, error_code="fingerprint")
    return digits


def fingerprint_of(cert_pem_or_der: bytes) -> str:
    """SHA-256 of the certificate's DER encoding, lowercase hex without colons: the value to
    pin, and what `openssl x509 -fingerprint -sha256` shows (with colons). For a PEM holding a
    chain, the first certificate (the server's own) is taken."""
    # cryptography (~8 MB) is imported where a certificate is read or made, not with the
    # driver: a pinned session checks the peer's fingerprint in urllib3 without it
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        if cert_pem_or_der.lstrip().startswith(b"-----BEGIN"):
            cert = x509.load_pem_x509_certificate(cert_pem_or_der)
        else:
            cert = x509.load_der_x509_certificate(cert_pem_or_der)
    except ValueError as exc:
        raise InvalidData(f"not an X.509 certificate: {exc}", error_code="certificate") from exc
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


# --- certificates for the simulator --------------------------------------------------------


@dataclass(frozen=True)
class TerminalCertificate:
    """A generated certificate: where its files are and the fingerprint to pin."""

    cert_path: Path
    key_path: Path
    fingerprint: str


def generate_self_signed(
    directory: Path,
    *,
    common_name: str,
    hosts: Sequence[str] = ("127.0.0.1", "localhost"),
    days: int = 825,
) -> TerminalCertificate:
    """Write `cert.pem` and `key.pem` (mode 0600) into `directory`: an EC P-256 key and a
    self-signed certificate whose SANs name `hosts` (IP addresses as IP SANs, the rest as DNS
    names), like a terminal's own. It is also usable as its own CA file (`ca_file=`), so the
    CA-verification path can be tested against it. 825 days is the longest validity current
    clients accept for a server certificate."""
    if not hosts:
        raise InvalidData("a certificate needs at least one host (IP or DNS name)", error_code="certificate")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _dt.datetime.now(_dt.timezone.utc)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(hours=1))  # tolerate a terminal clock slightly behind
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        # CA:TRUE + keyCertSign so OpenSSL (also in X509_STRICT mode) accepts it as its own anchor
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True,
                          crl_sign=False, encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    # created 0600 (never briefly world-readable), and re-chmod'ed if the file already existed
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(key_pem)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return TerminalCertificate(cert_path, key_path, fingerprint_of(cert.public_bytes(serialization.Encoding.DER)))


def load_or_generate(directory: Path, *, common_name: str, min_days_left: int = 30) -> TerminalCertificate:
    """The certificate already in `directory` (so a pinned fingerprint stays valid across
    restarts), or a new one when there is none, it cannot be read, or it expires within
    `min_days_left` days."""
    from cryptography import x509

    cert_path, key_path = Path(directory) / "cert.pem", Path(directory) / "key.pem"
    try:
        pem = cert_path.read_bytes()
        cert = x509.load_pem_x509_certificate(pem)
        left = cert.not_valid_after_utc - _dt.datetime.now(_dt.timezone.utc)
        if key_path.is_file() and left > _dt.timedelta(days=min_days_left):
            return TerminalCertificate(cert_path, key_path, fingerprint_of(pem))
    except (OSError, ValueError):
        pass
    return generate_self_signed(Path(directory), common_name=common_name)


def server_context(cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> ssl.SSLContext:
    """A server-side context (TLS 1.2 minimum) for the simulator's listening socket.

    Wrap with `do_handshake_on_connect=False`: the handshake then runs on the first read in
    the request's own handler thread, so one client that connects and never speaks cannot
    stall `serve_forever`'s accept loop:

        server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = MIN_TLS
    ctx.load_cert_chain(os.fspath(cert_path), os.fspath(key_path))
    return ctx


# --- the client session --------------------------------------------------------------------


def _client_context(ca_file: str | None) -> ssl.SSLContext:
    """One client context per session, built once. Without it urllib3 builds a context per
    new connection and loads the whole system CA store into it (measured: ~17 ms of an ~18 ms
    new HTTPS connection on loopback) although that store is never consulted here. A bare
    SSLContext also leaves out create_default_context's SSLKEYLOGFILE hook (session keys of
    card payments are not to be written anywhere)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = MIN_TLS
    if ca_file is None:  # pin mode: the fingerprint is the check (order matters to ssl)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:  # CA mode: chain to this file only, and the URL's host/IP in the SAN
        ctx.load_verify_locations(cafile=ca_file)
        ctx.hostname_checks_common_name = False
    return ctx


class _TerminalHTTPSConnection(HTTPSConnection):
    """urllib3's HTTPS connection, marking an SSL failure in `connect()` (TCP connect, TLS
    handshake, fingerprint or CA/hostname check — all before any request byte) as
    `_HandshakeFailed`. TCP errors and timeouts pass through unchanged."""

    def connect(self) -> None:
        try:
            super().connect()
        except _HandshakeFailed:
            raise
        except Urllib3SSLError as exc:
            # in pin mode, urllib3's own SSLError out of connect() is assert_fingerprint's
            # ("Fingerprints did not match" / "No certificate for the peer"); no CA file is loaded then
            raise _HandshakeFailed(exc, pin_mismatch=bool(self.assert_fingerprint)) from exc
        except ssl.SSLError as exc:  # includes SSLCertVerificationError (= ssl.CertificateError)
            raise _HandshakeFailed(exc, pin_mismatch=False) from exc


class _TerminalHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _TerminalHTTPSConnection


class _TerminalAdapter(HTTPAdapter):
    """An HTTPAdapter whose TLS settings come from us, never from `verify=`, REQUESTS_CA_BUNDLE
    or certifi: requests would otherwise put `cert_reqs=CERT_REQUIRED` and its CA bundle on the
    pool per request, and a pinned self-signed certificate would then fail chain verification
    before the fingerprint is even looked at."""

    def __init__(self, tls: dict[str, Any]) -> None:
        self._tls = dict(tls)
        super().__init__(max_retries=0)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs, **self._tls)
        # an instance-level copy: the module-level mapping is shared by every PoolManager
        self.poolmanager.pool_classes_by_scheme = {"http": HTTPConnectionPool, "https": _TerminalHTTPSPool}

    def __getstate__(self) -> dict[str, Any]:
        # requests would pickle the adapter without `_tls` and rebuild it unpinned
        raise TypeError("a terminal TLS adapter cannot be pickled; build a new terminal_session")

    def build_connection_pool_key_attributes(self, request: Any, verify: Any, cert: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, _ = super().build_connection_pool_key_attributes(request, verify, cert)
        # one fixed key per origin, so every request finds the same pool (keep-alive reuse)
        return host_params, dict(self._tls)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        for name, value in self._tls.items():
            setattr(conn, name, value)


class _RefusePlainHTTP(BaseAdapter):
    """Mounted on http:// in a TLS session: a redirect or a mistyped URL cannot fall back to
    plain text."""

    def __init__(self, device: str) -> None:
        super().__init__()
        self._device = device

    def send(self, request: Any, *args: Any, **kwargs: Any) -> requests.Response:
        raise InvalidData(f"{self._device}: plain HTTP refused on a TLS session ({request.url})",
                          device=self._device, error_code="insecureUrl")

    def close(self) -> None:
        return None


def terminal_session(
    url: str,
    *,
    fingerprint: str | None = None,
    ca_file: str | os.PathLike[str] | None = None,
    allow_plain_http: bool = False,
    device: str = "terminal",
) -> requests.Session:
    """A requests.Session for the terminal at `url`, secured as configured.

    - `https://` + `fingerprint`: the terminal must present exactly the certificate with that
      SHA-256 fingerprint. No chain or hostname check (terminals are self-signed and addressed
      by IP); the pin alone is the trust.
    - `https://` + `ca_file`: normal verification against that CA file only (not the system
      store), hostname/IP included.
    - `http://`: refused (InvalidData `insecureUrl`) unless `allow_plain_http` (simulator, demo).
    - `https://` with neither, or with both: refused (`noTrustAnchor`).

    Connections are pooled and kept alive as with any Session. The session ignores proxy and
    CA-bundle environment variables (`trust_env = False`): terminal traffic stays on the LAN.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise InvalidData(f"{device}: terminal url must be http(s)://host[:port]/…, got {url!r}",
                          device=device, error_code="url")
    if scheme == "http":
        if not allow_plain_http:
            raise InvalidData(f"{device}: plain HTTP to the terminal is refused ({url}); use https with a "
                              "pinned fingerprint, or allow_plain_http for the simulator",
                              device=device, error_code="insecureUrl")
        if fingerprint or ca_file:
            raise InvalidData(f"{device}: a fingerprint or CA file was given but the url is plain http ({url})",
                              device=device, error_code="insecureUrl")
        return _session()
    if bool(fingerprint) == bool(ca_file):
        raise InvalidData(
            f"{device}: https to the terminal needs exactly one trust anchor: a pinned SHA-256 fingerprint "
            "or a CA file", device=device, error_code="noTrustAnchor")
    if fingerprint:
        # CERT_NONE: no chain check (self-signed); urllib3 then checks the pin on the peer's
        # DER certificate right after the handshake and before sending, and marks it verified
        pin = normalize_fingerprint(fingerprint, device=device)
        tls: dict[str, Any] = {"ssl_context": _client_context(None), "cert_reqs": "CERT_NONE",
                               "assert_fingerprint": pin}
    else:
        ca = os.fspath(ca_file)  # type: ignore[arg-type]
        try:
            ctx = _client_context(ca)  # fail now, not at the first sale
        except (OSError, ssl.SSLError) as exc:
            raise InvalidData(f"{device}: cannot load CA file {ca}: {exc}", device=device,
                              error_code="noTrustAnchor") from exc
        tls = {"ssl_context": ctx, "cert_reqs": "CERT_REQUIRED"}
    session = _session()
    session.mount("https://", _TerminalAdapter(tls))
    if not allow_plain_http:
        session.mount("http://", _RefusePlainHTTP(device))
    return session


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no HTTP(S)_PROXY, REQUESTS_CA_BUNDLE or .netrc for the terminal
    return session


def classify_ssl_error(
    exc: requests.exceptions.SSLError,
    device: str,
    *,
    may_have_sent: type[DeviceError] = CommandTimeout,
) -> DeviceError:
    """Type a requests SSLError for the driver's `_post`.

    Note: `requests.exceptions.SSLError` is a subclass of `requests.ConnectionError`, so
    `_post` must catch it in its own `except requests.exceptions.SSLError` branch *before*
    the ConnectionError one (which would call it "connection refused").

    - certificate not the pinned one → `TerminalCertificateRejected` (`tlsPin`)
    - certificate fails CA or hostname verification → `TerminalCertificateRejected` (`tlsVerify`)
    - any other failure during the handshake → `DeviceOffline` (`tlsHandshake`)
    All three happened before a request byte was sent: the sale cannot have happened.
    - anything else (an SSL error while sending or reading, or from a session not made by
      `terminal_session`) → `may_have_sent` with error_code `noResponse`: the request may
      have reached the terminal, so the caller must ask `transaction_status`. The driver
      passes its `NoResponse` here.
    """
    reason: object = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    if isinstance(reason, _HandshakeFailed):
        original = reason.original
        if reason.pin_mismatch:
            return TerminalCertificateRejected(
                f"{device}: the terminal's certificate is not the pinned one ({original}); nothing was sent",
                device=device, error_code="tlsPin")
        if isinstance(original, ssl.SSLCertVerificationError):
            detail = original.verify_message or str(original)
            return TerminalCertificateRejected(
                f"{device}: the terminal's certificate failed verification ({detail}); nothing was sent",
                device=device, error_code="tlsVerify")
        return DeviceOffline(f"{device}: TLS handshake with the terminal failed ({original}); nothing was sent",
                             device=device, error_code="tlsHandshake")
    return may_have_sent(f"{device}: TLS failure after the request may have been sent ({reason or exc})",
                         device=device, error_code="noResponse")


__all__ = [
    "MIN_TLS",
    "TerminalCertificate",
    "TerminalCertificateRejected",
    "classify_ssl_error",
    "fingerprint_of",
    "generate_self_signed",
    "normalize_fingerprint",
    "server_context",
    "terminal_session",
]
