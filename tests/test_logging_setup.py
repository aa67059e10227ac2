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


# --- the whole process's output, with python-escpos's basicConfig() in play ----------------

import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402

PAN = "6037991234567893"  # passes Luhn
PAN_FA = PAN.translate(str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹"))
NATIONAL_CODE = "0012345679"  # passes the national-code check
FULL_NUMBERS = [PAN, PAN_FA, "6037 9912 3456 7893", "6037-9912-3456-7893", NATIONAL_CODE,
                "9912345673"]

_SCRIPT = textwrap.dedent(r'''
    import logging, sys
    import escpos.capabilities  # calls logging.basicConfig() at import: a plain root handler
    assert logging.getLogger().handlers, "escpos no longer calls basicConfig; test is moot"
    from kiosk.logging_setup import configure
    configure("INFO")
    PAN, PAN_FA, NC = sys.argv[1], sys.argv[2], sys.argv[3]
    names = ["", "kiosk.x", "escpos", "thirdparty.lib"]
    for i, name in enumerate(names):
        log = logging.getLogger(name)
        log.warning("m%d-plain card %s", i, PAN)
        log.warning("m%d-spaces card 6037 9912 3456 7893 code %s", i, NC)
        log.error("m%d-dashes card 6037-9912-3456-7893", i)
        log.warning(f"m{i}-persian card {PAN_FA}")
        try:
            raise ValueError(f"declined card {PAN} of citizen {NC}")
        except ValueError:
            log.exception("m%d-exc failed", i)
    # a library that hangs its own handler on its own logger still gets masked records
    own = logging.getLogger("otherlib")
    own.addHandler(logging.StreamHandler(sys.stdout))
    own.propagate = False
    own.warning("m-own card %s", PAN)
    # escpos imported again, or a second basicConfig, changes nothing once configured
    logging.basicConfig()
    logging.getLogger("late").warning("m-late code 9912345673")
''')


def test_no_full_number_reaches_any_output_and_each_message_appears_once(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, PAN, PAN_FA, NATIONAL_CODE],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={**__import__("os").environ, "PYTHONPATH": str(
                              __import__("pathlib").Path(__file__).resolve().parent.parent)})
    assert proc.returncode == 0, proc.stderr
    output = proc.stdout + proc.stderr
    for number in FULL_NUMBERS:
        assert number not in output, f"{number!r} leaked"
    for i in range(4):
        for tag in ("plain", "spaces", "dashes", "persian", "exc"):
            assert output.count(f"m{i}-{tag} ") == 1, (i, tag, output)
    assert output.count("m-own ") == 1 and output.count("m-late ") == 1
    lines = [json.loads(line) for line in proc.stderr.splitlines()]
    by_msg = {line["msg"].split()[0]: line for line in lines}
    assert by_msg["m0-plain"]["msg"] == "m0-plain card 603799******7893"
    assert by_msg["m1-spaces"]["msg"] == "m1-spaces card 603799******7893 code 001****679"
    assert by_msg["m3-persian"]["msg"] == "m3-persian card ۶۰۳۷۹۹******۷۸۹۳"
    assert "603799******7893" in by_msg["m2-exc"]["exc"] and "001****679" in by_msg["m2-exc"]["exc"]
    assert by_msg["m2-exc"]["logger"] == "escpos"


def test_configure_removes_handlers_it_did_not_install_and_is_idempotent() -> None:
    from kiosk.logging_setup import configure
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    factory = logging.getLogRecordFactory()
    try:
        foreign = logging.StreamHandler()
        root.addHandler(foreign)
        configure("INFO")
        configure("DEBUG")
        assert foreign not in root.handlers and len(root.handlers) == 1
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
        assert root.level == logging.DEBUG
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.setLogRecordFactory(factory)  # the rest of the session keeps its own


def test_redaction_masks_national_codes_but_leaves_other_ten_digit_numbers() -> None:
    assert redact("citizen 0012345679 paid") == "citizen 001****679 paid"
    assert redact("ts 1764490000 ok") == "ts 1764490000 ok"  # fails the national-code check
    assert redact("bill 7748317800142 and 6037.9912.3456.7893") == \
        "bill 7748317800142 and 603799******7893"
