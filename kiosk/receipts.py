"""Signed receipts: the kiosk's Ed25519 key, the compact "CK1:" payload carried in the receipt's
QR (anyone with the public key can verify it), and the printed receipt's layout.

Payload, version 1 (docs/receipts.md has the full description):

    "CK1:" + base64url(body) + "." + base64url(Ed25519 signature over the body bytes)

body = flags(1: kind << 4 | status) · unix time (uint32 BE) · amount (varint) · kiosk_id ·
tx_id (1 byte: 1 if it starts with "<kiosk_id>-", which is then left out) · bill_id ·
payment_id · tracking_code · rrn — each string as a "compact string" (digits as a number,
lowercase hex as bytes, dash-joined parts each compact, else UTF-8). base64url has no padding.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import logging
import os
import re
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from devices.printer.escpos_driver import job_to_escpos_bytes
from devices.printer.layout import (
    QR,
    Document,
    Heading,
    Row,
    Separator,
    Text,
    ltr,
    render,
)
from devices.printer.profile import DEFAULT_PROFILE
from kiosk.errors import KioskError
from kiosk.fmt import (
    format_datetime,
    format_number,
    format_rials,
    format_toman,
    to_persian_digits,
)

log = logging.getLogger("kiosk.receipts")

PREFIX = "CK1:"
KEY_FILE = "receipt-ed25519.pem"
PUB_FILE = "receipt-ed25519.pub"
#: A typical receipt's payload is ~170 characters; anything far longer is not ours and is
#: refused before any decoding work (the verifier reads untrusted QR text).
MAX_PAYLOAD_CHARS = 1024
#: Longest string field a receipt carries (ids, codes); keeps the QR small and scannable.
MAX_FIELD_CHARS = 64
SIGNATURE_BYTES = 64

_VERSION_PREFIX = re.compile(r"^CK(\d{1,4}):")
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
_DIGITS = re.compile(r"^[0-9]+$")
_HEX = re.compile(r"^[0-9a-f]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Mask characters a masked PAN may use between its visible digits.
_MASK_CHARS = frozenset("*Xx•")


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


class ReceiptKeyError(KioskError):
    """The kiosk's receipt key exists but cannot be read; receipts cannot be signed."""

    key: ClassVar[str] = "receipt.key_unreadable"
    fa: ClassVar[str] = ("کلید امضای رسید این کیوسک خوانا نیست. رسید صادر نمی‌شود؛ "
                         "تکنسین باید کلید را بازیابی یا کیوسک را دوباره ثبت کند.")
    en: ClassVar[str] = ("This kiosk's receipt signing key cannot be read, so receipts cannot be issued. "
                         "A technician must restore the key or re-enroll the kiosk.")
    money: ClassVar[str] = "none"


# --- values ---------------------------------------------------------------------------------


