"""Demo transit cards for the virtual readers (`kiosk sim pn532`, the demo environment, tests):
virtual MIFARE Classic cards laid out as an issuer's personalisation machine would, with the
public demo master key. A deployment's cards are personalised through a reader
(`TransitCard.personalise`) with the kiosk's own master key."""

from __future__ import annotations

import datetime as dt

from devices.mifare_classic_virtual import VirtualCard
from devices.transit_card.errors import CardCorrupt
from devices.transit_card.keys import DEMO_MASTER_KEY, CardKeys
from devices.transit_card.layout import IDENTITY_BLOCK, PURSE_COPIES, copy_state, initial_blocks, newer_and_older
from devices.transit_card.records import CardIdentity, CardProfile

DEMO_CARD_UID = "04a1b2c3"
DEMO_CARD_SERIAL = "9364010001"
DEMO_CARD_PROFILE = CardProfile.REGULAR
DEMO_CARD_BALANCE = 250_000
DEMO_CARD_ISSUED = dt.date(2025, 3, 21)


def issue_virtual_card(uid: bytes | str, keys: CardKeys | bytes, balance: int, serial: str,
                       profile: CardProfile | str = CardProfile.REGULAR,
                       issued: dt.date = DEMO_CARD_ISSUED) -> VirtualCard:
    """A virtual card personalised offline: the blocks `TransitCard.personalise` writes."""
    card = VirtualCard.blank(uid)
    card_keys = keys if isinstance(keys, CardKeys) else CardKeys(keys)
    identity = CardIdentity(serial, CardProfile(profile), issued)
    return card.load_blocks(initial_blocks(card.uid, card_keys, balance, identity))


def demo_card(uid: str = DEMO_CARD_UID, balance: int = DEMO_CARD_BALANCE, serial: str = DEMO_CARD_SERIAL,
              profile: CardProfile | str = DEMO_CARD_PROFILE) -> VirtualCard:
    return issue_virtual_card(uid, DEMO_MASTER_KEY, balance, serial, profile)


def describe_virtual_card(card: VirtualCard) -> dict[str, object]:
    """What a virtual transit card holds, read straight from its blocks (no reader, no keys):
    UID, serial, profile and the balance of the newer consistent purse copy. A card that is
    not a readable transit card (blank, corrupt) says so in `error`."""
    summary: dict[str, object] = {"uid": card.uid_hex}
    try:
        newer, _ = newer_and_older(tuple(copy_state(c, card.block(c.value_block), card.block(c.record_block))
                                         for c in PURSE_COPIES))  # type: ignore[arg-type]
        identity = CardIdentity.decode(card.block(IDENTITY_BLOCK))
    except CardCorrupt as exc:
        summary["error"] = exc.error_code
        return summary
    assert newer.record is not None
    summary.update(serial=identity.serial, profile=str(identity.profile), balance_rials=newer.record.balance,
                   counter=newer.record.seq)
    return summary
