"""Everything a flow needs for one kiosk, wired once: settings, journal, back-office client,
devices, the money path and the receipt issuer. Built by `kiosk run`/`kiosk demo`; tests
build it against real loopback servers and emulators."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from devices.base import Device, DeviceState
from devices.contracts import PaymentTerminal, ReceiptPrinter
from devices.manager import DeviceManager
from kiosk.backoffice_client import BackofficeClient
from kiosk.journal import Journal, journal_path
from kiosk.money_path import MoneyPath
from kiosk.outbox_worker import OutboxWorker
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
    background: list[asyncio.Task[None]] = field(default_factory=list)

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

    def start_outbox_worker(self, interval_s: float = 5.0) -> asyncio.Task[None]:
        """Keep re-posting queued settlements while the kiosk runs (store-and-forward)."""
        task = asyncio.create_task(OutboxWorker(self.journal, self.money, interval_s=interval_s).run(),
                                   name="outbox-worker")
        self.background.append(task)
        return task

    async def close(self) -> None:
        for task in self.background:
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        await self.devices.stop()
        self.backoffice.close()
        self.journal.close()
