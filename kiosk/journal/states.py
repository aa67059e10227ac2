"""Transaction states and the moves between them: the one table every writer and verifier of
the journal checks against. Pure: no I/O, no project imports."""

from __future__ import annotations

import enum


class TxState(enum.StrEnum):
    """Where a citizen transaction stands. Only ever appended, never overwritten."""

    CREATED = "CREATED"
    PAYING = "PAYING"
    PAID = "PAID"
    DECLINED = "DECLINED"
    CANCELLED = "CANCELLED"
    FULFILLING = "FULFILLING"
    FULFILLED = "FULFILLED"
    POSTED = "POSTED"
    COMPLETED = "COMPLETED"
    REVERSING = "REVERSING"
    REVERSED = "REVERSED"
    REFUND_PENDING = "REFUND_PENDING"
    UNCERTAIN = "UNCERTAIN"


_S = TxState
ALLOWED: dict[TxState, frozenset[TxState]] = {
    _S.CREATED: frozenset({_S.PAYING, _S.CANCELLED}),
    _S.PAYING: frozenset({_S.PAID, _S.DECLINED}),
    _S.PAID: frozenset({_S.FULFILLING, _S.REVERSING}),
    _S.FULFILLING: frozenset({_S.FULFILLED, _S.REVERSING, _S.UNCERTAIN}),
    _S.UNCERTAIN: frozenset({_S.FULFILLED, _S.REVERSING}),
    _S.FULFILLED: frozenset({_S.POSTED}),
    _S.POSTED: frozenset({_S.COMPLETED}),
    # REVERSING again: a retried reversal journals the new message reference it goes out under
    # (a terminal refuses a ServiceID used again), so every request sent can be asked about
    _S.REVERSING: frozenset({_S.REVERSING, _S.REVERSED, _S.REFUND_PENDING}),
    _S.REFUND_PENDING: frozenset({_S.REVERSED}),
    _S.COMPLETED: frozenset(),
    _S.DECLINED: frozenset(),
    _S.CANCELLED: frozenset(),
    _S.REVERSED: frozenset(),
}

#: Kinds that move value but no money at the kiosk: a top-up paid elsewhere (USSD, the city's
#: app) and collected onto a card here. Nothing is charged, so there is no PAYING and nothing
#: to reverse: CREATED goes straight to FULFILLING (the card write plan, journaled before the
#: write). FULFILLING → CANCELLED is the back-office refusing the claim on the value before
#: anything was written (already collected elsewhere); once the write may have happened
#: (UNCERTAIN) the value is on the card or owed to it, never cancelled.
VALUE_ONLY_KINDS: frozenset[str] = frozenset({"pending_load"})
VALUE_ONLY_ALLOWED: dict[TxState, frozenset[TxState]] = {
    **{state: frozenset() for state in TxState},
    _S.CREATED: frozenset({_S.FULFILLING, _S.CANCELLED}),
    _S.FULFILLING: frozenset({_S.FULFILLED, _S.UNCERTAIN, _S.CANCELLED}),
    _S.UNCERTAIN: frozenset({_S.FULFILLED}),
    _S.FULFILLED: frozenset({_S.POSTED}),
    _S.POSTED: frozenset({_S.COMPLETED}),
}
#: the table of a kind that is not ALLOWED's (every row carries its kind, so the journal's
#: append and the chain verifier look the table up per transaction)
ALLOWED_BY_KIND: dict[str, dict[TxState, frozenset[TxState]]] = {k: VALUE_ONLY_ALLOWED for k in VALUE_ONLY_KINDS}

#: Several fee slips paid with one card payment (kiosk.services.basket): each bill is settled
#: on its own, and each step of each bill is a FULFILLING row of its own, journaled before and
#: after money moves — a bill's post queued, settled or refused, the refund of a refused bill's
#: share sent (with the message reference it goes out under), confirmed or refused. So
#: FULFILLING → FULFILLING. A share whose refund the terminal refused ends the basket in
#: REFUND_PENDING for an operator, once every other bill is settled or refunded
#: (FULFILLING → REFUND_PENDING). Every bill refused: the whole sale is reversed as usual.
BASKET_KINDS: frozenset[str] = frozenset({"fee_basket"})
BASKET_ALLOWED: dict[TxState, frozenset[TxState]] = {
    **ALLOWED,
    _S.FULFILLING: ALLOWED[_S.FULFILLING] | {_S.FULFILLING, _S.REFUND_PENDING},
}
ALLOWED_BY_KIND.update({k: BASKET_ALLOWED for k in BASKET_KINDS})

TERMINAL_STATES: frozenset[TxState] = frozenset(s for s, nxt in ALLOWED.items() if not nxt)
# REFUND_PENDING waits for an operator, not for `recover`, so it is not "open".
OPEN_STATES: frozenset[TxState] = frozenset(TxState) - TERMINAL_STATES - {_S.REFUND_PENDING}

# state text -> (the TxState, its plain text): one dict lookup instead of an enum call and a
# str() per append. TxState members hash and compare as their text, so either key works.
STATE_BY_TEXT: dict[str, tuple[TxState, str]] = {s.value: (s, s.value) for s in TxState}


def transitions(kind: str) -> dict[TxState, frozenset[TxState]]:
    """The state table of transactions of `kind`: ALLOWED, or a value-only kind's."""
    return ALLOWED_BY_KIND.get(kind, ALLOWED)


def is_allowed(current: TxState | None, new: TxState, kind: str = "") -> bool:
    """Whether a transaction of `kind` at `current` (None: not started) may move to `new`."""
    if current is None:
        return new is TxState.CREATED
    return new in ALLOWED_BY_KIND.get(kind, ALLOWED)[current]


def parse_state(text: object) -> TxState | None:
    """The TxState named by `text`, or None when it names none (a damaged row)."""
    try:
        return STATE_BY_TEXT[text][0]  # type: ignore[index]
    except (KeyError, TypeError):
        return None
