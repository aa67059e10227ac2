"""What a transaction kind owns (see kiosk/services/__init__.py): the contract the money path,
recovery, the outbox worker and the receipt issuer program against, and the typed order."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from kiosk.errors import KioskError
from kiosk.journal import JournalEntry, Transaction, TxState

if TYPE_CHECKING:
    from kiosk.backoffice_client import BackofficeClient
    from kiosk.money_path import MoneyPath, SettleResult
    from kiosk.receipts import ReceiptData

O = TypeVar("O", bound="Order")


class InvalidOrder(KioskError):
    """A journaled order that does not read back as its kind's order (a damaged or foreign
    row): the transaction is left for an operator."""

    key: ClassVar[str] = "service.invalid_order"
    fa: ClassVar[str] = "اطلاعات سفارش تراکنش {tx} خوانا نیست؛ کارشناس بررسی می‌کند."
    en: ClassVar[str] = "The order of transaction {tx} cannot be read; an operator will check it."


class NotPaid(KioskError):
    """A receipt was asked for a transaction with no PAID row: nothing was charged."""

    key: ClassVar[str] = "receipt.not_paid"
    fa: ClassVar[str] = "برای تراکنش {tx} پرداختی ثبت نشده است؛ رسیدی صادر نمی‌شود."
    en: ClassVar[str] = "Transaction {tx} has no recorded payment, so it has no receipt."
    money: ClassVar[str] = "none"


class UnknownKind(KioskError):
    """A journal row of a kind this build does not know (written by a newer version)."""

    key: ClassVar[str] = "service.unknown_kind"
    fa: ClassVar[str] = "نوع تراکنش {kind} در این نسخه شناخته نیست؛ کارشناس بررسی می‌کند."
    en: ClassVar[str] = "Transaction kind {kind} is not known to this version; an operator will check it."


def paid_entry(tx: Transaction) -> JournalEntry:
    """The transaction's PAID row: its time, seq and hash are what the receipt signs."""
    for entry in tx.entries:
        if entry.state == TxState.PAID:
            return entry
    raise NotPaid(f"{tx.tx_id} has no PAID row", tx=tx.tx_id)


def fixed_at_paid(tx: Transaction) -> tuple[JournalEntry, dict[str, Any]]:
    """The PAID row and the data of the rows up to and including it: what a receipt signs
    (data a later row adds cannot change it)."""
    paid = paid_entry(tx)
    fixed: dict[str, Any] = {}
    for entry in tx.entries:
        fixed.update(entry.data)
        if entry is paid:
            break
    return paid, fixed


class Order(abc.ABC):
    """What the citizen asked for, typed; journaled with CREATED (`to_journal`) and read back
    from the transaction's data (`from_journal`), so the keys are spelled in one place."""

    @abc.abstractmethod
    def to_journal(self) -> dict[str, Any]:
        """The CREATED row's data."""

    @classmethod
    @abc.abstractmethod
    def from_journal(cls: type[O], data: Mapping[str, Any]) -> O:
        """Read the order back; InvalidOrder when the data is not one."""


class Posted(Protocol):
    """What the back-office answered a post with (a fee settlement, a card load)."""

    tracking_code: str

    def to_dict(self) -> dict[str, Any]: ...


class TransactionKind(abc.ABC):
    """One kind of citizen transaction on the shared money path.

    name         the journal's `kind` of its transactions
    outbox_kind  the outbox item kind of its back-office post (its idempotency key is the
                 transaction id)
    refusals     exceptions of `post` that are a definite refusal of this transaction (the
                 money path reverses after asking); anything else from `post` is retried
    """

    name: ClassVar[str]
    outbox_kind: ClassVar[str]
    #: every outbox kind this kind queues (the main post first); a card kind also queues the
    #: pending action of a write whose card did not come back
    outbox_kinds: ClassVar[tuple[str, ...]] = ()
    #: outbox kinds that may still be posted once the transaction is POSTED or COMPLETED (a
    #: post that records a fact about it and moves no state)
    late_outbox_kinds: ClassVar[tuple[str, ...]] = ()
    order_type: ClassVar[type[Order]]
    refusals: ClassVar[tuple[type[BaseException], ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if getattr(cls, "outbox_kind", None) and not cls.__dict__.get("outbox_kinds"):
            cls.outbox_kinds = (cls.outbox_kind,)

    def order(self, tx: Transaction) -> Order:
        return self.order_type.from_journal(tx.data)

    # --- the back-office post --------------------------------------------------------------
    @abc.abstractmethod
    def post_payload(self, tx: Transaction, *, paid_at: str) -> dict[str, Any]:
        """The body queued in the outbox (the journal adds its anchor)."""

    @abc.abstractmethod
    def post(self, backoffice: BackofficeClient, payload: Mapping[str, Any], *, idempotency_key: str,
             outbox_kind: str) -> Posted:
        """Post a queued body of `outbox_kind` (blocking; the money path runs it in a thread).
        Raises BackofficeUnavailable to be retried, one of `refusals` for a definite refusal."""

    def ack_states(self, posted: Posted, outbox_kind: str) -> list[tuple[TxState, dict[str, Any] | None]]:
        """The states journaled in the same commit that acknowledges a post. A kind fulfilled
        by its post (a fee): FULFILLED and POSTED; a card kind, FULFILLED at the card write
        already: POSTED."""
        return [(TxState.FULFILLED, self.fulfilled_data(posted)), (TxState.POSTED, None)]

    @abc.abstractmethod
    def find_posted(self, backoffice: BackofficeClient, tx_id: str) -> Posted | None:
        """What the back-office holds for this transaction, None when it holds nothing (its
        own answer); BackofficeUnavailable when it cannot say (blocking)."""

    @abc.abstractmethod
    def posted_from_json(self, data: Mapping[str, Any]) -> Posted:
        """A Posted back from the outbox row's stored answer."""

    def fulfilled_data(self, posted: Posted) -> dict[str, Any]:
        """What FULFILLED journals of the back-office's answer."""
        return {"tracking_code": posted.tracking_code}

    # --- after a crash ---------------------------------------------------------------------------
    async def resume(self, money: MoneyPath, tx: Transaction) -> SettleResult | str:
        """Carry on a transaction recovery found at FULFILLING or UNCERTAIN. The default is a
        kind fulfilled by its post alone (a fee): post the queued body again (idempotent by
        key), or — no queued post — ask the back-office whether it holds it. Returns the
        SettleResult, or a word saying why it stays open. Kinds that fulfil on a device first
        (a card write) override this."""
        from kiosk.backoffice_client import BackofficeUnavailable

        items = money.pending_posts(tx.tx_id)
        if items:
            return await money.settle(items[0])
        if tx.state != TxState.FULFILLING:
            return "left_open"  # UNCERTAIN belongs to kinds that write to a device
        try:  # no queued post (acknowledged, or the journal was cut): is it settled?
            found = await money.find_settlement(tx.tx_id)
        except BackofficeUnavailable:
            return "backoffice_unreachable"
        if found is None:
            return "no_outbox_item"  # an operator looks: nothing proves either way
        return await money.journal_settled(tx.tx_id, found)

    # --- the receipt ----------------------------------------------------------------------------
    @abc.abstractmethod
    def receipt_data(self, tx: Transaction, *, kiosk_id: str, pending: bool) -> ReceiptData:
        """The signed receipt of a paid transaction of this kind."""
