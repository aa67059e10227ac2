"""PN532 card reader: the UART driver (registered as "pn532-uart", a CardReader of
devices.contracts), its frames, and the virtual PN532 on a pty. MIFARE Classic facts are in
devices/mifare_classic.py, the virtual cards in devices/mifare_classic_virtual.py and the transit
card format in devices/transit_card/: none of them is the driver's."""

from devices.pn532 import driver  # noqa: F401  (runs @register)
from devices.pn532.driver import AccessDenied, AuthenticationError, CardRemoved, NoCard, PN532Reader
from devices.pn532.virtual import VirtualCard, VirtualPN532

__all__ = ["AccessDenied", "AuthenticationError", "CardRemoved", "NoCard", "PN532Reader",
           "VirtualCard", "VirtualPN532"]
