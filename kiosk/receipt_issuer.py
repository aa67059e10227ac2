"""Issue the receipt of a journaled transaction: sign it, lay it out, print it through the
ReceiptPrinter contract. Ed25519 signatures are deterministic, so a reprint from the journal
carries the very same payload."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Callable

from devices.base import DeviceError
from devices.contracts import ReceiptPrinter
from devices.printer.layout import render
from kiosk.bills import ServiceType
from kiosk.journal import Transaction
from kiosk.receipts import ReceiptData, ReceiptSigner, build_document

log = logging.getLogger("kiosk.receipts")


@dataclass(frozen=True)
class IssuedReceipt:
    payload: str
    printed: bool
    error: str = ""


class ReceiptIssuer:
    def __init__(self, signer: ReceiptSigner, printer: Callable[[], ReceiptPrinter | None], *,
                 kiosk_id: str, lang: str = "fa") -> None:
        self.signer = signer
        self._printer = printer
        self.kiosk_id = kiosk_id
        self.lang = lang

    def receipt_data(self, tx: Transaction, *, pending: bool) -> ReceiptData:
        data = tx.data
        service = ServiceType(int(data.get("service_type", 6)))
        return ReceiptData(
            tx_id=tx.tx_id,
            kiosk_id=self.kiosk_id,
            kind=tx.kind,
            amount_rials=tx.amount_rials,
            at=dt.datetime.fromtimestamp(tx.updated_at, dt.timezone.utc),
            bill_id=data.get("bill_id", ""),
            payment_id=data.get("payment_id", ""),
            service_label_fa=data.get("description_fa") or service.label("fa"),
            service_label_en=service.label("en"),
            tracking_code=data.get("tracking_code", ""),
            rrn=data.get("rrn", ""),
            stan=data.get("stan", ""),
            masked_pan=data.get("masked_pan", ""),
            status="pending_settlement" if pending else "paid",
        )

    async def issue(self, tx: Transaction, *, pending: bool) -> IssuedReceipt:
        data = self.receipt_data(tx, pending=pending)
        payload = self.signer.sign(data)
        printer = self._printer()
        if printer is None:
            return IssuedReceipt(payload, False, "no printer")
        document = build_document(data, payload, lang=self.lang)
        # layout is ~20 ms of CPU: off the event loop, so the screen stays responsive
        job = await asyncio.to_thread(render, document, width_dots=int(printer.capabilities.get("width_dots", 576)),
                                      native_qr=bool(printer.capabilities.get("native_qr", True)))
        try:
            await printer.print_job(job)
        except DeviceError as exc:
            log.warning("receipt not printed: %s", exc, extra={"tx": tx.tx_id})
            return IssuedReceipt(payload, False, str(exc))
        return IssuedReceipt(payload, True)
