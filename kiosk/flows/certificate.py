"""A settlement certificate (گواهی مفاصاحساب) for a property (renovation tax) or a business
(business tax): choose which, type its identifier → the back-office checks every slip → nothing
owed: the kiosk signs the certificate with its receipt key (kiosk.certificates) and prints it,
or shows its QR when the printer cannot → something owed: the citizen is told what and offered
to pay it at once (the fee basket), after which the certificate is asked for again."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from devices.base import DeviceError
from devices.contracts import ReceiptPrinter
from kiosk.backoffice_client import OutstandingSlips
from kiosk.certificates import CertificateData, build_certificate_document, sign_certificate
from kiosk.errors import KioskError
from kiosk.fee_types import FEE_TYPES, FeeType, mask_identifier
from kiosk.flows.fee_slips import FeeSlipsFlow
from kiosk.journal import TxState
from kiosk.services.basket import MAX_BILLS
from kiosk.receipt_issuer import render_for
from kiosk.tickets import load_ticket_signer
from kiosk.ui_port import CitizenLeft, Outcome, UIPort

log = logging.getLogger("kiosk.flows.certificate")


@dataclass(frozen=True)
class CertificateResult:
    outcome: Outcome
    final_state: TxState | None = None  # of the basket, when the citizen paid what was owed
    transaction_id: str | None = None
    amount_rials: int = 0
    receipt_payload: str | None = None  # the certificate's signed QR
    certificate: CertificateData | None = None
    printed: bool = False
    outstanding: int = 0

    def summary(self) -> dict[str, Any]:
        c = self.certificate
        return {"certificate_id": c.certificate_id if c else None,
                "valid_until": c.valid_until.isoformat() if c else None,
                "certificate_printed": self.printed, "outstanding_paid": self.outstanding}


class CertificateFlow:
    def __init__(self, ctx: Any, ui: UIPort, *, lang: str = "fa") -> None:
        self.ctx = ctx
        self.ui = ui
        self.lang = lang
        self.slips = FeeSlipsFlow(ctx, ui, lang=lang)

    async def run(self) -> CertificateResult:
        paid = None
        try:
            fee_type = await self.slips.choose_fee_type(
                "cert.choose_type", [t.name for t in FEE_TYPES.values() if t.certifiable])
            identifier = await self.slips.ask_identifier(fee_type)
            try:
                return await self._issue(fee_type, identifier)
            except OutstandingSlips as owed:
                slips = list(owed.slips)
            total = sum(s.amount_rials for s in slips)
            if not await self.ui.confirm("cert.outstanding", count=len(slips), amount_rials=total):
                return await self._end(Outcome(False, "cert.not_issued"))
            paid_count = 0
            for _ in range(-(-len(slips) // MAX_BILLS)):  # one payment takes MAX_BILLS slips at most
                batch, slips = slips[:MAX_BILLS], slips[MAX_BILLS:]
                paid = await self.slips.pay(batch, fee_type=fee_type.name, listed=len(batch))
                if not paid.outcome.ok:
                    return CertificateResult(paid.outcome, paid.final_state, paid.transaction_id,
                                             paid.amount_rials, paid.receipt_payload)
                paid_count += len(batch)
            if paid.final_state != TxState.COMPLETED:  # paid; the settlement waits in the outbox
                outcome = Outcome(False, "cert.pending_settlement", {}, paid.transaction_id, paid.receipt_payload)
                await self.ui.show_outcome(outcome)
                return CertificateResult(outcome, paid.final_state, paid.transaction_id, paid.amount_rials,
                                         paid.receipt_payload, outstanding=paid_count)
            issued = await self._issue(fee_type, identifier)
            return CertificateResult(issued.outcome, paid.final_state, paid.transaction_id, paid.amount_rials,
                                     issued.receipt_payload, issued.certificate, issued.printed, paid_count)
        except CitizenLeft:
            return await self._end(Outcome(False, "slips.cancelled"))
        except OutstandingSlips:  # still owed after paying (a settlement waiting in the outbox)
            await self.ui.show_error("cert.not_issued")
            return await self._end(Outcome(False, "cert.not_issued"), paid)
        except KioskError as exc:
            await self.ui.show_error(exc.key, **exc.context)
            return await self._end(Outcome(False, exc.key, exc.context), paid)

    async def _issue(self, fee_type: FeeType, identifier: str) -> CertificateResult:
        await self.ui.show_step("cert.asking")
        cert = await asyncio.to_thread(self.ctx.backoffice.request_certificate, fee_type.name, identifier,
                                       idempotency_key=f"{self.ctx.kiosk_id}-cert-{uuid.uuid4().hex}")
        data = CertificateData(
            certificate_id=cert.certificate_id, kiosk_id=self.ctx.kiosk_id, fee_type=fee_type.name,
            identifier_masked=cert.identifier_masked or mask_identifier(fee_type, identifier),
            owner_masked=cert.owner_name_masked,
            as_of=dt.datetime.fromisoformat(cert.as_of).replace(microsecond=0), valid_until=cert.valid_until, slips_checked=cert.slips_checked)
        signer = await asyncio.to_thread(load_ticket_signer, self.ctx.data_dir)
        payload = sign_certificate(data, signer)
        printed = await self._print(data, payload)
        if not printed:
            await self.ui.show_error("cert.shown")
        outcome = Outcome(True, "cert.issued", {"valid_until": data.valid_until,
                                                "certificate_id": data.certificate_id}, None, payload)
        await self.ui.show_outcome(outcome)
        return CertificateResult(outcome, receipt_payload=payload, certificate=data, printed=printed)

    async def _print(self, data: CertificateData, payload: str) -> bool:
        printer = self.ctx.available(ReceiptPrinter)
        if printer is None:
            return False
        try:
            await printer.print_job(await render_for(printer, build_certificate_document(data, payload, self.lang)))
        except DeviceError as exc:
            log.warning("certificate not printed: %s", exc)
            return False
        return True

    async def _end(self, outcome: Outcome, paid: Any = None) -> CertificateResult:
        await self.ui.show_outcome(outcome)
        if paid is None:
            return CertificateResult(outcome)
        return CertificateResult(outcome, paid.final_state, paid.transaction_id, paid.amount_rials,
                                 paid.receipt_payload)

