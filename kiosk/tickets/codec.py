"""The signed QR of a transit ticket: what a ticket says (TicketData), its compact signed form
printed as the ticket's QR, and the rule a gate verifies it by, offline, knowing only the
kiosks' public keys. docs/qr-tickets.md has the full description.

    "CKT1:" + base64url(body) + "." + base64url(Ed25519 signature over b"CKT1:" + body)

body (big-endian, 30–40 bytes for a kiosk's own ticket ids):

    kind      1 byte   1 single, 2 return
    trips     1 byte   1 or 2 (must be the kind's)
    until     4 bytes  valid_until, unix seconds (uint32)
    amount    varint   price paid, rials
    kiosk_id  1 byte length + UTF-8
    id form   1 byte   0: ticket id as text; 1: "<kiosk_id>-" left out, the rest as text;
                       2: "<kiosk_id>-YYYYMMDD-<14 lowercase hex>" (a journal transaction
                       id): 4 bytes date as a number, 7 bytes of the hex
    id        form 0/1: 1 byte length + UTF-8; form 2: 11 bytes

The signature covers the prefix too, and the prefix differs from a receipt's (CK2:): the same
kiosk key signs both, yet a receipt can never be read as a ticket nor a ticket as a receipt.
base64url has no padding and must be canonical, so one ticket has exactly one spelling.
"""

from __future__ import annotations

import datetime as dt
import re
import struct
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kiosk import b64url
from kiosk.errors import KioskError
from kiosk.receipts import ReceiptKeyError, load_or_create_key, load_public_key

PREFIX = "CKT1:"
#: a ticket payload is ~140 characters; anything far longer is refused before decoding
MAX_PAYLOAD_CHARS = 512
MAX_ID_BYTES = 64
SIGNATURE_BYTES = 64
KIND_CODES = {"single": 1, "return": 2}  # on the wire: append only, never renumber
KIND_BY_CODE = {v: k for k, v in KIND_CODES.items()}
TRIPS_OF_KIND = {"single": 1, "return": 2}

_VERSION_PREFIX = re.compile(r"^CKT(\d{1,4}):")
_TX_TAIL = re.compile(r"^([0-9]{8})-([0-9a-f]{14})$")


class InvalidTicket(KioskError):
    """A ticket payload a gate must refuse. `reason`: "format" (not a ticket or damaged),
    "unknown_version", "unknown_kiosk" (signed by a kiosk whose key the gate does not hold),
    "signature" (forged, altered, or another key's), "expired" (after valid_until)."""

    key: ClassVar[str] = "ticket.invalid"
    fa: ClassVar[str] = "این بلیت پذیرفته نیست ({reason_fa})."
    en: ClassVar[str] = "This ticket is not accepted ({reason_en})."
    money: ClassVar[str] = "none"

    REASONS: ClassVar[dict[str, tuple[str, str]]] = {
        "format": ("کد خوانده‌شده بلیت نیست یا آسیب دیده است", "the code is not a ticket or is damaged"),
        "unknown_version": ("نسخه این بلیت شناخته نیست", "the ticket's version is not known"),
        "unknown_kiosk": ("صادرکننده بلیت شناخته نیست", "the issuing kiosk is not known"),
        "signature": ("امضای بلیت معتبر نیست", "the ticket's signature does not match"),
        "expired": ("مهلت اعتبار بلیت گذشته است", "the ticket has expired"),
    }

    def __init__(self, reason: str, detail: str = "") -> None:
        if reason not in self.REASONS:
            raise ValueError(f"unknown InvalidTicket reason {reason!r}")
        fa, en = self.REASONS[reason]
        super().__init__(detail or f"invalid ticket: {reason}", reason=reason, reason_fa=fa, reason_en=en)
        self.reason = reason


