"""The signed receipt payload: what a receipt says (ReceiptData), its compact signed form
carried in the receipt's QR, and verifying one with the kiosk's public key.

Version 2 (what the kiosk signs today; docs/receipts.md has the full description):

    "CK2:" + base64url(body) + "." + base64url(Ed25519 signature over b"CK2:" + body)

body = flags(1: kind << 4) · unix time of the PAID journal row (uint32 BE) · amount (varint) ·
kiosk_id · tx_id (1 byte: 1 if it starts with "<kiosk_id>-", which is then left out) · bill_id ·
payment_id · rrn · journal seq of the PAID row (varint) · first 8 bytes of that row's hash.
Every field is fixed once the payment is approved and journaled, so every print and reprint
of a transaction carries the same payload. The tracking code (known only after settlement)
and the settlement status are printed beside the QR, not signed.

Version 1 ("CK1:", signed over the body alone; also signed the status and the tracking code)
is still verified, so receipts printed before keep verifying. Strings are "compact strings"
(digits as a number, lowercase hex as bytes, dash-joined parts each compact, else UTF-8);
base64url has no padding.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import re
import struct
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from kiosk import b64url
from kiosk.errors import KioskError
from kiosk.sensitive import is_masked_pan

PREFIX = "CK2:"
PREFIX_V1 = "CK1:"
#: A typical receipt's payload is ~180 characters; anything far longer is not ours and is
#: refused before any decoding work (the verifier reads untrusted QR text).
MAX_PAYLOAD_CHARS = 1024
#: Longest string field a receipt carries (ids, codes); keeps the QR small and scannable.
MAX_FIELD_CHARS = 64
SIGNATURE_BYTES = 64
#: How much of the PAID row's hash a receipt carries: 8 bytes, printed as 16 hex digits.
#: Enough that a journal rewritten with recomputed hashes cannot match the receipts already
#: in citizens' hands, short enough to keep the QR small.
JOURNAL_HASH_BYTES = 8
JOURNAL_HASH_HEX = 2 * JOURNAL_HASH_BYTES

_VERSION_PREFIX = re.compile(r"^CK(\d{1,4}):")
_DIGITS = re.compile(r"^[0-9]+$")
_HEX = re.compile(r"^[0-9a-f]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ReceiptStatus(enum.StrEnum):
    PAID = "paid"
    PENDING_SETTLEMENT = "pending_settlement"
    REVERSED = "reversed"


# Codes on the wire: append only, never renumber (old receipts must keep verifying).
_STATUS_CODES = {ReceiptStatus.PAID: 0, ReceiptStatus.PENDING_SETTLEMENT: 1, ReceiptStatus.REVERSED: 2}
_KIND_CODES = {"fee_payment": 1, "transit_topup": 2, "transit_card_sale": 3, "pending_topup": 4}
_STATUS_BY_CODE = {v: k for k, v in _STATUS_CODES.items()}
_KIND_BY_CODE = {v: k for k, v in _KIND_CODES.items()}
_KIND_OTHER = 15  # the kind follows as a compact string


# --- errors ---------------------------------------------------------------------------------


class InvalidReceipt(KioskError):
    """A receipt payload that does not verify. `reason`: "format" (not a receipt payload or
    damaged), "signature" (not signed by this key: forged, altered or another kiosk's),
    "unknown_version" (a payload version this software does not know)."""

    key: ClassVar[str] = "receipt.invalid"
    fa: ClassVar[str] = ("اصالت این رسید تأیید نشد ({reason_fa}). کد را دوباره اسکن کنید؛ اگر باز هم "
                         "تأیید نشد، رسید را به واحد پشتیبانی شهرداری تهران نشان دهید.")
    en: ClassVar[str] = ("This receipt could not be verified ({reason_en}). Scan the code again; if it "
                         "still fails, show the receipt to Tehran Municipality's support office.")
    money: ClassVar[str] = "none"

    REASONS: ClassVar[dict[str, tuple[str, str]]] = {
        "format": ("کد خوانده‌شده رسید کیوسک نیست یا آسیب دیده است", "the code is not a kiosk receipt or is damaged"),
        "signature": ("امضای رسید معتبر نیست", "the receipt's signature does not match"),
        "unknown_version": ("نسخه این رسید شناخته نیست", "the receipt's version is not known"),
    }

    def __init__(self, reason: str, detail: str = "") -> None:
        if reason not in self.REASONS:
            raise ValueError(f"unknown InvalidReceipt reason {reason!r}")
        fa, en = self.REASONS[reason]
        super().__init__(detail or f"invalid receipt: {reason}", reason=reason, reason_fa=fa, reason_en=en)
        self.reason = reason


# --- values ---------------------------------------------------------------------------------


def _check_text_field(name: str, value: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if len(value) > MAX_FIELD_CHARS:
        raise ValueError(f"{name} is {len(value)} characters; a receipt field holds at most {MAX_FIELD_CHARS}")
    if _CONTROL.search(value):
        raise ValueError(f"{name} must not hold control characters")


def check_masked_pan(masked_pan: str) -> None:
    """Refuse a card number that is not masked (the project's one rule: kiosk.sensitive's
    `is_masked_pan`, at most first 6 and last 4 visible). The message never repeats the
    value: it may be a full card number."""
    if not isinstance(masked_pan, str):
        raise TypeError("masked_pan must be a str")
    if masked_pan and not is_masked_pan(masked_pan):
        digits = sum(ch.isdigit() for ch in masked_pan)
        raise ValueError(f"masked_pan is not masked ({digits} digits visible); pass first6******last4")


#: what became of one item of a receipt that pays several bills at once (printed, not signed)
ITEM_OUTCOMES = ("settled", "pending", "refunded", "refund_pending")


@dataclass(frozen=True)
class ReceiptItem:
    """One bill of a receipt that pays several at once (a fee basket). Printed beside the
    signed fields, never signed: what became of each bill is known only after the payment."""

    label_fa: str
    label_en: str
    bill_id: str
    payment_id: str
    amount_rials: int
    outcome: str  # one of ITEM_OUTCOMES
    tracking_code: str = ""

    def __post_init__(self) -> None:
        for name in ("bill_id", "payment_id", "tracking_code"):
            _check_text_field(name, getattr(self, name))
        if self.outcome not in ITEM_OUTCOMES:
            raise ValueError(f"outcome must be one of {ITEM_OUTCOMES}, not {self.outcome!r}")
        if not isinstance(self.amount_rials, int) or isinstance(self.amount_rials, bool) or self.amount_rials < 0:
            raise ValueError(f"amount_rials must be a non-negative int, not {self.amount_rials!r}")


@dataclass(frozen=True)
class ReceiptData:
    """What one receipt says. Signed (fixed at payment time): kind, `at` (the PAID row's
    time), amount, kiosk, tx, bill and payment ids, rrn, `journal_seq` and `journal_hash`
    (the PAID row's seq and hash: full 64 hex or at least its first 16). Printed beside,
    not signed: the service labels, `tracking_code` ("" while settlement is pending), stan,
    `masked_pan` (must already be masked; ValueError otherwise) and `status`."""

    tx_id: str
    kiosk_id: str
    kind: str
    amount_rials: int
    at: dt.datetime
    bill_id: str
    payment_id: str
    service_label_fa: str
    service_label_en: str
    tracking_code: str
    rrn: str
    stan: str
    masked_pan: str
    status: str
    journal_seq: int
    journal_hash: str
    #: the bills of a basket, each with what became of it (printed, not signed); () otherwise
    items: tuple[ReceiptItem, ...] = ()

    def __post_init__(self) -> None:
        check_masked_pan(self.masked_pan)
        for name in ("tx_id", "kiosk_id", "kind", "bill_id", "payment_id", "tracking_code", "rrn", "stan",
                     "masked_pan", "journal_hash"):
            _check_text_field(name, getattr(self, name))
        if not self.tx_id or not self.kiosk_id or not self.kind:
            raise ValueError("tx_id, kiosk_id and kind must not be empty")
        for name in ("service_label_fa", "service_label_en"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a str")
        if not isinstance(self.amount_rials, int) or isinstance(self.amount_rials, bool) or self.amount_rials < 0:
            raise ValueError(f"amount_rials must be a non-negative int, not {self.amount_rials!r}")
        if not isinstance(self.at, dt.datetime) or self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ValueError("at must be an aware datetime (UTC)")
        if not 0 <= self.at.timestamp() < 2**32:
            raise ValueError("at must lie between 1970 and 2106")
        if self.status not in _STATUS_CODES:
            raise ValueError(f"status must be one of {[s.value for s in ReceiptStatus]}, not {self.status!r}")
        if (not isinstance(self.journal_seq, int) or isinstance(self.journal_seq, bool)
                or not 1 <= self.journal_seq < 2**63):
            raise ValueError(f"journal_seq must be the PAID row's seq (an int >= 1), not {self.journal_seq!r}")
        if len(self.journal_hash) < JOURNAL_HASH_HEX or not _HEX.match(self.journal_hash):
            raise ValueError(f"journal_hash must be the PAID row's hash: at least {JOURNAL_HASH_HEX} lowercase hex")

    @property
    def journal_hash_prefix(self) -> str:
        """The part of the PAID row's hash the receipt carries (16 hex)."""
        return self.journal_hash[:JOURNAL_HASH_HEX]


@dataclass(frozen=True)
class VerifiedReceipt:
    """The signed fields of a receipt that verified. `at` is UTC, whole seconds. Version 2
    signs neither status nor tracking code: `status` is "paid" (the signed fact is an
    approved payment) and `tracking_code` is "". Version 1 has no journal witness
    (`journal_seq` 0, `journal_hash` "")."""

    version: int
    kind: str
    status: str
    kiosk_id: str
    tx_id: str
    amount_rials: int
    at: dt.datetime
    bill_id: str
    payment_id: str
    tracking_code: str
    rrn: str
    journal_seq: int = 0
    journal_hash: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["at"] = self.at.isoformat()
        return out


# --- the compact body -----------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class _Reader:
    """Reads the body; any shortfall or oddity is InvalidReceipt("format")."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise InvalidReceipt("format", "body ends early")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def varint(self) -> int:
        value = shift = 0
        for _ in range(10):  # 70 bits: far beyond any amount or id we write
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise InvalidReceipt("format", "varint too long")


# compact string types (low 2 bits of the header varint; the rest is a count)
_CS_TEXT, _CS_DIGITS, _CS_HEX, _CS_DASHED = 0, 1, 2, 3


def _encode_atom(s: str) -> bytes:
    # Up to 19 digits fit in 64 bits, within the reader's 10-byte varint limit; longer digit
    # runs (no id we know is that long) fall through to hex/text.
    if _DIGITS.match(s) and len(s) <= 19:
        return _varint(len(s) << 2 | _CS_DIGITS) + _varint(int(s))
    if _HEX.match(s):
        return _varint(len(s) << 2 | _CS_HEX) + bytes.fromhex(s if len(s) % 2 == 0 else "0" + s)
    raw = s.encode("utf-8")
    return _varint(len(raw) << 2 | _CS_TEXT) + raw


def _encode_str(s: str) -> bytes:
    """The shortest of the plain and the dash-split encodings (deterministic, so a decoded
    body can be re-encoded and compared byte for byte)."""
    plain = _encode_atom(s)
    if "-" in s:
        parts = s.split("-")
        dashed = _varint(len(parts) << 2 | _CS_DASHED) + b"".join(_encode_atom(p) for p in parts)
        if len(dashed) < len(plain):
            return dashed
    return plain


def _decode_str(r: _Reader, *, nested: bool = False) -> str:
    header = r.varint()
    kind, n = header & 3, header >> 2
    if n > 4 * MAX_FIELD_CHARS:
        raise InvalidReceipt("format", "string too long")
    if kind == _CS_TEXT:
        try:
            return r.take(n).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidReceipt("format", "string is not UTF-8") from exc
    if kind == _CS_DIGITS:
        return str(r.varint()).zfill(n)
    if kind == _CS_HEX:
        return r.take((n + 1) // 2).hex()[n % 2:]
    if nested or n < 2:
        raise InvalidReceipt("format", "bad dashed string")
    return "-".join(_decode_str(r, nested=True) for _ in range(n))


def _encode_head(data: ReceiptData, low_nibble: int) -> bytearray:
    """flags · time · amount · kiosk · tx: the start both versions share."""
    kind_code = _KIND_CODES.get(data.kind, _KIND_OTHER)
    out = bytearray([kind_code << 4 | low_nibble])
    if kind_code == _KIND_OTHER:
        out += _encode_str(data.kind)
    out += struct.pack(">I", int(data.at.timestamp()))
    out += _varint(data.amount_rials)
    out += _encode_str(data.kiosk_id)
    # Journal ids are "<kiosk_id>-<date>-<hex>": the prefix is already in the body.
    prefix = data.kiosk_id + "-"
    if data.tx_id.startswith(prefix) and len(data.tx_id) > len(prefix):
        out += b"\x01" + _encode_str(data.tx_id[len(prefix):])
    else:
        out += b"\x00" + _encode_str(data.tx_id)
    return out


def encode_body(data: ReceiptData) -> bytes:
    """The body of a version 2 payload: only what is fixed once the payment was approved."""
    out = _encode_head(data, 0)
    for value in (data.bill_id, data.payment_id, data.rrn):
        out += _encode_str(value)
    out += _varint(data.journal_seq)
    out += bytes.fromhex(data.journal_hash_prefix)
    return bytes(out)


def encode_body_v1(data: ReceiptData) -> bytes:
    """The body of a version 1 payload (status and tracking code signed too). Kept so tests
    can show that receipts printed before version 2 still verify; the kiosk signs v2."""
    out = _encode_head(data, _STATUS_CODES[ReceiptStatus(data.status)])
    for value in (data.bill_id, data.payment_id, data.tracking_code, data.rrn):
        out += _encode_str(value)
    return bytes(out)


def _decode_body(body: bytes, version: int) -> VerifiedReceipt:
    r = _Reader(body)
    flags = r.take(1)[0]
    kind_code, low = flags >> 4, flags & 0x0F
    if version == 1 and low not in _STATUS_BY_CODE:
        raise InvalidReceipt("format", "unknown status code")
    if version == 2 and low:
        raise InvalidReceipt("format", "reserved flag bits set")
    if kind_code == _KIND_OTHER:
        kind = _decode_str(r)
    elif kind_code in _KIND_BY_CODE:
        kind = _KIND_BY_CODE[kind_code]
    else:
        raise InvalidReceipt("format", "unknown kind code")
    (unix,) = struct.unpack(">I", r.take(4))
    amount = r.varint()
    kiosk_id = _decode_str(r)
    tx_form = r.take(1)[0]
    if tx_form not in (0, 1):
        raise InvalidReceipt("format", "bad tx id form")
    tx_id = _decode_str(r)
    if tx_form == 1:
        tx_id = f"{kiosk_id}-{tx_id}"
    status, seq, journal_hash = ReceiptStatus.PAID.value, 0, ""
    if version == 1:
        bill_id, payment_id, tracking_code, rrn = (_decode_str(r) for _ in range(4))
        status = _STATUS_BY_CODE[low].value
    else:
        bill_id, payment_id, rrn = (_decode_str(r) for _ in range(3))
        tracking_code = ""
        seq = r.varint()
        if seq < 1:
            raise InvalidReceipt("format", "journal seq must be >= 1")
        journal_hash = r.take(JOURNAL_HASH_BYTES).hex()
    if r.pos != len(body):
        raise InvalidReceipt("format", "trailing bytes after the body")
    return VerifiedReceipt(version=version, kind=kind, status=status, kiosk_id=kiosk_id, tx_id=tx_id,
                           amount_rials=amount, at=dt.datetime.fromtimestamp(unix, dt.UTC), bill_id=bill_id,
                           payment_id=payment_id, tracking_code=tracking_code, rrn=rrn, journal_seq=seq,
                           journal_hash=journal_hash)


def _b64e(raw: bytes) -> str:
    return b64url.encode(raw)


def _b64d(text: str) -> bytes:
    try:
        return b64url.decode(text)
    except b64url.NotBase64Url as exc:
        raise InvalidReceipt("format", exc.reason) from None


# --- key forms, signing, verifying ---------------------------------------------------------


def public_key_b64(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def load_public_key(value: str | bytes | Ed25519PublicKey) -> Ed25519PublicKey:
    """A public key from the key object, 32 raw bytes, or their base64 (standard or url-safe).
    ValueError when it is none of these."""
    if isinstance(value, Ed25519PublicKey):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            value = base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4),
                                     validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("public key is not base64") from exc
    if not isinstance(value, bytes) or len(value) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(value)


class ReceiptSigner:
    """Signs receipts with the kiosk's Ed25519 key. Ed25519 is deterministic and the body
    holds only what is fixed at payment time: every print and reprint of a transaction
    carries the same payload."""

    def __init__(self, private_key: Ed25519PrivateKey, key_path: Any = None) -> None:
        self._private_key = private_key
        self.public_key: Ed25519PublicKey = private_key.public_key()
        self.key_path = key_path

    @property
    def public_key_b64(self) -> str:
        """The raw 32-byte public key, base64 — what the .pub file and `kiosk receipt pubkey` hold."""
        return public_key_b64(self.public_key)

    def sign(self, data: ReceiptData) -> str:
        body = encode_body(data)
        # the version prefix is signed too: a CK2 body can never be read as another version
        signature = self._private_key.sign(PREFIX.encode("ascii") + body)
        return f"{PREFIX}{_b64e(body)}.{_b64e(signature)}"

    def sign_v1(self, data: ReceiptData) -> str:
        """A version 1 payload, as kiosks signed before version 2 (tests and migration only)."""
        body = encode_body_v1(data)
        return f"{PREFIX_V1}{_b64e(body)}.{_b64e(self._private_key.sign(body))}"


def verify_payload(payload: str, public_key: str | bytes | Ed25519PublicKey) -> VerifiedReceipt:
    """Check a receipt payload (CK2, or CK1 printed before) against a kiosk's public key; the
    signed fields, or InvalidReceipt with reason "format", "signature" or "unknown_version"."""
    key = load_public_key(public_key)
    if not isinstance(payload, str) or len(payload) > MAX_PAYLOAD_CHARS:
        raise InvalidReceipt("format", "not a receipt payload (type or length)")
    payload = payload.strip()
    if payload.startswith(PREFIX):
        version, prefix = 2, PREFIX
    elif payload.startswith(PREFIX_V1):
        version, prefix = 1, PREFIX_V1
    else:
        match = _VERSION_PREFIX.match(payload)
        if match:
            raise InvalidReceipt("unknown_version", f"payload version CK{match.group(1)} is not known")
        raise InvalidReceipt("format", "payload does not start with CK2: or CK1:")
    body_b64, dot, sig_b64 = payload[len(prefix):].partition(".")
    if not dot or not body_b64:
        raise InvalidReceipt("format", "payload has no body.signature")
    body = _b64d(body_b64)
    signature = _b64d(sig_b64)
    if len(signature) != SIGNATURE_BYTES:
        raise InvalidReceipt("format", "signature is not 64 bytes")
    signed = body if version == 1 else prefix.encode("ascii") + body
    try:
        key.verify(signature, signed)
    except InvalidSignature as exc:
        raise InvalidReceipt("signature", "signature does not match this kiosk's key") from exc
    return _decode_body(body, version)


__all__ = [
    "JOURNAL_HASH_HEX", "MAX_PAYLOAD_CHARS", "PREFIX", "PREFIX_V1", "InvalidReceipt", "ReceiptData",
    "ReceiptSigner", "ReceiptStatus", "VerifiedReceipt", "check_masked_pan", "encode_body", "encode_body_v1",
    "load_public_key", "public_key_b64", "verify_payload",
]
