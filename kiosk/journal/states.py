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
TERMINAL_STATES: frozenset[TxState] = frozenset(s for s, nxt in ALLOWED.items() if not nxt)
# REFUND_PENDING waits for an operator, not for `recover`, so it is not "open".
OPEN_STATES: frozenset[TxState] = frozenset(TxState) - TERMINAL_STATES - {_S.REFUND_PENDING}

# state text -> (the TxState, its plain text): one dict lookup instead of an enum call and a
# str() per append. TxState members hash and compare as their text, so either key works.
STATE_BY_TEXT: dict[str, tuple[TxState, str]] = {s.value: (s, s.value) for s in TxState}


def is_allowed(current: TxState | None, new: TxState) -> bool:
    """Whether a transaction at `current` (None: not started) may move to `new`."""
    if current is None:
        return new is TxState.CREATED
    return new in ALLOWED[current]


def parse_state(text: object) -> TxState | None:
    """The TxState named by `text`, or None when it names none (a damaged row)."""
    try:
        return STATE_BY_TEXT[text][0]  # type: ignore[index]
    except (KeyError, TypeError):
        return None
