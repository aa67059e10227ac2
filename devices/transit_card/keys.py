"""Per-card MIFARE sector keys diversified from a master key, so one card's keys open no other.

key = HMAC-SHA256(master, label || uid || sector)[:6], with distinct labels for key A and key B.
The master key (at least 16 bytes) lives in the kiosk's secure configuration; `CardKeys` never
prints it. The demo master key below is public and for the demo and tests only.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from devices.base import InvalidData
from devices.contracts import KeyType

__all__ = ["DEMO_MASTER_KEY", "LABELS", "MIN_MASTER_KEY_BYTES", "CardKeys", "KeyType", "demo_keys",
           "diversify"]

MIN_MASTER_KEY_BYTES = 16
LABELS = {"A": b"city-kiosk/transit/key-A/", "B": b"city-kiosk/transit/key-B/"}

# The demo cards' master key (`kiosk sim pn532`, the demo environment, `kiosk doctor`). Demo
# only: a deployment's master key lives in the kiosk's secure storage, never in code.
DEMO_MASTER_KEY = b"city-kiosk/demo-only/master-key!"


def diversify(master: bytes, uid: bytes, sector: int, key_type: KeyType) -> bytes:
    """The 6-byte key of `key_type` for `sector` of the card with `uid`."""
    if len(master) < MIN_MASTER_KEY_BYTES:
        raise InvalidData(f"master key must be at least {MIN_MASTER_KEY_BYTES} bytes",
                          error_code="weakMasterKey")
    if not 0 <= sector < 16:
        raise InvalidData(f"sector {sector} is not on a MIFARE Classic 1K card", error_code="badSector")
    if len(uid) not in (4, 7, 10):
        raise InvalidData(f"UID of {len(uid)} bytes is not an ISO 14443-A UID", error_code="badUid")
    mac = hmac.new(master, LABELS[KeyType(key_type).value] + uid + bytes([sector]), hashlib.sha256)
    return mac.digest()[:6]


@dataclass(frozen=True)
class CardKeys:
    """The kiosk's view of the master key. repr() never shows the key."""

    master: bytes

    def __post_init__(self) -> None:
        if len(self.master) < MIN_MASTER_KEY_BYTES:
            raise InvalidData(f"master key must be at least {MIN_MASTER_KEY_BYTES} bytes",
                              error_code="weakMasterKey")

    def __repr__(self) -> str:
        return "CardKeys(master=<hidden>)"

    def key(self, uid: bytes, sector: int, key_type: KeyType) -> bytes:
        return diversify(self.master, uid, sector, key_type)


def demo_keys() -> CardKeys:
    return CardKeys(DEMO_MASTER_KEY)
