"""Everything a flow needs for one kiosk, wired once: settings, journal, back-office client,
devices, the money path and the receipt issuer. Built by `kiosk run`/`kiosk demo`; tests
build it against real loopback servers and emulators."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from devices.base import Device, DeviceState
from devices.contracts import PaymentTerminal, ReceiptPrinter
from devices.manager import DeviceManager
from kiosk.backoffice_client import BackofficeClient
from kiosk.journal import Journal, journal_path
from kiosk.money_path import MoneyPath
from kiosk.receipt_issuer import ReceiptIssuer
from kiosk.receipts import load_or_create_key
from kiosk.settings import KioskSettings

log = logging.getLogger("kiosk")

D = TypeVar("D", bound=Device)

_USABLE = (DeviceState.ONLINE, DeviceState.BUSY)


@dataclass
class KioskContext:
    settings: KioskSettings
    data_dir: Path
    journal: Journal
    backoffice: BackofficeClient
    devices: DeviceManager
    money: MoneyPath
    receipts: ReceiptIssuer

    @property
    def kiosk_id(self) -> str:
        return self.settings.kiosk_id

    def available(self, contract: type[D]) -> D | None:
        """The first device of this class that is usable now, or None (the service that
        needs it is then shown as unavailable, not crashed into)."""
        dev = self.devices.first(contract)
        return dev if dev is not None and dev.state in _USABLE else None

    @classmethod
    async def open(cls, settings: KioskSettings, data_dir: Path) -> "KioskContext":
        journal = Journal(journal_path(data_dir), kiosk_id=settings.kiosk_id)
        backoffice = BackofficeClient(settings.backoffice_url, settings.backoffice_token)
        devices = DeviceManager(list(settings.devices))
        await devices.start()
        money = MoneyPath(
            journal, backoffice, lambda: devices.first(PaymentTerminal), kiosk_id=settings.kiosk_id,
            pay_timeout=settings.pay_timeout_s, status_timeout=settings.status_timeout_s,
        )
        receipts = ReceiptIssuer(load_or_create_key(data_dir), lambda: devices.first(ReceiptPrinter),
                                 kiosk_id=settings.kiosk_id, lang=settings.lang)
        return cls(settings, data_dir, journal, backoffice, devices, money, receipts)

    async def close(self) -> None:
        await self.devices.stop()
        self.backoffice.close()
        self.journal.close()
