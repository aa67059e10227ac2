"""kiosk.json is checked against a schema made from KioskSettings' own fields: a malformed or
misspelt file is refused naming the bad key, in one line at the CLI (exit 1), and a field
added to KioskSettings is accepted without touching the checker."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk.settings import (
    InvalidSettings,
    KioskSettings,
    NotConfigured,
    allowed_keys,
    load_settings,
    schema_problem,
)

KIOSK = [sys.executable, "-m", "kiosk.cli"]
DEVICE = {"name": "dispenser", "type": "dispenser-sim"}


def write(data: Path, content: object) -> None:
    text = content if isinstance(content, str) else json.dumps(content)
    (data / "kiosk.json").write_text(text, encoding="utf-8")


def test_a_valid_file_loads_with_the_new_fields_defaulted(tmp_path: Path) -> None:
    write(tmp_path, {"kiosk_id": "kiosk-7", "pay_timeout_s": 30, "devices": [DEVICE]})
    settings = load_settings(tmp_path)
    assert settings.kiosk_id == "kiosk-7" and settings.pay_timeout_s == 30
    assert settings.devices[0].type == "dispenser-sim"
    assert settings.min_free_bytes == 50 * 2**20
    assert settings.background_recovery_interval_s == 30.0


def test_the_new_fields_can_be_set(tmp_path: Path) -> None:
    write(tmp_path, {"min_free_bytes": 10 * 2**20, "background_recovery_interval_s": 5})
    settings = load_settings(tmp_path)
    assert (settings.min_free_bytes, settings.background_recovery_interval_s) == (10 * 2**20, 5)


def test_saved_settings_load_back(tmp_path: Path) -> None:
    original = KioskSettings(kiosk_id="kiosk-9", min_free_bytes=1234, extra={"site": "Tajrish"})
    original.save(tmp_path / "kiosk.json")
    assert load_settings(tmp_path) == original


@pytest.mark.parametrize("content, needles", [
    ({"kiosk_id": "k", "pay_timout_s": 3}, ["'pay_timout_s'", "did you mean 'pay_timeout_s'"]),
    ({"kioskid": "k"}, ["'kioskid'", "'kiosk_id'"]),
    ({"colour": "red"}, ["unknown key 'colour'", "allowed:"]),
    ({"pay_timeout_s": "90"}, ["'pay_timeout_s'", "number"]),
    ({"pay_timeout_s": True}, ["'pay_timeout_s'"]),
    ({"pay_timeout_s": 0}, ["'pay_timeout_s'", "more than 0"]),
    ({"min_free_bytes": 1.5}, ["'min_free_bytes'", "whole number"]),
    ({"min_free_bytes": -1}, ["'min_free_bytes'"]),
    ({"kiosk_id": 7}, ["'kiosk_id'", "string"]),
    ({"extra": []}, ["'extra'", "object"]),
    ({"devices": {"name": "x"}}, ["'devices'", "list"]),
    ({"devices": ["printer"]}, ["devices[0]", "'name'"]),
    ({"devices": [{"type": "escpos"}]}, ["devices[0]", "'name'"]),
    ({"devices": [{"name": "printer"}]}, ["devices[0]", "'type'"]),
    ({"devices": [{"name": "printer", "type": "escpso"}]}, ["'escpso'", "did you mean 'escpos'"]),
    ({"devices": [DEVICE, DEVICE]}, ["'dispenser'", "twice"]),
    ([1, 2], ["one JSON object"]),
    ('{"kiosk_id": "k",}', ["not JSON", "line 1"]),
    ("", ["not JSON"]),
])
def test_a_bad_file_is_refused_naming_what_is_wrong(tmp_path: Path, content: object, needles: list[str]) -> None:
    write(tmp_path, content)
    with pytest.raises(InvalidSettings) as caught:
        load_settings(tmp_path)
    message = caught.value.message("en")
    assert str(tmp_path / "kiosk.json") in message
    for needle in needles:
        assert needle in message, message
    assert isinstance(caught.value, NotConfigured)  # refused as a missing configuration is


def test_allowed_keys_follow_the_dataclass() -> None:
    assert allowed_keys() == tuple(f.name for f in dataclasses.fields(KioskSettings))

    @dataclasses.dataclass(frozen=True)
    class Later(KioskSettings):  # a field added tomorrow needs no change to the checker
        transit_topup_max_rials: int = 5_000_000

    assert "transit_topup_max_rials" in allowed_keys(Later)
    assert schema_problem({"transit_topup_max_rials": 1}, Later) is None
    assert "whole number" in str(schema_problem({"transit_topup_max_rials": "many"}, Later))
    assert Later.from_dict({"transit_topup_max_rials": 7}).transit_topup_max_rials == 7
    assert "unknown key" in str(schema_problem({"transit_topup_max_rials": 1}))  # not a field today


@pytest.mark.parametrize("command", ["doctor", "recover"])
def test_the_cli_says_it_in_one_line_and_exits_1(tmp_path: Path, command: str) -> None:
    write(tmp_path, {"kiosk_id": "k", "pay_timout_s": 3})
    out = subprocess.run(KIOSK + [command, "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1, out.stderr
    assert "pay_timout_s" in out.stderr and "not valid" in out.stderr
    assert not (tmp_path / "journal.sqlite3").exists()  # nothing started


def test_malformed_json_at_the_cli(tmp_path: Path) -> None:
    write(tmp_path, "{not json")
    out = subprocess.run(KIOSK + ["doctor", "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr and out.stderr.count("\n") == 1, out.stderr
    assert "not JSON" in out.stderr


def test_top_up_presets_must_be_whole_rials() -> None:
    from kiosk.settings import schema_problem

    assert schema_problem({"topup_presets_rials": [100_000, "200000"]}) == (
        "'topup_presets_rials' must be a list of whole numbers, not [100000, \"200000\"]")
    assert schema_problem({"topup_presets_rials": [100_000, True]}) is not None
    assert schema_problem({"topup_presets_rials": [100_000, 200_000]}) is None
