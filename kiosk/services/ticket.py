"""The QR ticket kind: a single or return trip ticket paid by bank card, issued as a QR signed
with the kiosk's key (kiosk.tickets) that a gate verifies offline, recorded at the back-office
(POST /tickets, idempotent by transaction id) where gates redeem its trips, and printed.

Journal states and what each holds:
  CREATED      TicketOrder (which ticket: kind and trips; the price is the transaction's amount)
  PAYING/PAID  the shared money path
  FULFILLING   the ticket issued (its fields: id, kind, trips, valid_until, amount), in the
               same commit that queues its back-office post
  FULFILLED +  the back-office recorded it (tracking code), in the commit that acknowledges
  POSTED       the post (the default ack_states: a ticket is fulfilled by being recorded)
  COMPLETED    printed, or shown on screen when nothing could print

The ticket's QR is not journaled: it is the deterministic Ed25519 signature of the journaled
fields (kiosk.tickets.TicketSigner), so the same ticket always has the same QR.

Why these choices (docs/qr-tickets.md):
  * ticket id = transaction id: unique by construction (kiosk id, date, time, random), and
    recovery can ask the back-office about a transaction's ticket by the transaction id alone
    (a PAID transaction the back-office holds no ticket for is reversed, as for any kind);
  * a refused post (TicketDuplicate: the id is recorded for another sale) is a definite
    refusal: the money goes back and, in the flow, nothing is printed;
  * the back-office unreachable: the post stays queued (store-and-forward) and the ticket is
    printed anyway — it is signed, so gates that verify offline accept it at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from kiosk.backoffice_client import BackofficeClient, TicketDuplicate, TicketNotFound, TicketPost, TicketRecord
from kiosk.fmt import TEHRAN
from kiosk.journal import OutboxItem, Transaction, TxState
from kiosk.receipts import ReceiptData
from kiosk.services.base import InvalidOrder, Order, Posted, TransactionKind, fixed_at_paid, paid_entry
from kiosk.tickets import TRIPS_OF_KIND, TicketData, TicketSigner

if TYPE_CHECKING:
    from kiosk.money_path import MoneyPath

#: the outbox kind of a ticket's back-office post
TICKET_POST = "ticket_post"

#: Fares, in rials, of the tickets a kiosk sells. A return ticket is two trips at a discount.
#: (Constants, like the fee tables: a fare change is a release, reviewed like code.)
TICKET_PRICES_RIALS: dict[str, int] = {"single": 50_000, "return": 90_000}

#: A ticket is valid until the end of the Tehran calendar day it was paid on, plus this many
#: hours: metro and bus lines run past midnight, and a ticket bought at 23:50 must still
#: carry its holder home. A ticket bought at 10:00 on day D is valid until 03:00 on D+1.
VALID_HOURS_AFTER_DAY = 3


def valid_until_for(paid_at: float) -> dt.datetime:
    """End of the Tehran day of `paid_at` (unix seconds) plus VALID_HOURS_AFTER_DAY, in UTC."""
    local_day = dt.datetime.fromtimestamp(paid_at, TEHRAN).date()
    midnight = dt.datetime.combine(local_day + dt.timedelta(days=1), dt.time(0), tzinfo=TEHRAN)
    return (midnight + dt.timedelta(hours=VALID_HOURS_AFTER_DAY)).astimezone(dt.UTC)


@dataclass(frozen=True)
class TicketOrder(Order):
    ticket_kind: str  # "single" | "return"
    trips: int
    kiosk_id: str = ""

    def to_journal(self) -> dict[str, Any]:
        return {"ticket_kind": self.ticket_kind, "trips": self.trips, "kiosk_id": self.kiosk_id}

    @classmethod
    def from_journal(cls, data: Mapping[str, Any]) -> TicketOrder:
        kind, trips = data.get("ticket_kind"), data.get("trips")
        if kind not in TRIPS_OF_KIND or trips != TRIPS_OF_KIND[kind]:
            raise InvalidOrder("not a ticket order", tx=str(data.get("tx_id", "")))
        return cls(str(kind), int(trips), str(data.get("kiosk_id") or ""))

    @classmethod
    def of(cls, ticket_kind: str, kiosk_id: str) -> TicketOrder:
        return cls(ticket_kind, TRIPS_OF_KIND[ticket_kind], kiosk_id)


def issue(tx: Transaction, kiosk_id: str) -> TicketData:
    """The ticket a paid transaction buys: its id is the transaction id, its price what was
    paid, its validity from the PAID row's time — all fixed at payment, so issuing again
    (after a crash) gives the very same ticket."""
    order = TicketOrder.from_journal(tx.data)
    paid = paid_entry(tx)
    return TicketData(kiosk_id=kiosk_id, ticket_id=tx.tx_id, kind=order.ticket_kind, trips=order.trips,
                      valid_until=valid_until_for(paid.at), amount_rials=paid.amount_rials)


def ticket_of(tx: Transaction) -> TicketData | None:
    """The ticket FULFILLING journaled, or None (not issued yet)."""
    for entry in tx.entries:
        if entry.state == TxState.FULFILLING and "ticket" in entry.data:
            t = entry.data["ticket"]
            try:
                return TicketData(str(t["kiosk_id"]), str(t["ticket_id"]), str(t["kind"]), int(t["trips"]),
                                  dt.datetime.fromisoformat(str(t["valid_until"])), int(t["amount_rials"]))
            except (KeyError, TypeError, ValueError):
                raise InvalidOrder("journaled ticket cannot be read", tx=tx.tx_id) from None
    return None


def ticket_payload(tx: Transaction, signer: TicketSigner) -> str | None:
    """The QR of the ticket `tx` issued — the very payload printed or shown (signing is
    deterministic) — or None when it issued none. For support: a ticket recorded but never
    handed over (a crash before the print) is shown again from the journal."""
    ticket = ticket_of(tx)
    return signer.sign(ticket) if ticket is not None else None


def ticket_post(tx: Transaction, ticket: TicketData) -> dict[str, Any]:
    return TicketPost(ticket.ticket_id, tx.tx_id, ticket.kind, ticket.trips,
                      ticket.valid_until.astimezone(dt.UTC).isoformat(), ticket.amount_rials).to_dict()


async def queue_ticket(money: MoneyPath, tx: Transaction, ticket: TicketData) -> OutboxItem:
    """FULFILLING (the ticket issued) with its back-office post queued, one commit."""
    item_id = await money.writer.outbox_enqueue(
        tx.tx_id, TICKET_POST, ticket_post(tx, ticket), idempotency_key=tx.tx_id,
        with_state=(TxState.FULFILLING, {"ticket": ticket.to_dict()}), anchor=True)
    return money.journal.outbox_item(item_id)


class QrTicketKind(TransactionKind):
    name: ClassVar[str] = "qr_ticket"
    outbox_kind: ClassVar[str] = TICKET_POST
    order_type: ClassVar[type[Order]] = TicketOrder
    # the ticket id is recorded for another sale: this ticket cannot be recorded, ever
    refusals: ClassVar[tuple[type[BaseException], ...]] = (TicketDuplicate,)

    def post_payload(self, tx: Transaction, *, paid_at: str) -> dict[str, Any]:
        ticket = ticket_of(tx)
        if ticket is None:
            raise InvalidOrder("a ticket is posted only once issued", tx=tx.tx_id)
        return ticket_post(tx, ticket)

    def post(self, backoffice: BackofficeClient, payload: Mapping[str, Any], *, idempotency_key: str,
             outbox_kind: str = TICKET_POST) -> Posted:
        return backoffice.post_ticket(TicketPost.from_dict(payload), idempotency_key=idempotency_key)

    def find_posted(self, backoffice: BackofficeClient, tx_id: str) -> Posted | None:
        try:
            record = backoffice.ticket_status(tx_id)  # ticket id = transaction id
        except TicketNotFound:
            return None
        return record if record.transaction_id == tx_id else None

    def posted_from_json(self, data: Mapping[str, Any]) -> Posted:
        return TicketRecord.from_json(data)

    # resume: the default (a FULFILLING ticket's queued post is posted again, idempotent by key)

    def receipt_data(self, tx: Transaction, *, kiosk_id: str, pending: bool) -> ReceiptData:
        """The payment receipt (`kiosk receipt reprint`); the printed ticket is the slip."""
        paid, fixed = fixed_at_paid(tx)
        kind = str(fixed.get("ticket_kind", "single"))
        labels = {"single": ("بلیت یک‌سفره", "Single-trip ticket"), "return": ("بلیت رفت و برگشت", "Return ticket")}
        fa, en = labels.get(kind, labels["single"])
        return ReceiptData(
            tx_id=tx.tx_id, kiosk_id=kiosk_id, kind=self.name, amount_rials=paid.amount_rials,
            at=dt.datetime.fromtimestamp(int(paid.at), dt.UTC), bill_id=tx.tx_id, payment_id="",
            service_label_fa=fa, service_label_en=en, tracking_code=tx.data.get("tracking_code", ""),
            rrn=fixed.get("rrn", ""), stan=fixed.get("stan", ""), masked_pan=fixed.get("masked_pan", ""),
            status="pending_settlement" if pending else "paid", journal_seq=paid.seq, journal_hash=paid.hash,
        )


QR_TICKET = QrTicketKind()
