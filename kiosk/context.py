"""Everything a flow needs for one kiosk, wired once: settings, journal, back-office client,
devices, the money path and the receipt issuer. Built by `kiosk demo` and `kiosk recover`
(and `kiosk run` when the touch UI lands); tests build it against real loopback servers and
emulators.

Opening a context takes the data dir's lock (kiosk.data_lock: one process owns a data dir's
money), refuses an unknown $KIOSK_FAULT, and verifies the whole journal once: a journal that
fails verification leaves the context open but out of service (`out_of_service`), so the
screen can say so while nothing moves money."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from devices.base import Device, DeviceError, DeviceState
from devices.contracts import PaymentTerminal, ReceiptPrinter
from devices.manager import DeviceManager
from devices.transit_card import CardKeys
from kiosk.backoffice_client import BackofficeClient
from kiosk.data_lock import DataLock
from kiosk.faults import check_fault_env
from kiosk.journal import Journal, journal_path
from kiosk.money_path import MoneyPath
from kiosk.outbox_worker import OutboxWorker
from kiosk.service_guard import DEFAULT_MIN_FREE_BYTES, JournalBroken
from kiosk.services.card_sale import attach_devices
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
    lock: DataLock | None = None  # released by close() when open() took it

    @property
    def kiosk_id(self) -> str:
        return self.settings.kiosk_id

    def available(self, contract: type[D]) -> D | None:
        """The first device of this class that is usable now, or None (the service that
        needs it is then shown as unavailable, not crashed into)."""
        dev = self.devices.first(contract)
        return dev if dev is not None and dev.state in _USABLE else None

    @property
    def transit_keys(self) -> CardKeys | None:
        """The per-card key master for transit cards (settings.transit_master_key_file, hex),
        or None: transit services are then unavailable. Never logged."""
        path = self.settings.transit_master_key_file
        if not path:
            return None
        try:
            return CardKeys(bytes.fromhex(Path(path).read_text(encoding="ascii").strip()))
        except (OSError, ValueError, DeviceError) as exc:
            log.error("transit master key unreadable (%s): transit services unavailable", type(exc).__name__)
            return None

    @property
    def out_of_service(self) -> JournalBroken | None:
        """Why the kiosk may not move money now (a journal that failed verification)."""
        return self.money.guard.broken

    @classmethod
    async def open(cls, settings: KioskSettings, data_dir: Path, *,
                   lock: DataLock | None = None) -> "KioskContext":
        """Wire the kiosk. Takes the data dir's lock unless the caller already holds it
        (`lock`); raises DataDirLocked naming the holder's pid, UnknownFaultPoint."""
        check_fault_env()
        own_lock = lock is None
        lock = lock if lock is not None else DataLock(data_dir)
        lock.acquire()
        try:
            journal = Journal(journal_path(data_dir), kiosk_id=settings.kiosk_id)
            money = MoneyPath(
                journal, BackofficeClient(settings.backoffice_url, settings.backoffice_token),
                lambda: devices.first(PaymentTerminal), kiosk_id=settings.kiosk_id,
                pay_timeout=settings.pay_timeout_s, status_timeout=settings.status_timeout_s,
                data_dir=data_dir,
                min_free_bytes=int(getattr(settings, "min_free_bytes", DEFAULT_MIN_FREE_BYTES)),
            )
            try:
                money.guard.verify_full()
            except JournalBroken as exc:  # kept in money.guard: out of service, shown by the flows
                # INFO here: whoever acts on it says it once, loudly (the CLI's one line, the
                # flow's and the background worker's CRITICAL log)
                log.info("journal fails verification, out of service: %s", exc.detail)
            devices = DeviceManager(list(settings.devices))
            await devices.start()
            receipts = ReceiptIssuer(load_or_create_key(data_dir), lambda: devices.first(ReceiptPrinter),
                                     kiosk_id=settings.kiosk_id, lang=settings.lang)
        except BaseException:
            if own_lock:
                lock.release()
            raise
        ctx = cls(settings, data_dir, journal, money.backoffice, devices, money, receipts,
                  lock=lock if own_lock else None)
        # recovery of a card sale interrupted at the hand-over asks the dispenser's read position
        attach_devices(ctx)
        return ctx

    def start_outbox_worker(self, interval_s: float = 5.0, recovery_interval_s: float | None = None,
                            full_verify_interval_s: float = 3600.0) -> asyncio.Task[None]:
        """Keep re-posting queued settlements and resolving unclaimed open transactions while
        the kiosk runs (store-and-forward, background recovery)."""
        if recovery_interval_s is None:
            recovery_interval_s = float(getattr(self.settings, "background_recovery_interval_s", 30.0))
        worker = OutboxWorker(self.journal, self.money, interval_s=interval_s,
                              recovery_interval_s=recovery_interval_s,
                              full_verify_interval_s=full_verify_interval_s)
        task = asyncio.create_task(worker.run(), name="outbox-worker")
        self.background.append(task)
        return task

    async def close(self) -> None:
        for task in self.background:
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        try:
            await self.devices.stop()
            self.backoffice.close()
            await self.money.aclose()  # queued journal writes finish, then the journal closes
        finally:
            if self.lock is not None:
                self.lock.release()
