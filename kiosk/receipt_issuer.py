"""Issue the receipt of a journaled transaction: take what was fixed when the payment was
approved (the PAID journal row), sign it, lay it out, print it through the ReceiptPrinter
contract. Signing is deterministic and covers only payment-time fields, so every print and
reprint of a transaction carries the very same payload."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Callable

from devices.base import DeviceError
from devices.contracts import PrintJob, ReceiptPrinter
from kiosk.journal import Transaction
from kiosk.receipts import ReceiptData, ReceiptSigner, build_document
from kiosk.receipts.layout import render
from kiosk.services import kind_of
from kiosk.services.base import NotPaid, paid_entry

log = logging.getLogger("kiosk.receipts")

__all__ = ["IssuedReceipt", "NotPaid", "ReceiptIssuer", "paid_entry", "receipt_data", "render_for"]


def receipt_data(tx: Transaction, *, kiosk_id: str, pending: bool) -> ReceiptData:
    """The receipt of `tx`, as its kind writes it (kiosk.services). Signed fields come from
    the rows up to and including PAID (data a later row adds cannot change them); the
    tracking code, printed beside, is the latest."""
    return kind_of(tx.kind).receipt_data(tx, kiosk_id=kiosk_id, pending=pending)


@dataclass(frozen=True)
class IssuedReceipt:
    payload: str
    printed: bool
    error: str = ""


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
