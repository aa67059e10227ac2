"""kiosk.sensitive: the one card-number, masking, national-code and digit rule set."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiosk.sensitive import (
    find_card_number,
    is_masked_pan,
    luhn_ok,
    mask_card,
    mask_national_code,
    national_code_ok,
    redact,
    to_ascii_digits,
    to_persian_digits,
    unstorable_reason,
)

CARD = "6037991234567893"
FA = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")


@pytest.mark.parametrize("masked", [
    "6037 99** **** 1234", "6037.99**.****.1234", "603799******1234", "411111 **** 1111",
    "6037-99XX-XXXX-1234", "************1234", "603799******1234".translate(FA),
])
def test_masked_pans_in_any_grouping_are_accepted(masked: str) -> None:
    assert is_masked_pan(masked)


@pytest.mark.parametrize("not_masked", [
    "6037.9912.3456.7893", CARD, "6037 9912 3456 7893", "6037-9912-3456-7893",
    "6037991*****12345",   # 11 digits visible
    "6037991234******34",  # first 10 visible
    "", "****", "603799", "abc", "6037 99** **** 1234 5678 9",
])
def test_full_or_malformed_pans_are_refused(not_masked: str) -> None:
    assert not is_masked_pan(not_masked)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789*X .-", max_size=24))
def test_a_masked_pan_never_shows_more_than_ten_digits(text: str) -> None:
    if is_masked_pan(text):
        assert sum(c.isdigit() for c in text) <= 10 and not find_card_number(text)


def test_card_numbers_are_found_in_every_usual_writing_and_ids_are_not() -> None:
    for written in (CARD, "6037 9912 3456 7893", "6037-9912-3456-7893", CARD.translate(FA),
                    f"paid {CARD} ok"):
        assert find_card_number(written), written
    for other in ("6037991234567898", "kiosk-demo-01-20261128-0349794b1daf46",
                  "77483178001420000001770160", "603799******7893"):
        assert not find_card_number(other), other


def test_luhn_masks_and_digits() -> None:
    assert luhn_ok(CARD) and luhn_ok(CARD.translate(FA)) and not luhn_ok("6037991234567898")
    assert not luhn_ok("") and not luhn_ok("6037 9912")
    assert mask_card("6037 9912 3456 7893") == "603799******7893"
    assert national_code_ok("0012345679") and national_code_ok("۰۰۱۲۳۴۵۶۷۹")
    assert not national_code_ok("1111111111") and not national_code_ok("0012345678")
    assert mask_national_code("0012345679") == "001****679"
    assert to_ascii_digits("۱۲۳٤٥٦") == "123456" and to_persian_digits(1405) == "۱۴۰۵"
    assert to_persian_digits("٤٥٦ ok") == "۴۵۶ ok"


def test_redact_masks_cards_and_national_codes_in_any_digits() -> None:
    assert redact(f"card {CARD}") == "card 603799******7893"
    assert redact("card 6037.9912.3456.7893") == "card 603799******7893"
    assert redact(f"card {CARD.translate(FA)}") == "card ۶۰۳۷۹۹******۷۸۹۳"
    assert redact("code ۰۰۱۲۳۴۵۶۷۹") == "code ۰۰۱****۶۷۹"
    text = "tx kiosk-demo-01-20261128-0349794b1daf46 at 2026-11-28, bill 7748317800142"
    assert redact(text) == text


def test_the_storage_net_refuses_secrets_and_full_identities_only() -> None:
    assert unstorable_reason('{"pin":"1234"}') is not None
    assert unstorable_reason('{"national_code":"0012345679"}') is not None
    assert unstorable_reason(f'{{"note":"{CARD}"}}') is not None
    assert unstorable_reason('{"card":"603799******7893","national_code":"001****679"}') is None


def test_a_digit_run_inside_a_hex_digest_is_not_a_card_number() -> None:
    # found by CI: a settlement carries the journal's head hash, and a sha256 hex digest holds
    # a Luhn-valid run of 16+ digits often enough to stop a settlement after the charge
    import hashlib
    import json

    from kiosk.sensitive import find_card_number, luhn_ok, unstorable_reason

    card = "6037991234561235"
    assert luhn_ok(card)
    digest = "ab" + card + "cdef" + "0" * (64 - 6 - len(card))
    assert not find_card_number(digest)
    assert unstorable_reason(json.dumps({"journal_head": digest})) is None
    # real digests: none is refused, whatever digit runs they hold
    refused = [h for h in (hashlib.sha256(str(i).encode()).hexdigest() for i in range(20_000))
               if unstorable_reason(json.dumps({"journal_head": h}, separators=(",", ":")))]
    assert refused == []
    # a card number as people write it is still found, in text and in JSON
    for text in (card, f"card {card}", f"pan:{card}", " ".join(card[k:k + 4] for k in range(0, 16, 4)), f'{{"x":"{card}"}}',
                 card.translate(str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹"))):
        assert find_card_number(text), text