@dataclass(frozen=True)
class TicketData:
    """What a ticket's QR says; every field is signed. `valid_until` is UTC, whole seconds."""

    kiosk_id: str
    ticket_id: str
    kind: str  # "single" | "return"
    trips: int
    valid_until: dt.datetime
    amount_rials: int

    def __post_init__(self) -> None:
        if self.kind not in KIND_CODES:
            raise ValueError(f"kind must be one of {sorted(KIND_CODES)}, not {self.kind!r}")
        if self.trips != TRIPS_OF_KIND[self.kind]:
            raise ValueError(f"a {self.kind} ticket has {TRIPS_OF_KIND[self.kind]} trip(s), not {self.trips!r}")
        for name in ("kiosk_id", "ticket_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or len(value.encode("utf-8")) > MAX_ID_BYTES:
                raise ValueError(f"{name} must be 1–{MAX_ID_BYTES} bytes of text")
        if not isinstance(self.amount_rials, int) or isinstance(self.amount_rials, bool) or self.amount_rials < 0:
            raise ValueError(f"amount_rials must be a non-negative int, not {self.amount_rials!r}")
        if not isinstance(self.valid_until, dt.datetime) or self.valid_until.utcoffset() is None:
            raise ValueError("valid_until must be an aware datetime")
        if not 0 <= self.valid_until.timestamp() < 2**32 or self.valid_until.microsecond:
            raise ValueError("valid_until must be whole seconds between 1970 and 2106")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["valid_until"] = self.valid_until.astimezone(dt.UTC).isoformat()
        return out


@dataclass(frozen=True)
class VerifiedTicket(TicketData):
    """A ticket whose signature verified and which had not expired at `checked_at`."""

    checked_at: dt.datetime = dt.datetime.fromtimestamp(0, dt.UTC)


# --- the body ---------------------------------------------------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _text(value: str) -> bytes:
    raw = value.encode("utf-8")
    return bytes([len(raw)]) + raw


def encode_body(t: TicketData) -> bytes:
    out = bytearray([KIND_CODES[t.kind], t.trips])
    out += struct.pack(">I", int(t.valid_until.timestamp()))
    out += _varint(t.amount_rials)
    out += _text(t.kiosk_id)
    prefix = t.kiosk_id + "-"
    tail = t.ticket_id[len(prefix):] if t.ticket_id.startswith(prefix) else None
    match = _TX_TAIL.match(tail) if tail else None
    if match:
        out += b"\x02" + struct.pack(">I", int(match.group(1))) + bytes.fromhex(match.group(2))
    elif tail:
        out += b"\x01" + _text(tail)
    else:
        out += b"\x00" + _text(t.ticket_id)
    return bytes(out)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise InvalidTicket("format", "body ends early")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def varint(self) -> int:
        value = shift = 0
        for _ in range(6):  # 42 bits: far beyond any fare
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise InvalidTicket("format", "varint too long")

    def text(self) -> str:
        n = self.take(1)[0]
        if not 1 <= n <= MAX_ID_BYTES:
            raise InvalidTicket("format", "bad text length")
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidTicket("format", "text is not UTF-8") from exc


def decode_body(body: bytes) -> TicketData:
    """The fields of a body, strictly: anything odd is InvalidTicket("format"). Not trusted
    until its signature verified (verify_ticket)."""
    r = _Reader(body)
    kind = KIND_BY_CODE.get(r.take(1)[0])
    if kind is None:
        raise InvalidTicket("format", "unknown kind code")
    trips = r.take(1)[0]
    (until,) = struct.unpack(">I", r.take(4))
    amount = r.varint()
    kiosk_id = r.text()
    form = r.take(1)[0]
    if form == 2:
        (day,) = struct.unpack(">I", r.take(4))
        if not 10_000_000 <= day <= 99_999_999:
            raise InvalidTicket("format", "bad date in ticket id")
        ticket_id = f"{kiosk_id}-{day:08d}-{r.take(7).hex()}"
    elif form == 1:
        ticket_id = f"{kiosk_id}-{r.text()}"
    elif form == 0:
        ticket_id = r.text()
    else:
        raise InvalidTicket("format", "bad ticket id form")
    if r.pos != len(body):
        raise InvalidTicket("format", "trailing bytes after the body")
    try:
        data = TicketData(kiosk_id, ticket_id, kind, trips, dt.datetime.fromtimestamp(until, dt.UTC), amount)
    except ValueError as exc:  # e.g. trips that are not the kind's
        raise InvalidTicket("format", str(exc)) from exc
    if encode_body(data) != body:  # one ticket, one spelling (a form 1 id that fits form 2, …)
        raise InvalidTicket("format", "non-canonical body")
    return data


def _b64e(raw: bytes) -> str:
    return b64url.encode(raw)


def _b64d(text: str) -> bytes:
    try:
        return b64url.decode(text)
    except b64url.NotBase64Url as exc:
        raise InvalidTicket("format", exc.reason) from None


# --- signing ----------------------------------------------------------------------------------
class TicketSigner:
    """Signs tickets with the kiosk's receipt key (Ed25519, deterministic: the same ticket
    always has the same payload, so a ticket shown again after a restart is the same one)."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self.public_key: Ed25519PublicKey = private_key.public_key()

    def sign_message(self, message: bytes) -> bytes:
        """The raw signature of `message` (a sibling payload: a settlement certificate)."""
        return self._private_key.sign(message)

    def sign(self, ticket: TicketData) -> str:
        body = encode_body(ticket)
        signature = self._private_key.sign(PREFIX.encode("ascii") + body)
        return f"{PREFIX}{_b64e(body)}.{_b64e(signature)}"


def load_ticket_signer(data_dir: str | Path) -> TicketSigner:
    """The kiosk's ticket signer: its receipt key (<data_dir>/keys/receipt-ed25519.pem, made on
    first use by kiosk.receipts.keys, whose public half the gates are given)."""
    receipt_signer = load_or_create_key(data_dir)
    key = serialization.load_pem_private_key(Path(receipt_signer.key_path).read_bytes(), password=None)
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    if (not isinstance(key, Ed25519PrivateKey)
            or key.public_key().public_bytes(*raw) != receipt_signer.public_key.public_bytes(*raw)):
        raise ReceiptKeyError("the receipt key changed while it was read")
    return TicketSigner(key)


# --- verifying (what a gate does, offline) -----------------------------------------------------
def verify_ticket(payload: str, public_keys: Mapping[str, str | bytes | Ed25519PublicKey], *,
                  now: dt.datetime | float | None = None) -> VerifiedTicket:
    """The gate's rule: a CKT1 payload, canonical and well formed, whose kiosk's public key the
    gate holds (`public_keys`: kiosk id → key), whose Ed25519 signature over the prefix and
    body verifies with that key, and whose valid_until is not before `now` (default: this
    clock). Whether a trip is still unused is not in the QR: a gate counts uses
    (OfflineGate) and the back-office's redeem call is the authority when online."""
    if not isinstance(payload, str) or len(payload) > MAX_PAYLOAD_CHARS:
        raise InvalidTicket("format", "not a ticket payload (type or length)")
    payload = payload.strip()
    if not payload.startswith(PREFIX):
        match = _VERSION_PREFIX.match(payload)
        if match:
            raise InvalidTicket("unknown_version", f"ticket version CKT{match.group(1)} is not known")
        raise InvalidTicket("format", f"payload does not start with {PREFIX}")
    body_b64, dot, sig_b64 = payload[len(PREFIX):].partition(".")
    if not dot or not body_b64:
        raise InvalidTicket("format", "payload has no body.signature")
    body, signature = _b64d(body_b64), _b64d(sig_b64)
    if len(signature) != SIGNATURE_BYTES:
        raise InvalidTicket("format", "signature is not 64 bytes")
    data = decode_body(body)
    if data.kiosk_id not in public_keys:
        raise InvalidTicket("unknown_kiosk", f"no public key for kiosk {data.kiosk_id!r}")
    try:
        load_public_key(public_keys[data.kiosk_id]).verify(signature, PREFIX.encode("ascii") + body)
    except InvalidSignature as exc:
        raise InvalidTicket("signature", "signature does not match the kiosk's key") from exc
    if now is None:
        now = time.time()
    at = now if isinstance(now, dt.datetime) else dt.datetime.fromtimestamp(now, dt.UTC)
    if at > data.valid_until:
        raise InvalidTicket("expired", f"valid until {data.valid_until.isoformat()}")
    return VerifiedTicket(**{**asdict(data), "checked_at": at})


