"""Credentials: bearer tokens, stored only as their SHA-256, with a minimum strength.

Kiosks hold one each (every kiosk call). Integrations (USSD/app payment systems that create
pending loads) and gates (that redeem QR tickets) hold service tokens of their own role: a
kiosk token cannot mint value on a card account nor use a ticket, and a gate or integration
token cannot post a load. A token belongs to one holder across both kinds."""

from __future__ import annotations

import hashlib
import re
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from backoffice.models import Kiosk, ServiceRole, ServiceToken, utcnow

# A token is a secret of secrets.token_urlsafe's alphabet, at least 24 characters long (144
# bits when random) and not a pattern: at least MIN_TOKEN_DISTINCT different characters.
# new_token() makes 43 characters (256 bits).
MIN_TOKEN_LENGTH = 24
MAX_TOKEN_LENGTH = 256
MIN_TOKEN_DISTINCT = 10
_TOKEN_ALPHABET = re.compile(r"[A-Za-z0-9_-]+")
KIOSK_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class CredentialError(ValueError):
    """A kiosk credential the back-office refuses; str() is one line for a person."""


class WeakToken(CredentialError):
    pass


class TokenInUse(CredentialError):
    pass


class BadKioskId(CredentialError):
    pass


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_problem(token: str) -> str | None:
    """Why `token` is too weak to be a kiosk credential, or None when it will do."""
    if not MIN_TOKEN_LENGTH <= len(token) <= MAX_TOKEN_LENGTH:
        return f"a token needs {MIN_TOKEN_LENGTH} to {MAX_TOKEN_LENGTH} characters (got {len(token)})"
    if not _TOKEN_ALPHABET.fullmatch(token):
        return "a token may hold only letters, digits, '-' and '_'"
    if len(set(token)) < MIN_TOKEN_DISTINCT:
        return f"a token needs at least {MIN_TOKEN_DISTINCT} different characters"
    return None


def kiosk_for_token(session: Session, token: str) -> str | None:
    """The enabled kiosk that holds `token`, or None."""
    if not token:
        return None
    kiosk = session.scalars(select(Kiosk).where(Kiosk.token_sha256 == token_sha256(token))).one_or_none()
    if kiosk is None or not kiosk.enabled:
        return None
    return kiosk.kiosk_id


def put_kiosk(session: Session, kiosk_id: str, token: str) -> bool:
    """Create the kiosk or give it this token (enabled). Returns True when anything changed.

    Raises WeakToken for a token below the minimum strength and TokenInUse when another
    kiosk holds the same token (tokens identify the kiosk, so they must differ)."""
    if not KIOSK_ID_PATTERN.fullmatch(kiosk_id):
        raise BadKioskId(f"a kiosk id is 1-64 letters, digits, '.', '_' or '-' (got {kiosk_id[:70]!r})")
    problem = token_problem(token)
    if problem:
        raise WeakToken(problem)
    digest = token_sha256(token)
    holder = session.scalars(select(Kiosk.kiosk_id).where(Kiosk.token_sha256 == digest)).first()
    if (holder is not None and holder != kiosk_id) or _service_holder(session, digest) is not None:
        # say that it is taken, not by whom: the caller may not know the other kiosk
        raise TokenInUse("this token is already in use by another kiosk; use a new one")
    kiosk = session.get(Kiosk, kiosk_id)
    if kiosk is None:
        session.add(Kiosk(kiosk_id=kiosk_id, token_sha256=digest, enabled=True, created_at=utcnow()))
        return True
    if kiosk.token_sha256 == digest and kiosk.enabled:
        return False
    kiosk.token_sha256, kiosk.enabled = digest, True
    return True


def _service_holder(session: Session, digest: str) -> str | None:
    return session.scalars(select(ServiceToken.name).where(ServiceToken.token_sha256 == digest)).first()


def service_for_token(session: Session, token: str, role: ServiceRole) -> str | None:
    """The name of the enabled service credential of `role` that holds `token`, or None."""
    if not token:
        return None
    row = session.scalars(select(ServiceToken).where(ServiceToken.token_sha256 == token_sha256(token))).one_or_none()
    if row is None or not row.enabled or row.role != role:
        return None
    return row.name


def put_service_token(session: Session, name: str, role: ServiceRole, token: str) -> bool:
    """Create the integration or gate credential `name` or give it this token (enabled).
    Returns True when anything changed. Same rules as put_kiosk: a strong token, held by
    nobody else (kiosk or service)."""
    if not KIOSK_ID_PATTERN.fullmatch(name):
        raise BadKioskId(f"a credential name is 1-64 letters, digits, '.', '_' or '-' (got {name[:70]!r})")
    problem = token_problem(token)
    if problem:
        raise WeakToken(problem)
    digest = token_sha256(token)
    holder = _service_holder(session, digest)
    taken_by_kiosk = session.scalars(select(Kiosk.kiosk_id).where(Kiosk.token_sha256 == digest)).first()
    if (holder is not None and holder != name) or taken_by_kiosk is not None:
        raise TokenInUse("this token is already in use; use a new one")
    row = session.get(ServiceToken, name)
    if row is None:
        session.add(ServiceToken(name=name, role=role, token_sha256=digest, enabled=True, created_at=utcnow()))
        return True
    if row.token_sha256 == digest and row.enabled and row.role == role:
        return False
    row.token_sha256, row.enabled, row.role = digest, True, role
    return True
