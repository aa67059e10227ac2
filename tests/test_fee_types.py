"""The fee types' identifiers as the keypad takes them, the plate picker, masking, and the
message parameters every UI renders alike."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from kiosk.fee_types import (FEE_TYPES, PLATE_LETTERS, InvalidIdentifier, InvalidPlate, check_identifier,
                             mask_identifier, plate_text)
from kiosk.identifiers import InvalidNationalCode
from kiosk.messages import text
from kiosk.scripted_ui import ScriptedUI
from kiosk.ui_port import DONE, CitizenLeft, Choice, UIPort


def test_a_national_code_is_checked_as_typed() -> None:
    waste = FEE_TYPES["waste_charge"]
    assert check_identifier(waste, "۰۰۸۴۱۳۷۲۵۸") == "0084137258"  # Persian digits from the keypad
    with pytest.raises(InvalidNationalCode):
        check_identifier(waste, "0084137259")  # the check digit is wrong
    with pytest.raises(InvalidIdentifier):
        check_identifier(waste, "12345")


def test_codes_and_licences_are_digits_of_a_sane_length() -> None:
    assert check_identifier(FEE_TYPES["business_tax"], "14020063918") == "14020063918"
    for bad in ("12a456", "123", "1" * 17):
        with pytest.raises(InvalidIdentifier):
            check_identifier(FEE_TYPES["renovation_tax"], bad)


def test_a_plate_is_two_digits_a_letter_three_digits_and_the_region() -> None:
    assert plate_text("۲۲", "ب", "365", "10") == "22 ب 365 ایران 10"
    assert PLATE_LETTERS[1] == "ب"
    for parts in (("2", "ب", "365", "10"), ("22", "X", "365", "10"), ("22", "ب", "36", "10"), ("22", "ب", "365", "1a")):
        with pytest.raises(InvalidPlate):
            plate_text(*parts)


def test_masking_shows_no_full_identifier() -> None:
    assert mask_identifier(FEE_TYPES["waste_charge"], "0084137258") == "008****258"
    assert mask_identifier(FEE_TYPES["business_tax"], "14020063918") == "14*******18"
    assert mask_identifier(FEE_TYPES["vehicle_tax"], "22 ب 365 ایران 10") == "22 ب *** ایران 10"


def test_a_plate_takes_ascii_persian_or_arabic_digits_but_no_other_script() -> None:
    assert plate_text("٢٢", "ب", "۳۶۵", "10") == "22 ب 365 ایران 10"
    with pytest.raises(InvalidPlate):
        plate_text("22", "ب", "365", "1\uff10")  # a fullwidth zero would make another plate
    with pytest.raises(InvalidIdentifier):
        check_identifier(FEE_TYPES["business_tax"], "1402006391\uff18")


def test_message_parameters_render_per_language() -> None:
    params = {"fee_type_key": "slips.type.waste_charge", "period": "مهر ۱۴۰۴", "amount_rials": 1_250_000,
              "due": dt.date(2025, 11, 1), "status_key": "slips.status.unpaid"}
    assert text("slips.item", "fa", **params) == "بهای خدمات پسماند — مهر ۱۴۰۴ — ۱٬۲۵۰٬۰۰۰ ریال — مهلت ۱۴۰۴/۰۸/۱۰ — پرداخت‌نشده"
    # the period's Jalali month named in English on an English screen (it was left in Persian)
    assert text("slips.item", "en", **params) == "Waste collection charge — Mehr 1404 — 1,250,000 rials — due 1404/08/10 — unpaid"


class _OneAtATime(UIPort):
    """A UI with no check boxes: choose_many falls back to the port's default."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self.offered: list[list[str]] = []

    async def show_step(self, key, **params): ...  # noqa: ANN001, ANN201
    async def ask_digits(self, key, *, min_len, max_len): raise CitizenLeft  # noqa: ANN001, ANN201
    async def confirm(self, key, **params): return True  # noqa: ANN001, ANN201
    async def show_error(self, key, **params): ...  # noqa: ANN001, ANN201
    async def show_outcome(self, outcome): ...  # noqa: ANN001, ANN201

    async def choose(self, key, options, **params):  # noqa: ANN001, ANN201
        self.offered.append([o.id for o in options])
        return self.answers.pop(0)


def test_choose_many_by_default_asks_one_at_a_time_with_done_after_the_minimum() -> None:
    ui = _OneAtATime(["c", "a", DONE])
    options = [Choice("a", "x"), Choice("b", "x"), Choice("c", "x")]
    assert asyncio.run(ui.choose_many("k", options)) == ["a", "c"]  # in the options' order
    assert ui.offered == [["a", "b", "c"], ["a", "b", DONE], ["b", DONE]]


def test_a_script_answers_choices_by_position_and_many_by_first_n() -> None:
    ui = ScriptedUI({"k": "#1", "m": "first:2", "bad": "first:0"})
    options = [Choice("a", "x"), Choice("b", "x"), Choice("c", "x")]
    assert asyncio.run(ui.choose("k", options)) == "b"
    assert asyncio.run(ui.choose_many("m", options)) == ["a", "b"]
    with pytest.raises(CitizenLeft):
        asyncio.run(ui.choose_many("bad", options))
