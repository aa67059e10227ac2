"""Settlement certificates (گواهی مفاصاحساب): the back-office says a property or a business
owes nothing as of now; the kiosk prints that as a certificate signed with its receipt key, so
anyone holding the kiosks' public keys checks it offline from its QR
(`kiosk receipt verify CKC1:…`). Sibling of receipts (CK2:) and tickets (CKT1:): the same key,
its own prefix, so no one of them can pass for another.

    "CKC1:" + base64url(body) + "." + base64url(Ed25519 signature over b"CKC1:" + body)

body: compact JSON, keys sorted — c certificate id, k kiosk id, t fee type, i identifier
(masked: a certificate names no full national code), n owner (masked), a as of (unix
seconds), u valid until (ISO date, Tehran), s how many slips the back-office checked.
A certificate with a valid signature is still refused after its valid-until date."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kiosk import b64url
from kiosk.errors import KioskError
from kiosk.fee_types import FEE_TYPES
from kiosk.fmt import TEHRAN, format_datetime, format_jalali_date
from kiosk.receipts import load_public_key
from kiosk.receipts.layout import QR, Document, Heading, Row, Separator, Text
from kiosk.sensitive import to_persian_digits

PREFIX = "CKC1:"
MAX_PAYLOAD_CHARS = 768
_FULL_CODE = re.compile(r"\d{10}")


class InvalidCertificate(KioskError):
    """A certificate payload that must be refused; `reason`: format, unknown_kiosk, signature,
    expired."""

    key: ClassVar[str] = "cert.invalid"
    fa: ClassVar[str] = "این گواهی معتبر نیست ({reason_fa})."
    en: ClassVar[str] = "This certificate is not valid ({reason_en})."
    REASONS: ClassVar[dict[str, tuple[str, str]]] = {
        "format": ("کد خوانده‌شده گواهی نیست یا آسیب دیده است", "the code is not a certificate or is damaged"),
        "unknown_kiosk": ("صادرکننده گواهی شناخته نیست", "the issuing kiosk is not known"),
        "signature": ("امضای گواهی معتبر نیست", "the certificate's signature does not match"),
        "expired": ("مهلت اعتبار گواهی گذشته است", "the certificate has expired"),
    }

    def __init__(self, reason: str, detail: str = "") -> None:
        fa, en = self.REASONS[reason]
        super().__init__(detail or f"invalid certificate: {reason}", reason=reason, reason_fa=fa, reason_en=en)
        self.reason = reason


@dataclass(frozen=True)
class CertificateData:
    certificate_id: str
    kiosk_id: str
    fee_type: str
    identifier_masked: str
    owner_masked: str
    as_of: dt.datetime  # aware, whole seconds
    valid_until: dt.date
    slips_checked: int

    def __post_init__(self) -> None:
        if self.fee_type not in FEE_TYPES:
            raise ValueError(f"unknown fee type {self.fee_type!r}")
        if self.as_of.utcoffset() is None:
            raise ValueError("as_of must be an aware datetime")
        if _FULL_CODE.search(self.identifier_masked.replace(" ", "")):
            raise ValueError("a certificate carries a masked identifier, never a full one")

    def body(self) -> bytes:
        doc = {"c": self.certificate_id, "k": self.kiosk_id, "t": self.fee_type, "i": self.identifier_masked,
               "n": self.owner_masked, "a": int(self.as_of.timestamp()), "u": self.valid_until.isoformat(),
               "s": self.slips_checked}
        return json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_body(cls, body: bytes) -> CertificateData:
        try:
            doc = json.loads(body.decode("utf-8"))
            data = cls(str(doc["c"]), str(doc["k"]), str(doc["t"]), str(doc["i"]), str(doc["n"]),
                       dt.datetime.fromtimestamp(int(doc["a"]), dt.UTC), dt.date.fromisoformat(doc["u"]),
                       int(doc["s"]))
        except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise InvalidCertificate("format", f"body does not read: {exc}") from None
        if data.body() != body:  # one certificate, one spelling
            raise InvalidCertificate("format", "body is not in canonical form")
        return data

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["as_of"], out["valid_until"] = self.as_of.isoformat(), self.valid_until.isoformat()
        return out


def _b64e(raw: bytes) -> str:
    return b64url.encode(raw)


def _b64d(text: str) -> bytes:
    if not text:
        raise InvalidCertificate("format", "not base64url")
    try:
        return b64url.decode(text)
    except b64url.NotBase64Url as exc:
        raise InvalidCertificate("format", exc.reason) from None


def sign_certificate(data: CertificateData, signer: Any) -> str:
    """`signer`: the kiosk's ticket signer (kiosk.tickets.load_ticket_signer): its receipt key."""
    body = data.body()
    signature = signer.sign_message(PREFIX.encode("ascii") + body)
    return f"{PREFIX}{_b64e(body)}.{_b64e(signature)}"


