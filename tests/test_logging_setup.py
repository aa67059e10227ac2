"""The last net in the logs: card-number shaped digits never reach a log line whole."""

from __future__ import annotations

import json
import logging

import pytest

from kiosk.logging_setup import JsonFormatter, redact


@pytest.mark.parametrize("written", ["6037991234561234", "6037 9912 3456 1234", "6037-9912-3456-1234"])
def test_card_numbers_in_any_usual_writing_are_masked_to_first6_last4(written: str) -> None:
    assert redact(f"paid with {written} today") == "paid with 603799******1234 today"


def test_ids_and_dates_with_dashes_are_left_alone() -> None:
    text = "tx kiosk-demo-01-20261128-0349794b1daf46 at 2026-11-28, bill 7748317800142"
    assert redact(text) == text


def test_json_log_lines_carry_the_masked_form_only() -> None:
    record = logging.LogRecord("kiosk", logging.INFO, __file__, 1, "card %s", ("6037 9912 3456 1234",), None)
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "card 603799******1234"