class TripsUsed(KioskError):
    """Every trip of this ticket was used at this gate already."""

    key: ClassVar[str] = "ticket.trips_used"
    fa: ClassVar[str] = "همه سفرهای این بلیت ({trips}) استفاده شده است."
    en: ClassVar[str] = "Every trip of this ticket ({trips}) has been used."


class OfflineGate:
    """A gate with no back-office link: verifies the QR and counts each ticket id's uses
    itself, so a single ticket opens it once and a return ticket twice. Gates that cannot
    talk to each other cannot share the count: the back-office's redemptions are the
    authority once they are online (docs/qr-tickets.md)."""

    def __init__(self, public_keys: Mapping[str, str | bytes | Ed25519PublicKey]) -> None:
        self.public_keys = dict(public_keys)
        self.used: dict[str, int] = {}

    def admit(self, payload: str, *, now: dt.datetime | float | None = None) -> int:
        """Let one trip through; returns the trip number. InvalidTicket, TripsUsed."""
        ticket = verify_ticket(payload, self.public_keys, now=now)
        used = self.used.get(ticket.ticket_id, 0)
        if used >= ticket.trips:
            raise TripsUsed(f"ticket {ticket.ticket_id}: {ticket.trips} trip(s) used", trips=ticket.trips)
        self.used[ticket.ticket_id] = used + 1
        return used + 1


__all__ = ["KIND_CODES", "MAX_PAYLOAD_CHARS", "PREFIX", "TRIPS_OF_KIND", "InvalidTicket", "OfflineGate",
           "TicketData", "TicketSigner", "TripsUsed", "VerifiedTicket", "decode_body", "encode_body",
           "load_ticket_signer", "verify_ticket"]
