"""Kiosk credentials: bearer tokens, stored only as their SHA-256."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from backoffice.models import Kiosk, utcnow


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def kiosk_for_token(session: Session, token: str) -> str | None:
    """The enabled kiosk that holds `token`, or None."""
    if not token:
        return None
    kiosk = session.scalars(select(Kiosk).where(Kiosk.token_sha256 == token_sha256(token))).one_or_none()
    if kiosk is None or not kiosk.enabled:
        return None
    return kiosk.kiosk_id


def put_kiosk(session: Session, kiosk_id: str, token: str) -> bool:
    """Create the kiosk or give it this token (enabled). Returns True when anything changed."""
    digest = token_sha256(token)
    kiosk = session.get(Kiosk, kiosk_id)
    if kiosk is None:
        session.add(Kiosk(kiosk_id=kiosk_id, token_sha256=digest, enabled=True, created_at=utcnow()))
        return True
    if kiosk.token_sha256 == digest and kiosk.enabled:
        return False
    kiosk.token_sha256, kiosk.enabled = digest, True
    return True
