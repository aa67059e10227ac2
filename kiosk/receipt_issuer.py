"""Issue the receipt of a journaled transaction: take what was fixed when the payment was
approved (the PAID journal row), sign it, lay it out, print it through the ReceiptPrinter
contract. Signing is deterministic and covers only payment-time fields, so every print and
reprint of a transaction carries the very same payload."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from devices.base import DeviceError
from devices.contracts import PrintJob, ReceiptPrinter
from kiosk.bills import ServiceType
from kiosk.errors import KioskError
from kiosk.journal import JournalEntry, Transaction, TxState
from kiosk.receipts import ReceiptData, ReceiptSigner, build_document
from kiosk.receipts.layout import render

log = logging.getLogger("kiosk.receipts")


class NotPaid(KioskError):
    """A receipt was asked for a transaction with no PAID row: nothing was charged."""

    key: ClassVar[str] = "receipt.not_paid"
    fa: ClassVar[str] = "برای تراکنش {tx} پرداختی ثبت نشده است؛ رسیدی صادر نمی‌شود."
    en: ClassVar[str] = "Transaction {tx} has no recorded payment, so it has no receipt."
    money: ClassVar[str] = "none"


@dataclass(frozen=True)
class IssuedReceipt:
    payload: str
    printed: bool
    error: str = ""


def paid_entry(tx: Transaction) -> JournalEntry:
    """The transaction's PAID row: its time, seq and hash are what the receipt signs."""
    for entry in tx.entries:
        if entry.state == TxState.PAID:
            return entry
    raise NotPaid(f"{tx.tx_id} has no PAID row", tx=tx.tx_id)


def receipt_data(tx: Transaction, *, kiosk_id: str, pending: bool) -> ReceiptData:
    """The receipt of `tx`. Signed fields come from the rows up to and including PAID (data a
    later row adds cannot change them); the tracking code, printed beside, is the latest."""
    paid = paid_entry(tx)
    fixed: dict[str, Any] = {}
    for entry in tx.entries:
        fixed.update(entry.data)
        if entry is paid:
            break
    service = ServiceType(int(fixed.get("service_type", 6)))
    return ReceiptData(
        tx_id=tx.tx_id,
        kiosk_id=kiosk_id,
        kind=tx.kind,
        amount_rials=paid.amount_rials,
        at=dt.datetime.fromtimestamp(int(paid.at), dt.timezone.utc),
        bill_id=fixed.get("bill_id", ""),
        payment_id=fixed.get("payment_id", ""),
        service_label_fa=fixed.get("description_fa") or service.label("fa"),
        service_label_en=service.label("en"),
        tracking_code=tx.data.get("tracking_code", ""),
        rrn=fixed.get("rrn", ""),
        stan=fixed.get("stan", ""),
        masked_pan=fixed.get("masked_pan", ""),
        status="pending_settlement" if pending else "paid",
        journal_seq=paid.seq,
        journal_hash=paid.hash,
    )


async def render_for(printer: ReceiptPrinter, document: Any) -> PrintJob:
    """Lay out for this printer's paper width and QR ability. ~20 ms of CPU: off the event
    loop, so the screen stays responsive."""
    return await asyncio.to_thread(render, document, width_dots=int(printer.capabilities.get("width_dots", 576)),
                                   native_qr=bool(printer.capabilities.get("native_qr", True)))


class ReceiptIssuer:
    def __init__(self, signer: ReceiptSigner, printer: Callable[[], ReceiptPrinter | None], *,
                 kiosk_id: str, lang: str = "fa") -> None:
        self.signer = signer
        self._printer = printer
        self.kiosk_id = kiosk_id
        self.lang = lang

    def receipt_data(self, tx: Transaction, *, pending: bool) -> ReceiptData:
        return receipt_data(tx, kiosk_id=self.kiosk_id, pending=pending)

    async def issue(self, tx: Transaction, *, pending: bool) -> IssuedReceipt:
        data = self.receipt_data(tx, pending=pending)
        payload = self.signer.sign(data)
        printer = self._printer()
        if printer is None:
            return IssuedReceipt(payload, False, "no printer")
        job = await render_for(printer, build_document(data, payload, lang=self.lang))
        try:
            await printer.print_job(job)
        except DeviceError as exc:
            log.warning("receipt not printed: %s", exc, extra={"tx": tx.tx_id})
            return IssuedReceipt(payload, False, str(exc))
        return IssuedReceipt(payload, True)
