"""Typed failures of the transit card layer (the reader's own are in devices.contracts)."""

from __future__ import annotations

from devices.base import InvalidData, MediaError


class CardCorrupt(MediaError):
    """The card cannot be trusted (no consistent purse copy, or copies that share a counter
    but disagree): it must be replaced."""

    def __init__(self, message: str, *, error_code: str = "cardCorrupt") -> None:
        super().__init__(message, error_code=error_code)


class IdentityCorrupt(CardCorrupt):
    """The identity block (serial, profile, issue date) fails its checks: the card cannot be
    tied to its account."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code="identityCorrupt")


class InsufficientBalance(InvalidData):
    def __init__(self, message: str) -> None:
        super().__init__(message, error_code="insufficientBalance")


class BalanceLimit(InvalidData):
    def __init__(self, message: str) -> None:
        super().__init__(message, error_code="balanceLimit")


class AlreadyOnCard(InvalidData):
    """A plan was asked for a transaction the card already carries (ask `outcome_of` with the
    journaled plan instead)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code="alreadyOnCard")


class CardChanged(InvalidData):
    """The card's counter or balance is not the one a write plan was made against: another
    transaction came between the plan and its write."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code="cardChanged")


class OutcomeUnknown(MediaError):
    """The card has moved on so far that neither its purse copies nor its log still show the
    planned transaction's counter: the card cannot say whether the write happened."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code="outcomeUnknown")


class PersonaliseFailed(MediaError):
    """The card did not read back what personalisation wrote (capture it, reverse the payment)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code="personaliseFailed")
