"""Buy a traffic-zone day permit (مجوز روزانه طرح ترافیک) for a plate: enter the plate on our
keypad and letter picker → choose the day (today or a day within the range the back-office
allows) → the back-office's price and whether the plate already holds that day's permit →
confirm → pay → the permit recorded against the plate (an enforcement camera's check finds
it) → receipt, the citizen's proof. Behind the UI port; the money half is
kiosk.flows.pay_and_post on the shared money path."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from kiosk.errors import KioskError
from kiosk.flows.fee_slips import MAX_INPUT_TRIES, ask_plate
from kiosk.flows.pay_and_post import PaidResult, pay_and_post
from kiosk.fmt import TEHRAN
from kiosk.journal import TxState
from kiosk.services.permit import TRAFFIC_PERMIT, PermitOrder
from kiosk.ui_port import Choice, CitizenLeft, Outcome, UIPort

log = logging.getLogger("kiosk.flows.permit")

#: at most this many days are offered on the screen
MAX_DAYS_SHOWN = 7


@dataclass(frozen=True)
class PermitResult:
    outcome: Outcome
    final_state: TxState | None
    transaction_id: str | None
    amount_rials: int
    receipt_payload: str | None = None
    plate: str = ""
    day: dt.date | None = None

    def summary(self) -> dict[str, Any]:
        return {"plate": self.plate, "permit_date": self.day.isoformat() if self.day else None}


class TrafficPermitFlow:
    def __init__(self, ctx: Any, ui: UIPort) -> None:
        self.ctx = ctx
        self.ui = ui

    async def run(self) -> PermitResult:
        plate, day = "", None
        try:
            plate = await self._plate()
            today = dt.datetime.now(TEHRAN).date()
            await self.ui.show_step("permit.quoting")
            first = await asyncio.to_thread(self.ctx.backoffice.permit_quote, plate, today)
            days = [first.min_date + dt.timedelta(days=i)
                    for i in range(min(MAX_DAYS_SHOWN, (first.max_date - first.min_date).days + 1))]
            picked = await self.ui.choose("permit.choose_date",
                                          [Choice(d.isoformat(), "permit.date_item", {"date": d}) for d in days])
            day = dt.date.fromisoformat(picked)
            quote = first if day == today else await asyncio.to_thread(self.ctx.backoffice.permit_quote, plate, day)
            if not quote.available:
                await self.ui.show_error("permit.unavailable", plate=plate, date=day)
                return await self._end(Outcome(False, "permit.unavailable"), plate, day)
            if not await self.ui.confirm("permit.confirm", plate=plate, date=day, amount_rials=quote.price_rials):
                return await self._end(Outcome(False, "slips.cancelled"), plate, day)
        except CitizenLeft:
            return await self._end(Outcome(False, "slips.cancelled"), plate, day)
        except KioskError as exc:
            await self.ui.show_error(exc.key, **exc.context)
            return await self._end(Outcome(False, exc.key, exc.context), plate, day)
        paid: PaidResult = await pay_and_post(
            self.ctx, self.ui, TRAFFIC_PERMIT, PermitOrder(plate, day, self.ctx.kiosk_id), quote.price_rials,
            done_key="permit.issued", done_params=lambda tx: {"tracking": tx.data.get("tracking_code", "")})
        return PermitResult(paid.outcome, paid.final_state, paid.transaction_id, paid.amount_rials,
                            paid.receipt_payload, plate, day)

    async def _plate(self) -> str:
        for _ in range(MAX_INPUT_TRIES):
            try:
                return await ask_plate(self.ui)
            except KioskError as exc:
                await self.ui.show_error(exc.key, **exc.context)
        raise CitizenLeft("too many invalid plates")

    async def _end(self, outcome: Outcome, plate: str, day: dt.date | None) -> PermitResult:
        await self.ui.show_outcome(outcome)
        return PermitResult(outcome, None, None, 0, None, plate, day)
