"""PN532 card reader: the UART driver (registered as "pn532-uart", a CardReader of
devices.contracts), its frames, and the virtual PN532 on a pty. MIFARE Classic facts are in
devices/mifare_classic.py, the virtual cards in devices/mifare_classic_virtual.py and the transit
card format in devices/transit_card/: none of them is the driver's.

The virtual PN532 (VirtualCard, VirtualPN532) is imported on first use of its name, not with the
driver: a kiosk that reads real cards never loads the emulator and its virtual MIFARE cards."""

from __future__ import annotations

from typing import Any

from devices.pn532 import driver  # noqa: F401  (runs @register)
from devices.pn532.driver import AccessDenied, AuthenticationError, CardRemoved, NoCard, PN532Reader

_VIRTUAL = frozenset({"VirtualCard", "VirtualPN532"})


def __getattr__(name: str) -> Any:
    if name in _VIRTUAL:
        from devices.pn532 import virtual

        return getattr(virtual, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AccessDenied", "AuthenticationError", "CardRemoved", "NoCard", "PN532Reader",
           "VirtualCard", "VirtualPN532"]
