"""Ed25519 keys, canonical JSON, signed requests and signed documents.

A request from an agent carries five headers; the signature covers the method, the path with
its query, the SHA-256 of the body, the timestamp, the nonce and the kiosk id, one per line
after a version tag (``string_to_sign``). The server refuses a timestamp more than
``MAX_SKEW_S`` away from its clock and a nonce it has seen from that kiosk, so a captured
request cannot be replayed and an old one cannot be held back and sent later.

A document (TUF's idea: signed, versioned, expiring metadata) is ``{"signed": {...},
"signatures": [{"keyid", "sig"}]}``; the signature is over the canonical JSON of "signed".
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SCHEME = "fleet-v1"
MAX_SKEW_S = 300
H_KIOSK = "X-Fleet-Kiosk"
H_TIMESTAMP = "X-Fleet-Timestamp"
H_NONCE = "X-Fleet-Nonce"
H_SIGNATURE = "X-Fleet-Signature"
H_PUBKEY = "X-Fleet-Public-Key"  # enrollment only: the key the request is signed with
#: the kiosk id a not-yet-enrolled agent signs its enrollment request under
ENROLL_ID = "-enroll-"
NONCE_MIN, NONCE_MAX = 16, 64


class SignatureError(ValueError):
    """A signature, key or document that does not verify; str() names what."""


def b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def b64d(text: str) -> bytes:
    if not isinstance(text, str) or len(text) > 4096:
        raise SignatureError("not base64url text")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise SignatureError("not base64url text") from exc


def canonical(value: Any) -> bytes:
    """One byte string per JSON value: sorted keys, no spaces, UTF-8, no NaN (both ends
    are Python, whose float spelling is the shortest round-trip one)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- keys ---------------------------------------------------------------------------------------
def new_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_raw(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())


def private_from_raw(raw: bytes) -> Ed25519PrivateKey:
    if len(raw) != 32:
        raise SignatureError("an Ed25519 private key is 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(raw)


def public_b64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return b64e(pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def public_from_b64(text: str) -> Ed25519PublicKey:
    raw = b64d(text)
    if len(raw) != 32:
        raise SignatureError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def key_id(public: str) -> str:
    """A short, stable name for a public key (base64url text): its SHA-256, 16 hex digits."""
    return sha256_hex(public.encode())[:16]


def verify(public: str | Ed25519PublicKey, signature_b64: str, message: bytes) -> None:
    key = public_from_b64(public) if isinstance(public, str) else public
    try:
        key.verify(b64d(signature_b64), message)
    except InvalidSignature:
        raise SignatureError("the signature does not verify") from None


# --- requests -----------------------------------------------------------------------------------
def string_to_sign(method: str, path: str, body: bytes, timestamp: str, nonce: str, kiosk_id: str) -> bytes:
    return "\n".join((SCHEME, method.upper(), path, sha256_hex(body), timestamp, nonce, kiosk_id)).encode()


def sign_request(key: Ed25519PrivateKey, kiosk_id: str, method: str, path: str, body: bytes, *,
                 now: float, nonce: str) -> dict[str, str]:
    """The headers of a signed request (path with its query string, as sent)."""
    ts = str(int(now))
    sig = key.sign(string_to_sign(method, path, body, ts, nonce, kiosk_id))
    return {H_KIOSK: kiosk_id, H_TIMESTAMP: ts, H_NONCE: nonce, H_SIGNATURE: b64e(sig)}


# --- documents ----------------------------------------------------------------------------------
def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: Any) -> dt.datetime:
    if not isinstance(text, str):
        raise SignatureError("a time must be an ISO 8601 string")
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise SignatureError(f"not an ISO 8601 time: {text[:40]!r}") from exc
    if moment.tzinfo is None:
        raise SignatureError("a time must carry its zone (Z)")
    return moment


def sign_document(key: Ed25519PrivateKey, signed: Mapping[str, Any]) -> dict[str, Any]:
    sig = key.sign(canonical(dict(signed)))
    return {"signed": dict(signed), "signatures": [{"keyid": key_id(public_b64(key)), "sig": b64e(sig)}]}


@dataclass(frozen=True)
class VerifiedDocument:
    signed: dict[str, Any]
    version: int
    expires: dt.datetime


def verify_document(doc: Any, trusted_public: str, *, doc_type: str, now: dt.datetime) -> VerifiedDocument:
    """The "signed" part of `doc` once its signature by `trusted_public` verifies, its type is
    `doc_type`, its version is a positive whole number and it has not expired.
    SignatureError (bad shape, other key, bad signature) or DocumentExpired otherwise."""
    if not isinstance(doc, dict) or not isinstance(doc.get("signed"), dict) \
            or not isinstance(doc.get("signatures"), list):
        raise SignatureError("not a signed document ({signed, signatures})")
    signed = doc["signed"]
    wanted = key_id(trusted_public)
    sigs = [s for s in doc["signatures"] if isinstance(s, dict) and s.get("keyid") == wanted]
    if not sigs:
        raise SignatureError("not signed by the fleet key this kiosk trusts")
    verify(trusted_public, str(sigs[0].get("sig", "")), canonical(signed))
    if signed.get("_type") != doc_type:
        raise SignatureError(f"not a {doc_type} document")
    version = signed.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SignatureError("a document's version is a whole number from 1")
    expires = parse_iso(signed.get("expires"))
    if expires <= now:
        raise DocumentExpired(f"expired at {signed.get('expires')}")
    return VerifiedDocument(signed, version, expires)


class DocumentExpired(SignatureError):
    pass