def _check_text_field(name: str, value: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if len(value) > MAX_FIELD_CHARS:
        raise ValueError(f"{name} is {len(value)} characters; a receipt field holds at most {MAX_FIELD_CHARS}")
    if _CONTROL.search(value):
        raise ValueError(f"{name} must not hold control characters")


def check_masked_pan(masked_pan: str) -> None:
    """Refuse a card number that is not masked. PCI DSS lets a receipt show at most the first
    six and last four digits, so a masked PAN has a mask character and at most 10 digits.
    The message never repeats the value: it may be a full card number."""
    if not isinstance(masked_pan, str):
        raise TypeError("masked_pan must be a str")
    if not masked_pan:
        return
    digits = sum(ch.isdigit() for ch in masked_pan)
    if digits > 10 or not any(ch in _MASK_CHARS for ch in masked_pan):
        raise ValueError(f"masked_pan is not masked ({digits} digits visible); pass first6******last4")


@dataclass(frozen=True)
class ReceiptData:
    """What one receipt says. `masked_pan` must already be masked (ValueError otherwise);
    `at` must be an aware datetime; `tracking_code` is "" while settlement is pending."""

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

    def __post_init__(self) -> None:
        check_masked_pan(self.masked_pan)
        for name in ("tx_id", "kiosk_id", "kind", "bill_id", "payment_id", "tracking_code", "rrn", "stan",
                     "masked_pan"):
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


@dataclass(frozen=True)
class VerifiedReceipt:
    """The signed fields of a receipt that verified. `at` is UTC, whole seconds."""

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


def encode_body(data: ReceiptData) -> bytes:
    """The exact bytes that are signed (version 1)."""
    kind_code = _KIND_CODES.get(data.kind, _KIND_OTHER)
    out = bytearray([kind_code << 4 | _STATUS_CODES[ReceiptStatus(data.status)]])
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
    for value in (data.bill_id, data.payment_id, data.tracking_code, data.rrn):
        out += _encode_str(value)
    return bytes(out)


def _decode_body(body: bytes) -> VerifiedReceipt:
    r = _Reader(body)
    flags = r.take(1)[0]
    kind_code, status_code = flags >> 4, flags & 0x0F
    if status_code not in _STATUS_BY_CODE:
        raise InvalidReceipt("format", "unknown status code")
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
    bill_id, payment_id, tracking_code, rrn = (_decode_str(r) for _ in range(4))
    if r.pos != len(body):
        raise InvalidReceipt("format", "trailing bytes after the body")
    return VerifiedReceipt(version=1, kind=kind, status=_STATUS_BY_CODE[status_code].value, kiosk_id=kiosk_id,
                           tx_id=tx_id, amount_rials=amount,
                           at=dt.datetime.fromtimestamp(unix, dt.UTC), bill_id=bill_id,
                           payment_id=payment_id, tracking_code=tracking_code, rrn=rrn)


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    """Strict base64url without padding: the alphabet only, and canonical (no stray bits),
    so one payload has exactly one spelling."""
    if not _B64URL.match(text) or len(text) % 4 == 1:
        raise InvalidReceipt("format", "not base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidReceipt("format", "not base64url") from exc
    if _b64e(raw) != text:
        raise InvalidReceipt("format", "non-canonical base64url")
    return raw


# --- keys, signing, verifying ---------------------------------------------------------------


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
    """Signs receipts with the kiosk's Ed25519 key. Ed25519 is deterministic: the same
    ReceiptData always gives the same payload, so a reprint matches the original."""

    def __init__(self, private_key: Ed25519PrivateKey, key_path: Path | None = None) -> None:
        self._private_key = private_key
        self.public_key: Ed25519PublicKey = private_key.public_key()
        self.key_path = key_path

    @property
    def public_key_b64(self) -> str:
        """The raw 32-byte public key, base64 — what the .pub file and `kiosk receipt pubkey` hold."""
        return public_key_b64(self.public_key)

    def sign(self, data: ReceiptData) -> str:
        body = encode_body(data)
        signature = self._private_key.sign(body)
        return f"{PREFIX}{_b64e(body)}.{_b64e(signature)}"


def verify_payload(payload: str, public_key: str | bytes | Ed25519PublicKey) -> VerifiedReceipt:
    """Check a receipt payload against a kiosk's public key; the signed fields, or
    InvalidReceipt with reason "format", "signature" or "unknown_version"."""
    key = load_public_key(public_key)
    if not isinstance(payload, str) or len(payload) > MAX_PAYLOAD_CHARS:
        raise InvalidReceipt("format", "not a receipt payload (type or length)")
    payload = payload.strip()
    if not payload.startswith(PREFIX):
        match = _VERSION_PREFIX.match(payload)
        if match:
            raise InvalidReceipt("unknown_version", f"payload version CK{match.group(1)} is not known")
        raise InvalidReceipt("format", "payload does not start with CK1:")
    body_b64, dot, sig_b64 = payload[len(PREFIX):].partition(".")
    if not dot or not body_b64:
        raise InvalidReceipt("format", "payload has no body.signature")
    body = _b64d(body_b64)
    signature = _b64d(sig_b64)
    if len(signature) != SIGNATURE_BYTES:
        raise InvalidReceipt("format", "signature is not 64 bytes")
    try:
        key.verify(signature, body)
    except InvalidSignature as exc:
        raise InvalidReceipt("signature", "signature does not match this kiosk's key") from exc
    receipt = _decode_body(body)
    return receipt


def _write_private(path: Path, data: bytes) -> bool:
    """Create `path` with mode 0600 holding data, atomically and only if it does not exist
    (two processes starting at once must not end up with two keys). True if we created it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another process won the race: then its key is the key
        created = True
    except FileExistsError:
        created = False
    finally:
        tmp.unlink()
    _fsync_dir(path.parent)
    return created


def _write_replace(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_or_create_key(data_dir: str | os.PathLike[str]) -> ReceiptSigner:
    """The kiosk's receipt signer from <data_dir>/keys/receipt-ed25519.pem, creating the key
    (mode 0600) and its public half (receipt-ed25519.pub: raw 32 bytes, base64) on first use."""
    keys = Path(data_dir) / "keys"
    keys.mkdir(mode=0o700, parents=True, exist_ok=True)
    pem_path = keys / KEY_FILE
    if not pem_path.exists():
        new_key = Ed25519PrivateKey.generate()
        pem = new_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        if _write_private(pem_path, pem):
            log.info("created receipt signing key", extra={"event": "receipt_key_created"})
    mode = pem_path.stat().st_mode & 0o777
    if mode & 0o077:
        # Someone copied it in with a loose umask; a key others can read signs forged receipts.
        log.warning("receipt key was readable by others (mode %o); set to 0600", mode,
                    extra={"event": "receipt_key_mode_fixed"})
        os.chmod(pem_path, 0o600)
    try:
        key = serialization.load_pem_private_key(pem_path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as exc:
        raise ReceiptKeyError(f"cannot read {pem_path}: {type(exc).__name__}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ReceiptKeyError(f"{pem_path} is not an Ed25519 key")
    signer = ReceiptSigner(key, pem_path)
    pub_path = keys / PUB_FILE
    pub_text = signer.public_key_b64 + "\n"
    if not pub_path.exists() or pub_path.read_text(encoding="ascii", errors="replace") != pub_text:
        _write_replace(pub_path, pub_text.encode("ascii"), 0o644)
    return signer


def read_public_key_file(data_dir: str | os.PathLike[str]) -> Ed25519PublicKey:
    """The public key beside the kiosk's signing key (FileNotFoundError if there is none yet)."""
    return load_public_key((Path(data_dir) / "keys" / PUB_FILE).read_text(encoding="ascii"))


# --- the printed receipt --------------------------------------------------------------------

_TITLES = {
    "fee_payment": ("رسید پرداخت عوارض", "Municipal fee payment receipt"),
}
_STATUS_TEXT = {
    ReceiptStatus.PAID: ("پرداخت با موفقیت انجام شد", "Payment successful"),
    ReceiptStatus.PENDING_SETTLEMENT: (
        ("پرداخت شما ثبت شد. تسویه آن با شهرداری به‌طور خودکار انجام می‌شود و نیازی به پرداخت دوباره نیست. "
         "این رسید و شماره تراکنش آن را نگه دارید."),
        ("Your payment is recorded. It will be settled with the municipality automatically; do not pay "
         "again. Keep this receipt and its transaction number.")),
    ReceiptStatus.REVERSED: ("پرداخت ناموفق بود. مبلغ به حساب شما بازگشت داده شد",
                             "Payment failed. Your money has been returned to your card"),
}
_PENDING_TRACKING = ("پس از تسویه صادر می‌شود", "issued after settlement")
_VERIFY_CAPTION = ("برای بررسی اصالت رسید، کد را اسکن کنید", "Scan to verify this receipt")


def build_document(data: ReceiptData, payload: str, lang: str = "fa") -> Document:
    """The printed receipt, Persian (right to left) or English, ending in the signed QR."""
    if lang not in ("fa", "en"):
        raise ValueError(f"lang must be 'fa' or 'en', not {lang!r}")
    fa = lang == "fa"
    status = ReceiptStatus(data.status)

    def pick(pair: tuple[str, str]) -> str:
        return pair[0] if fa else pair[1]

    def digits(s: str) -> str:
        return to_persian_digits(s) if fa else s

    if fa:
        # the numbers as LTR isolates inside the Persian sentence, the unit words stay RTL
        amount = (f"{ltr(format_number(data.amount_rials, 'fa'))} ریال "
                  f"({ltr(format_toman(data.amount_rials, 'fa').rsplit(' ', 1)[0])} تومان)")
    else:
        amount = f"{format_rials(data.amount_rials, 'en')} ({format_toman(data.amount_rials, 'en')})"
    tracking = digits(data.tracking_code) if data.tracking_code else pick(_PENDING_TRACKING)
    title = pick(_TITLES.get(data.kind, ("رسید", "Receipt")))
    rows: list[Any] = [
        Row(pick(("مبلغ", "Amount")), amount, bold=True),
        Row(pick(("شناسه قبض", "Bill ID")), digits(data.bill_id)),
        Row(pick(("شناسه پرداخت", "Payment ID")), digits(data.payment_id)),
        Row(pick(("نوع خدمت", "Service")), data.service_label_fa if fa else data.service_label_en),
        Row(pick(("کد رهگیری", "Tracking code")), tracking),
        Row(pick(("شماره مرجع", "Reference number")), digits(data.rrn) if data.rrn else "-"),
    ]
    if data.stan:
        rows.append(Row(pick(("شماره پیگیری", "Trace number")), digits(data.stan)))
    if data.masked_pan:
        # Row keeps a digits/latin value left to right; the masked number must read in card order.
        rows.append(Row(pick(("کارت", "Card")), digits(data.masked_pan)))
    rows += [
        Row(pick(("تاریخ", "Date")), format_datetime(data.at, lang)),
        Row(pick(("شماره تراکنش", "Transaction")), data.tx_id, size=20),
        Row(pick(("کیوسک", "Kiosk")), data.kiosk_id, size=20),
    ]
    blocks: list[Any] = [
        Heading(pick(("کیوسک شهر", "City Kiosk"))),
        Text(pick(("شهرداری تهران", "Tehran Municipality")), align="center"),
        Separator(),
        Heading(title, size=30),
        *rows,
        Separator(),
        Text(pick(_STATUS_TEXT[status]), align="center" if status == ReceiptStatus.PAID else "start",
             bold=True),
    ]
    if status == ReceiptStatus.PENDING_SETTLEMENT:
        blocks.append(Text(pick(("پیگیری با شماره تراکنش: ", "Follow up with transaction number: "))
                           + ltr(data.tx_id), size=20))
    blocks.append(QR(payload, caption=pick(_VERIFY_CAPTION)))
    return Document(tuple(blocks), direction="rtl" if fa else "ltr")


def print_receipt_bytes(document: Document, *, width_dots: int = 576, profile: str = DEFAULT_PROFILE) -> bytes:
    """The ESC/POS bytes of a receipt: raster text (GS v 0), the printer's native QR (GS ( k),
    a cut (GS V). Encoding is the printer driver's own `job_to_escpos_bytes`, so what a test
    sees here is byte for byte what the driver sends."""
    job = render(document, width_dots=width_dots, native_qr=True)
    return job_to_escpos_bytes(job, profile)


__all__ = [
    "MAX_PAYLOAD_CHARS",
    "PREFIX",
    "InvalidReceipt",
    "ReceiptData",
    "ReceiptKeyError",
    "ReceiptSigner",
    "ReceiptStatus",
    "VerifiedReceipt",
    "build_document",
    "check_masked_pan",
    "encode_body",
    "load_or_create_key",
    "load_public_key",
    "print_receipt_bytes",
    "public_key_b64",
    "read_public_key_file",
    "verify_payload",
]
