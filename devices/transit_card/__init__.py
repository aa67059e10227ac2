"""The City Kiosk transit card format on MIFARE Classic 1K (docs/card-layout.md), over any
`CardReader` of devices.contracts: layout and access bits (layout), byte formats of the commit
record, log entry and identity block (records), per-card key diversification (keys), the card
as a flow uses it (card: `TransitCard`, `WritePlan`, `personalise`) and demo cards (demo).
No reader driver lives here, and no driver package holds any of this."""

from devices.transit_card.card import (
    CardBalance,
    TransitCard,
    WriteOutcome,
    WritePlan,
    personalise,
)
from devices.transit_card.errors import (
    AlreadyOnCard,
    BalanceLimit,
    CardChanged,
    CardCorrupt,
    IdentityCorrupt,
    InsufficientBalance,
    OutcomeUnknown,
    PersonaliseFailed,
)
from devices.transit_card.keys import DEMO_MASTER_KEY, CardKeys, demo_keys
from devices.transit_card.layout import MAX_BALANCE_RIALS
from devices.transit_card.records import CardIdentity, CardProfile, LogEntry, TxType, tx_ref_short

__all__ = ["DEMO_MASTER_KEY", "MAX_BALANCE_RIALS", "AlreadyOnCard", "BalanceLimit", "CardBalance", "CardChanged",
           "CardCorrupt", "CardIdentity", "CardKeys", "CardProfile", "IdentityCorrupt", "InsufficientBalance",
           "LogEntry", "OutcomeUnknown", "PersonaliseFailed", "TransitCard", "TxType", "WriteOutcome",
           "WritePlan", "demo_keys", "personalise", "tx_ref_short"]
