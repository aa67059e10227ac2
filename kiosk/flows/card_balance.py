"""Balance and recent trips (موجودی کارت، سفرهای اخیر): tap a transit card, see what it holds
— no payment, nothing journaled. A concession card (65+, student) is shown as such. The tap
also settles the card's pending actions (a torn top-up paid earlier), as every tap does."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from devices.base import DeviceError
from devices.contracts import CardReader
from devices.transit_card import CardCorrupt, LogEntry, TransitCard
from kiosk.flows.card_topup import read_card_for_citizen
from kiosk.fmt import format_rials
from kiosk.ui_port import CitizenLeft, Outcome, UIPort

log = logging.getLogger("kiosk.flows.balance")


@dataclass(frozen=True)
class BalanceResult:
    outcome: Outcome
    card_serial: str = ""
    balance_rials: int | None = None
    profile: str = ""
    trips: tuple[LogEntry, ...] = field(default_factory=tuple)


class CardBalanceFlow:
    def __init__(self, ctx, ui: UIPort) -> None:  # noqa: ANN001 - KioskContext
        self.ctx = ctx
        self.ui = ui

    async def run(self) -> BalanceResult:
        reader = self.ctx.available(CardReader)
        keys = self.ctx.transit_keys
        if reader is None or keys is None:
            await self.ui.show_error("service.unavailable")
            return await self._end(BalanceResult(Outcome(False, "service.unavailable")))
        try:
            balance, trips = await read_card_for_citizen(self.ctx, self.ui, reader, TransitCard(reader, keys))
        except CitizenLeft:
            return await self._end(BalanceResult(Outcome(False, "card.not_placed")))
        except (CardCorrupt, DeviceError) as exc:
            log.warning("card not read: %s", exc)
            key = "card.unreadable" if isinstance(exc, CardCorrupt) else "card.not_placed"
            await self.ui.show_error(key)
            return await self._end(BalanceResult(Outcome(False, key)))
        outcome = Outcome(True, "card.balance", {"balance": format_rials(balance.balance, self.ctx.settings.lang)})
        return await self._end(BalanceResult(outcome, balance.serial, balance.balance, str(balance.profile),
                                             tuple(trips)))

    async def _end(self, result: BalanceResult) -> BalanceResult:
        await self.ui.show_outcome(result.outcome)
        return result
