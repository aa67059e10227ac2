"""Strict base64url without padding, as the receipt, ticket and certificate codes spell their
parts: the alphabet only and canonical (no stray bits in the last character), so one payload has
exactly one spelling and an edited code cannot pass for the same one."""

from __future__ import annotations

import base64
import binascii
import re

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*\Z")


class NotBase64Url(ValueError):
    """`reason`: "not base64url" or "non-canonical base64url"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode(text: str) -> bytes:
    """Raises NotBase64Url for anything but the one canonical spelling of some bytes."""
    if not _ALPHABET.match(text) or len(text) % 4 == 1:
        raise NotBase64Url("not base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise NotBase64Url("not base64url") from None
    if encode(raw) != text:
        raise NotBase64Url("non-canonical base64url")
    return raw
