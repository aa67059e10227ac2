"""PN532 transit card reader: UART driver (registered as "pn532-uart"), frames, MIFARE Classic
helpers, the transit card layout and the virtual PN532 on a pty."""

from devices.pn532 import driver  # noqa: F401  (runs @register)
from devices.pn532.card_layout import (
           CardBalance,
           CardCorrupt,
           LogEntry,
           TransitCard,
           TxType,
)
from devices.pn532.driver import AccessDenied, AuthenticationError, CardRemoved, NoCard, PN532Reader
from devices.pn532.keys import CardKeys, KeyType
from devices.pn532.virtual import VirtualCard, VirtualPN532

__all__ = ["AccessDenied", "AuthenticationError", "CardBalance", "CardCorrupt", "CardKeys", "CardRemoved",
           "KeyType", "LogEntry", "NoCard", "PN532Reader", "TransitCard", "TxType",
           "VirtualCard", "VirtualPN532"]
