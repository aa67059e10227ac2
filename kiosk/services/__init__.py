"""Transaction kinds: what each kind of citizen transaction (fee payment, card top-up, card
sale, pending-load collection, QR ticket) owns on top of the shared money path — its typed
order, how it is posted to the back-office and asked about, how it resumes after a crash, and
its receipt. The money path keeps charge, reverse and complete; recovery, the outbox worker
and the receipt issuer look a transaction's kind up here (`kind_of`).

A kind registers itself by being listed in `_BUILTIN` below; an unknown kind in a journal
(written by a newer version) is left open for an operator, never treated as a fee."""

from __future__ import annotations

from kiosk.services.base import InvalidOrder, NotPaid, Order, Posted, TransactionKind, UnknownKind
from kiosk.services.fee import FEE_PAYMENT, FeeOrder, FeePaymentKind
from kiosk.services.topup import CARD_TOPUP, CardTopupKind, TopupOrder
from kiosk.services.ticket import QR_TICKET, QrTicketKind, TicketOrder
from kiosk.services.pending_load import PENDING_LOAD, PendingLoadKind, PendingLoadOrder
from kiosk.services.card_sale import CARD_SALE, CardSaleKind, CardSaleOrder
from kiosk.services.basket import FEE_BASKET, BasketOrder, FeeBasketKind
from kiosk.services.permit import TRAFFIC_PERMIT, PermitOrder, TrafficPermitKind

_BUILTIN: tuple[TransactionKind, ...] = (FEE_PAYMENT, CARD_TOPUP, QR_TICKET)
_BUILTIN += (PENDING_LOAD,)
_BUILTIN += (CARD_SALE,)
_BUILTIN += (FEE_BASKET,)
_BUILTIN += (TRAFFIC_PERMIT,)
KINDS: dict[str, TransactionKind] = {k.name: k for k in _BUILTIN}
BY_OUTBOX_KIND: dict[str, TransactionKind] = {o: k for k in _BUILTIN for o in k.outbox_kinds}


def kind_of(name: str) -> TransactionKind:
    """The kind a journal's `kind` column names; UnknownKind when this build has none."""
    try:
        return KINDS[name]
    except KeyError:
        raise UnknownKind(f"no transaction kind {name!r} in this build", kind=name) from None


def kind_of_outbox(outbox_kind: str) -> TransactionKind | None:
    """The kind that posts outbox items of `outbox_kind`, or None."""
    return BY_OUTBOX_KIND.get(outbox_kind)


__all__ = ["BY_OUTBOX_KIND", "CARD_TOPUP", "CardTopupKind", "TopupOrder", "FEE_PAYMENT", "FeeOrder", "FeePaymentKind", "InvalidOrder", "KINDS", "NotPaid",
           "Order", "Posted",
           "TransactionKind", "UnknownKind", "kind_of", "kind_of_outbox", "CARD_SALE", "CardSaleKind", "CardSaleOrder"]
__all__ += ["QR_TICKET", "QrTicketKind", "TicketOrder"]
__all__ += ["PENDING_LOAD", "PendingLoadKind", "PendingLoadOrder"]
__all__ += ["FEE_BASKET", "FeeBasketKind", "BasketOrder"]
__all__ += ["TRAFFIC_PERMIT", "PermitOrder", "TrafficPermitKind"]
