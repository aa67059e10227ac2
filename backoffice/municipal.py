"""Municipal services (issue 9): look-ups of an owner's slips by fee type and identifier, the
look-up limits that make enumerating citizens expensive, their audit, and settlement
certificates (مفاصاحساب).

Privacy. A look-up answers what a person holding the slip sees: the slips, and the payer's
name masked (identity.mask_name) — never an address or the full name. Identifiers are never
logged in full (identity.mask_*); the audit keeps HMAC-SHA256(server secret, kind:value) of
the normalised identifier, so it can count and link look-ups of one identifier but not say
whose it was. The secret lives in the database (migration 0005) so every replica agrees.

Limits. Every look-up counts against two sliding windows: the calling kiosk's (default 20 a
minute) and the identifier's across all kiosks (default 5 in 10 minutes). The counts are the
allowed rows of `lookup_audit` in the window, read and written in one transaction that first
serialises on the kiosk and on the identifier (PostgreSQL: advisory transaction locks, always
kiosk first, so two look-ups cannot wait on each other in a cycle; SQLite: BEGIN IMMEDIATE lets
one writer in). So the limits are exact across any number of stateless replicas on one
database: no more look-ups are allowed than the limit, under any interleaving."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import zoneinfo
from dataclasses import dataclass
from typing import Any, Callable

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from backoffice.errors import ApiError
from backoffice.identity import canonical_plate, mask_code, mask_name, mask_plate, normalize_code
from backoffice.models import Bill, BillStatus, Certificate, LookupAudit, Owner, Setting, SlipKind, utcnow
from backoffice.municipal_schemas import CertificateIn, CertificateOut, LookupIn, LookupOut
from backoffice.schemas import FeeSlipOut
from backoffice.settlement import MAX_KEY_LEN, iso_utc
from kiosk.sensitive import mask_national_code, national_code_ok

log = logging.getLogger("backoffice.municipal")

TEHRAN = zoneinfo.ZoneInfo("Asia/Tehran")
CERTIFICATE_VALID_DAYS = 30
SECRET_KEY = "audit.hmac_secret"
_ATTEMPTS = 3

# fee type -> (identifier kind, owner column, slip kinds it lists)
FEE_TYPES: dict[str, tuple[str, Any, tuple[SlipKind, ...]]] = {
    "renovation_tax": ("renovation", Owner.renovation_code, (SlipKind.RENOVATION_TAX,)),
    "business_tax": ("business", Owner.business_license, (SlipKind.BUSINESS_TAX,)),
    "waste_charge": ("national", Owner.national_code, (SlipKind.WASTE_CHARGE,)),
    "vehicle_tax": ("plate", Owner.plate, (SlipKind.VEHICLE_TAX,)),
}


# --- configuration ------------------------------------------------------------------------------
@dataclass(frozen=True)
class LookupLimits:
    """How many look-ups are allowed: `per_kiosk` in `kiosk_window_s`, `per_identifier` in
    `identifier_window_s` (across all kiosks). `legacy` also counts the older
    GET /api/v1/fee-slips against them (it is audited either way). Every replica on one
    database must be given the same limits."""

    per_kiosk: int = 20
    kiosk_window_s: int = 60
    per_identifier: int = 5
    identifier_window_s: int = 600
    legacy: bool = True

    ENV_KIOSK = "BACKOFFICE_LOOKUP_LIMIT_KIOSK"  # "20/60": 20 look-ups per 60 s
    ENV_IDENTIFIER = "BACKOFFICE_LOOKUP_LIMIT_IDENTIFIER"  # "5/600"
    ENV_LEGACY = "BACKOFFICE_LOOKUP_LIMIT_LEGACY"  # "0": do not limit GET /fee-slips (default: limited)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> LookupLimits:
        env = os.environ if environ is None else environ
        limits = cls()
        kiosk = env.get(cls.ENV_KIOSK)
        ident = env.get(cls.ENV_IDENTIFIER)
        if kiosk:
            n, window = parse_limit(kiosk)
            limits = cls(n, window, limits.per_identifier, limits.identifier_window_s, limits.legacy)
        if ident:
            n, window = parse_limit(ident)
            limits = cls(limits.per_kiosk, limits.kiosk_window_s, n, window, limits.legacy)
        # the older GET /fee-slips counts too unless turned off explicitly: otherwise it would
        # be a way around the limits
        legacy = env.get(cls.ENV_LEGACY, "1").strip().lower() not in ("0", "false", "no", "off")
        return cls(limits.per_kiosk, limits.kiosk_window_s, limits.per_identifier, limits.identifier_window_s,
                   legacy)


def parse_limit(text_: str) -> tuple[int, int]:
    """"20/60" -> (20, 60): COUNT look-ups per SECONDS; ValueError otherwise."""
    count, sep, window = text_.strip().partition("/")
    try:
        n, s = int(count), int(window)
    except ValueError:
        raise ValueError(f"a look-up limit is COUNT/SECONDS, e.g. 20/60 (got {text_!r})") from None
    if not sep or n < 1 or s < 1:
        raise ValueError(f"a look-up limit is COUNT/SECONDS with both at least 1 (got {text_!r})")
    return n, s


# --- identifiers --------------------------------------------------------------------------------
def normalise_identifier(fee_type: str, identifier: str) -> tuple[str, str]:
    """(identifier kind, normalised value) for a look-up, or 422 lookup.identifier_invalid."""
    kind = FEE_TYPES[fee_type][0]
    if kind == "plate":
        plate = canonical_plate(identifier)
        if plate is None:
            raise ApiError(422, "lookup.identifier_invalid", fee_type=fee_type,
                           detail="a plate is two digits, a Persian letter, three digits and the region")
        return kind, plate
    value = normalize_code(identifier)
    if kind == "national":
        if not national_code_ok(value):
            raise ApiError(422, "lookup.identifier_invalid", fee_type=fee_type,
                           detail="the national code fails its check digit")
    elif not (value.isascii() and value.isdigit() and 4 <= len(value) <= 32):
        raise ApiError(422, "lookup.identifier_invalid", fee_type=fee_type,
                       detail="a renovation code or business licence is 4-32 digits")
    return kind, value


def mask_identifier(kind: str, value: str) -> str:
    if kind == "national":
        return mask_national_code(value)
    if kind == "plate":
        return mask_plate(value)
    return mask_code(value)


def audit_secret(sessions: sessionmaker[Session], cache: dict[str, bytes]) -> bytes:
    """The server's HMAC secret (made by migration 0005; a database without it gets one made
    here, first writer wins)."""
    found = cache.get(SECRET_KEY)
    if found is not None:
        return found
    with sessions() as session, session.begin():
        row = session.get(Setting, SECRET_KEY)
        if row is None:
            row = Setting(key=SECRET_KEY, value=secrets.token_hex(32))
            session.add(row)
        value = row.value
    cache[SECRET_KEY] = bytes.fromhex(value)
    return cache[SECRET_KEY]


def identifier_hmac(secret: bytes, kind: str, value: str) -> str:
    return hmac.new(secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


# --- limits and audit ---------------------------------------------------------------------------
def _lock(session: Session, scope: str, key: str) -> None:
    if session.get_bind().dialect.name == "postgresql":
        digest = hashlib.sha256(f"lookup-limit:{scope}:{key}".encode()).digest()
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                        {"key": int.from_bytes(digest[:8], "big", signed=True)})


def _over(session: Session, column: Any, key: str, limit: int, window_s: int,
          now: dt.datetime) -> float | None:
    """Seconds until one more look-up fits in this window, or None when one fits now."""
    since = now - dt.timedelta(seconds=window_s)
    allowed = (column == key, LookupAudit.refused.is_(False), LookupAudit.created_at > since)
    used = int(session.scalar(select(func.count(LookupAudit.id)).where(*allowed)) or 0)
    if used < limit:
        return None
    # the look-up whose leaving the window brings the count below the limit
    oldest = session.scalar(select(LookupAudit.created_at).where(*allowed)
                            .order_by(LookupAudit.created_at, LookupAudit.id).offset(used - limit).limit(1))
    if oldest is None:  # pragma: no cover - counted above in the same transaction
        return float(window_s)
    return max(0.0, (oldest + dt.timedelta(seconds=window_s) - now).total_seconds())


class _Outcome:
    """What a look-up's work produced: an answer (with how many slips it listed) or a refusal
    to raise once the audit row is committed."""

    def __init__(self, value: Any = None, count: int = 0, error: ApiError | None = None) -> None:
        self.value, self.count, self.error = value, count, error


def limited(sessions: sessionmaker[Session], limits: LookupLimits, secret: bytes, *, kiosk_id: str,
            endpoint: str, fee_type: str, kind: str, value: str, enforce: bool,
            work: Callable[[Session], _Outcome]) -> Any:
    """Run `work` as one look-up of (kind, value) by `kiosk_id`: under the limits when
    `enforce`, recorded in the audit either way, in one transaction. Over a limit: 429
    lookup.rate_limited with retry_after_s (and a Retry-After header), recorded as refused."""
    digest = identifier_hmac(secret, kind, value)
    masked = mask_identifier(kind, value)
    for _attempt in range(_ATTEMPTS):
        try:
            with sessions() as session, session.begin():
                now = utcnow()
                refused_by, wait = None, None
                if enforce:
                    # kiosk first, identifier second, in every transaction: no lock cycle
                    _lock(session, "kiosk", kiosk_id)
                    _lock(session, "identifier", digest)
                    wait = _over(session, LookupAudit.kiosk_id, kiosk_id, limits.per_kiosk, limits.kiosk_window_s, now)
                    refused_by = "kiosk" if wait is not None else None
                    if wait is None:
                        wait = _over(session, LookupAudit.identifier_hmac, digest, limits.per_identifier,
                                     limits.identifier_window_s, now)
                        refused_by = "identifier" if wait is not None else None
                if refused_by is not None:
                    outcome = _Outcome()
                else:
                    outcome = work(session)
                session.add(LookupAudit(kiosk_id=kiosk_id, endpoint=endpoint, fee_type=fee_type,
                                        identifier_hmac=digest, result_count=outcome.count,
                                        refused=refused_by is not None, refused_by=refused_by, created_at=now))
                session.flush()
        except IntegrityError:
            log.info("%s %s: race lost, evaluating again", endpoint, masked)
            continue
        if refused_by is not None:
            retry = max(1, math.ceil(wait or 0))
            log.info("%s refused for kiosk %s (%s limit) on %s %s", endpoint, kiosk_id, refused_by, fee_type, masked,
                     extra={"event": "lookup.rate_limited"})
            err = ApiError(429, "lookup.rate_limited", limit=refused_by, retry_after_s=retry)
            err.headers = {"Retry-After": str(retry)}
            raise err
        log.info("%s by %s of %s %s: %d", endpoint, kiosk_id, fee_type, masked, outcome.count)
        if outcome.error is not None:
            raise outcome.error
        return outcome.value
    raise ApiError(503, "backoffice.busy")


# --- look-ups -----------------------------------------------------------------------------------
def slip_out(bill: Bill) -> FeeSlipOut:
    return FeeSlipOut(slip_id=bill.id, kind=str(bill.slip_kind), bill_id=bill.bill_id, payment_id=bill.payment_id,
                      amount_rials=bill.amount_rials, period=bill.period_label or "", due_date=bill.due_date,
                      description_fa=bill.description_fa, status=str(bill.status))


def _owners_and_slips(session: Session, fee_type: str, value: str) -> tuple[list[Owner], list[Bill]]:
    _kind, column, kinds = FEE_TYPES[fee_type]
    owners = list(session.scalars(select(Owner).where(column == value).order_by(Owner.id)))
    if not owners:
        return [], []
    bills = list(session.scalars(
        select(Bill).where(Bill.owner_id.in_([o.id for o in owners]), Bill.slip_kind.in_(kinds))
        # unpaid first, then oldest due first: what the citizen most likely came to pay
        .order_by(Bill.status.desc(), Bill.due_date, Bill.id)))
    return owners, bills


def lookup(sessions: sessionmaker[Session], limits: LookupLimits, secret: bytes, kiosk_id: str,
           body: LookupIn) -> LookupOut:
    kind, value = normalise_identifier(body.fee_type, body.identifier)

    def work(session: Session) -> _Outcome:
        owners, bills = _owners_and_slips(session, body.fee_type, value)
        if not owners:
            return _Outcome(error=ApiError(404, "owner.not_found"))
        out = LookupOut(fee_type=body.fee_type, identifier_masked=mask_identifier(kind, value),
                        owner_name=mask_name(owners[0].name_fa), slips=[slip_out(b) for b in bills])
        return _Outcome(out, len(bills))

    return limited(sessions, limits, secret, kiosk_id=kiosk_id, endpoint="lookup", fee_type=body.fee_type,
                   kind=kind, value=value, enforce=True, work=work)  # type: ignore[no-any-return]


def legacy_identifier(national_code: str | None, plate: str | None,
                      business_license: str | None) -> tuple[str, str, str] | None:
    """(fee type label, kind, value) of a GET /fee-slips query for its audit row; None when the
    query is malformed (billing.fee_slips answers that 422 itself)."""
    if national_code and national_code.strip():
        return "national", "national", normalize_code(national_code)
    if plate and plate.strip():
        return "vehicle_tax", "plate", canonical_plate(plate) or plate.strip()
    if business_license and business_license.strip():
        return "business_tax", "business", normalize_code(business_license)
    return None


# --- certificates -------------------------------------------------------------------------------
def _certificate_out(row: Certificate, today: dt.date | None = None) -> CertificateOut:
    today = today or dt.datetime.now(TEHRAN).date()
    return CertificateOut(certificate_id=row.certificate_id, fee_type=row.fee_type,
                          identifier_masked=row.identifier_masked, owner_name_masked=row.owner_name_masked,
                          as_of=iso_utc(row.as_of), valid_until=row.valid_until, slips_checked=row.slips_checked,
                          status="valid" if today <= row.valid_until else "expired")


def _request_hash(data: dict[str, Any]) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"certificate\n{canonical}".encode()).hexdigest()


def _replay(session: Session, kiosk_id: str, key: str, req_hash: str) -> str | None:
    row = session.scalars(select(Certificate).where(Certificate.kiosk_id == kiosk_id,
                                                    Certificate.request_key == key)).one_or_none()
    if row is None:
        return None
    if row.request_sha256 != req_hash:
        raise ApiError(409, "idempotency.conflict")
    return row.response_json


def request_certificate(sessions: sessionmaker[Session], limits: LookupLimits, secret: bytes, kiosk_id: str,
                        key: str | None, body: CertificateIn) -> tuple[int, str]:
    """Issue a settlement certificate when every slip of `fee_type` of the property/business is
    paid; 409 certificate.outstanding (+ the outstanding slips) otherwise. The same key and
    body answer the stored certificate byte for byte; another body 409 idempotency.conflict.
    A refusal is not stored: once the slips are paid the same key issues the certificate."""
    if not key or len(key) > MAX_KEY_LEN:
        raise ApiError(400, "idempotency.key_required")
    kind, value = normalise_identifier(body.fee_type, body.identifier)
    req_hash = _request_hash({"fee_type": body.fee_type, "identifier": value})
    with sessions() as session:
        stored = _replay(session, kiosk_id, key, req_hash)
    if stored is not None:
        return 201, stored
    digest = identifier_hmac(secret, kind, value)

    def work(session: Session) -> _Outcome:
        stored = _replay(session, kiosk_id, key, req_hash)  # a concurrent twin committed first
        if stored is not None:
            return _Outcome(stored, 0)
        owners, bills = _owners_and_slips(session, body.fee_type, value)
        if not owners:
            return _Outcome(error=ApiError(404, "owner.not_found"))
        outstanding = [b for b in bills if b.status == BillStatus.UNPAID]
        if outstanding:
            slips = [slip_out(b).model_dump(mode="json") for b in outstanding]
            return _Outcome(count=len(bills), error=ApiError(409, "certificate.outstanding", slips=slips))
        as_of = utcnow()
        row = Certificate(certificate_id=f"MF{secrets.randbelow(10**12):012d}", kiosk_id=kiosk_id, request_key=key,
                          request_sha256=req_hash, fee_type=body.fee_type, identifier_hmac=digest,
                          identifier_masked=mask_identifier(kind, value), owner_name_masked=mask_name(owners[0].name_fa),
                          slips_checked=len(bills), as_of=as_of,
                          valid_until=as_of.astimezone(TEHRAN).date() + dt.timedelta(days=CERTIFICATE_VALID_DAYS),
                          response_json="")
        row.response_json = _certificate_out(row).model_dump_json()
        session.add(row)
        session.flush()
        return _Outcome(row.response_json, len(bills))

    text_ = limited(sessions, limits, secret, kiosk_id=kiosk_id, endpoint="certificate", fee_type=body.fee_type,
                    kind=kind, value=value, enforce=True, work=work)
    return 201, str(text_)


def certificate_status(session: Session, certificate_id: str) -> CertificateOut:
    """Any kiosk may check a certificate by its id (it is shown to whoever asks for it)."""
    row = session.scalars(select(Certificate).where(Certificate.certificate_id == certificate_id)).one_or_none()
    if row is None:
        raise ApiError(404, "certificate.not_found")
    return _certificate_out(row)


def legacy_lookup(sessions: sessionmaker[Session], limits: LookupLimits, secret: bytes, kiosk_id: str,
                  fee_type: str, kind: str, value: str, query: Callable[[Session], Any]) -> Any:
    """GET /api/v1/fee-slips as one audited look-up; limited only when `limits.legacy`."""

    def work(session: Session) -> _Outcome:
        try:
            out = query(session)
        except ApiError as exc:
            return _Outcome(error=exc)
        return _Outcome(out, len(out.slips))

    return limited(sessions, limits, secret, kiosk_id=kiosk_id, endpoint="fee-slips", fee_type=fee_type,
                   kind=kind, value=value, enforce=limits.legacy, work=work)