def peek_kiosk_id(payload: str) -> str:
    """The kiosk a certificate says issued it (unverified: to pick the key to check it with);
    "" when the payload does not read."""
    try:
        body_b64 = payload.strip()[len(PREFIX):].partition(".")[0]
        return CertificateData.from_body(_b64d(body_b64)).kiosk_id
    except InvalidCertificate:
        return ""


def verify_certificate(payload: str, public_keys: Mapping[str, str | bytes | Ed25519PublicKey], *,
                       now: dt.datetime | float | None = None) -> CertificateData:
    if not isinstance(payload, str) or len(payload) > MAX_PAYLOAD_CHARS or not payload.strip().startswith(PREFIX):
        raise InvalidCertificate("format", "not a CKC1 payload")
    body_b64, dot, sig_b64 = payload.strip()[len(PREFIX):].partition(".")
    if not dot:
        raise InvalidCertificate("format", "payload has no body.signature")
    body, signature = _b64d(body_b64), _b64d(sig_b64)
    data = CertificateData.from_body(body)
    if data.kiosk_id not in public_keys:
        raise InvalidCertificate("unknown_kiosk", f"no public key for kiosk {data.kiosk_id!r}")
    try:
        load_public_key(public_keys[data.kiosk_id]).verify(signature, PREFIX.encode("ascii") + body)
    except InvalidSignature:
        raise InvalidCertificate("signature", "signature does not match the kiosk's key") from None
    at = now if isinstance(now, dt.datetime) else dt.datetime.fromtimestamp(time.time() if now is None else now, dt.UTC)
    if at.astimezone(TEHRAN).date() > data.valid_until:
        raise InvalidCertificate("expired", f"valid until {data.valid_until.isoformat()}")
    return data


def describe(data: CertificateData) -> list[str]:
    """The lines `kiosk receipt verify` prints for a valid certificate, in both languages."""
    fee = FEE_TYPES[data.fee_type]
    return ["گواهی مفاصاحساب معتبر است / The settlement certificate is valid",
            f"شماره گواهی / Certificate: {data.certificate_id}",
            f"عوارض / Fees: {fee.label_fa} / {fee.label_en}",
            f"شناسه / Identifier: {data.identifier_masked}",
            f"تاریخ / As of: {format_datetime(data.as_of, 'fa')} / {format_datetime(data.as_of, 'en')} Tehran",
            f"اعتبار تا / Valid until: {format_jalali_date(data.valid_until, 'fa')} / {data.valid_until.isoformat()}",
            f"کیوسک / Kiosk: {data.kiosk_id}"]


def build_certificate_document(data: CertificateData, payload: str, lang: str = "fa") -> Document:
    fa = lang == "fa"
    fee = FEE_TYPES[data.fee_type]

    def pick(pair: tuple[str, str]) -> str:
        return pair[0] if fa else pair[1]

    rows = [
        Row(pick(("نوع عوارض", "Fees")), fee.label(lang)),
        Row(pick(("شناسه", "Identifier")), data.identifier_masked),
        Row(pick(("مالک", "Owner")), data.owner_masked),
        Row(pick(("تعداد فیش‌های بررسی‌شده", "Slips checked")),
            to_persian_digits(data.slips_checked) if fa else str(data.slips_checked)),
        Row(pick(("تاریخ", "As of")), format_datetime(data.as_of, lang)),
        Row(pick(("اعتبار تا", "Valid until")), format_jalali_date(data.valid_until, lang)),
        Row(pick(("شماره گواهی", "Certificate")), data.certificate_id, size=20),
        Row(pick(("کیوسک", "Kiosk")), data.kiosk_id, size=20),
    ]
    return Document((
        Heading(pick(("کیوسک شهر", "City Kiosk"))),
        Text(pick(("شهرداری تهران", "Tehran Municipality")), align="center"),
        Separator(),
        Heading(pick(("گواهی مفاصاحساب", "Settlement certificate")), size=30),
        Text(pick(("تا تاریخ زیر هیچ بدهی از این عوارض ثبت نشده است.",
                   "As of the date below, nothing is owed for these fees.")), align="center"),
        *rows,
        Separator(),
        QR(payload, caption=pick(("برای بررسی اصالت گواهی، کد را اسکن کنید", "Scan to verify this certificate"))),
    ), direction="rtl" if fa else "ltr")
