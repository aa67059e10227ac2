"""What callers hand the journal, checked and canonicalised once: row data, outbox payloads,
state names, tx ids and kinds. Refuses sensitive data with the rule kiosk.sensitive owns."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kiosk.journal.chain import canonical_json, decode_json
from kiosk.journal.errors import InvalidJournalData, SensitiveDataRejected
from kiosk.journal.states import STATE_BY_TEXT, TxState
from kiosk.sensitive import unstorable_reason

#: control characters: never inside a tx_id or kind, so the hash separator is unambiguous
CONTROL = re.compile(r"[\x00-\x1f\x7f]")

_SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})


def prepare_data(data: Mapping[str, Any] | None, what: str, tx_id: str | int, state: str = ""
                 ) -> tuple[str, dict[str, Any]]:
    """Validate and canonicalise caller data for a journal row, once.

    Returns the canonical JSON text (what is stored and hashed) and the entry's own copy of
    the data, equal to decoding that text. For a flat dict of plain scalars the private copy
    made before encoding already is that value, so the text is not decoded back. The place
    named in an error message is only formatted when there is an error.
    """
    if data is None:
        return "{}", {}
    if type(data) is not dict and not isinstance(data, Mapping):
        raise InvalidJournalData(
            f"{_where(what, tx_id, state)}: data must be a dict, got {type(data).__name__}")
    snapshot = dict(data)  # ours alone: the caller may change theirs after we return
    text = encode_checked(snapshot, what, tx_id, state)
    for key, value in snapshot.items():
        if type(key) is not str or type(value) not in _SCALAR_TYPES:
            return text, decode_json(text)
    return text, snapshot


def _where(what: str, tx_id: str | int, state: str = "") -> str:
    return f"{what} {tx_id} {state}".rstrip()


def encode_checked(value: dict[str, Any], what: str, tx_id: str | int, state: str) -> str:
    """Canonical JSON of caller data, or a typed error; runs the sensitive-data net on it.

    The net runs over the canonical JSON text rather than walking the value: canonical JSON
    separates values with "," and quotes, so a card-shaped run can only come from inside one
    string or number — a card number stored as an int is refused too.
    """
    try:
        text = canonical_json(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidJournalData(
            f"{_where(what, tx_id, state)}: data is not plain JSON ({exc})") from exc
    if not text.isascii():
        try:  # a lone surrogate could not be hashed or stored as UTF-8
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidJournalData(
                f"{_where(what, tx_id, state)}: data is not valid Unicode text") from exc
    reason = unstorable_reason(text)
    if reason is not None:
        raise SensitiveDataRejected(f"{_where(what, tx_id, state)}: {reason}")
    return text


def prepare_payload(data: Mapping[str, Any] | None, where: str) -> str:
    """Validate and canonicalise an outbox payload or response; the text returned is what is
    stored."""
    if data is None:
        return "{}"
    if not isinstance(data, Mapping):
        raise InvalidJournalData(f"{where}: data must be a dict, got {type(data).__name__}")
    return encode_checked(dict(data), where, "", "")


def state_pair(state: TxState | str) -> tuple[TxState, str]:
    """(the TxState, its text) for a TxState or its name; InvalidJournalData otherwise."""
    try:
        return STATE_BY_TEXT[state]
    except (KeyError, TypeError) as exc:  # TypeError: an unhashable value
        raise InvalidJournalData(f"unknown transaction state {state!r}") from exc


def coerce_state(state: TxState | str) -> TxState:
    return state_pair(state)[0]
