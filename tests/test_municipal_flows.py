"""Issue 9 end to end: the municipal flows through a KioskContext on the embedded demo
environment — the real back-office on loopback (SQLite), the nexo driver against its
simulator, the ESC/POS driver against the printer emulator — driven by a scripted citizen.

  M1  look up by national code (the check digit refused as typed), print two slips: the paper
      carries each slip's 26-digit barcode; the transcript never holds the full national code
  M2  look up by plate (letter picker) and pay two slips with one card payment: both settled
  M3  a certificate for a business whose slips are all paid: signed, verifiable offline
  M4  a certificate with slips outstanding: the citizen pays them, then gets the certificate
  M5  a traffic-zone permit: paid, recorded, found by the camera check; the same plate and day
      again is refused before any money moves
  M6  a crash mid-permit is recovered to one recorded permit or the money back
  M7  the four demo scripts run from the command line and say ok
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, TypeVar

import pytest
import requests

from backoffice.models import ServiceRole
from backoffice.seed import seed_demo
from kiosk.backoffice_client import BackofficeClient
from kiosk.certificates import verify_certificate
from kiosk.context import KioskContext
from kiosk.flows.certificate import CertificateFlow, CertificateResult
from kiosk.flows.fee_slips import FeeSlipsFlow, SlipsResult
from kiosk.flows.traffic_permit import PermitResult, TrafficPermitFlow
from kiosk.fmt import TEHRAN
from kiosk.journal import Journal, TxState, journal_path
from kiosk.receipts import read_public_key_file
from kiosk.scripted_ui import ScriptedUI
from kiosk.settings import KioskSettings
from kiosk_demo.environment import KIOSK_ID, DemoEnvironment, demo_environment

T = TypeVar("T")
CAMERA_TOKEN = "camera-token-0123456789-abcdefghij"
NATIONAL_CODE = "0084137258"  # the demo owner (backoffice/seed.py)
HAPPY = [TxState.CREATED, TxState.PAYING, TxState.PAID, TxState.FULFILLING, TxState.FULFILLED, TxState.POSTED,
         TxState.COMPLETED]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[DemoEnvironment]:
    with demo_environment(tmp_path) as environment:
        seed_demo(environment.backoffice_db_url, {KIOSK_ID: environment.settings.backoffice_token},
                  {"camera-1": (ServiceRole.CAMERA, CAMERA_TOKEN)})
        yield environment


def in_kiosk(env: DemoEnvironment, work: Callable[[KioskContext], Awaitable[T]]) -> T:
    async def go() -> T:
        ctx = await KioskContext.open(KioskSettings(**env.settings.__dict__), env.data_dir)
        try:
            return await work(ctx)
        finally:
            await ctx.close()

    return asyncio.run(go())


def slips_flow(env: DemoEnvironment, script: dict[str, Any]) -> tuple[SlipsResult, ScriptedUI]:
    ui = ScriptedUI(script)
    return in_kiosk(env, lambda ctx: FeeSlipsFlow(ctx, ui).run()), ui


def states(data: Path, tx_id: str) -> list[TxState]:
    with Journal(journal_path(data), kiosk_id="check") as j:
        return [e.state for e in j.get(tx_id).entries]


def plate(two: str, letter_index: int, three: str, region: str) -> dict[str, Any]:
    return {"slips.plate_two": two, "slips.plate_letter": f"#{letter_index}", "slips.plate_three": three,
            "slips.plate_region": region}


def payments(env: DemoEnvironment) -> list[tuple[str, int]]:
    office = sqlite3.connect(env.data_dir / "backoffice.sqlite3")
    try:
        return office.execute("SELECT bill_id, amount_rials FROM payments ORDER BY bill_id").fetchall()
    finally:
        office.close()


# --- M1 ----------------------------------------------------------------------------------------------
def test_look_up_by_national_code_and_print_two_slips(env: DemoEnvironment) -> None:
    result, ui = slips_flow(env, {"slips.choose_type": "waste_charge",
                                  "slips.enter_national_code": ["0084137259", NATIONAL_CODE],  # a typo first
                                  "slips.choose": "first:2", "slips.what_next": "print"})
    assert result.outcome.ok and result.outcome.message_key == "slips.printed"
    assert "id.national_code_invalid" in ui.keys("error")  # the check digit, refused as typed
    assert len(result.chosen) == 2 and result.printed == tuple(s.bill_id for s in result.chosen)
    env.printer.wait_for_jobs(2)
    papers = env.printer.receipts()
    barcodes = [code for paper in papers for code in paper.barcodes]
    assert barcodes == [s.bill_id.zfill(13) + s.payment_id.zfill(13) for s in result.chosen]
    transcript = json.dumps([[s.line("fa"), s.line("en")] for s in ui.transcript], ensure_ascii=False)
    assert NATIONAL_CODE not in transcript and "008****258" in transcript
    assert payments(env) == []  # a look-up and a print move no money


def test_a_look_up_with_nothing_found_says_so_and_charges_nothing(env: DemoEnvironment) -> None:
    result, ui = slips_flow(env, {"slips.choose_type": "waste_charge", "slips.enter_national_code": "0000000000"})
    assert not result.outcome.ok and result.transaction_id is None
    assert ui.keys("outcome") and ui.keys("error")


# --- M2 ----------------------------------------------------------------------------------------------
def test_look_up_by_plate_and_pay_two_slips_with_one_payment(env: DemoEnvironment) -> None:
    result, ui = slips_flow(env, {"slips.choose_type": "vehicle_tax", **plate("13", 8, "527", "66"),
                                  "slips.choose": "all", "slips.what_next": "pay", "basket.confirm": True})
    assert result.outcome.ok, ui.keys()
    assert result.final_state == TxState.COMPLETED and len(result.chosen) == 2
    assert result.amount_rials == sum(s.amount_rials for s in result.chosen)
    assert payments(env) == sorted((s.bill_id, s.amount_rials) for s in result.chosen)


# --- M3, M4 ------------------------------------------------------------------------------------------
def certificate_flow(env: DemoEnvironment, script: dict[str, Any]) -> tuple[CertificateResult, ScriptedUI]:
    ui = ScriptedUI(script)
    return in_kiosk(env, lambda ctx: CertificateFlow(ctx, ui).run()), ui


def test_a_business_with_everything_paid_gets_a_signed_certificate(env: DemoEnvironment) -> None:
    result, _ = certificate_flow(env, {"cert.choose_type": "business_tax",
                                       "slips.enter_business_license": "14010098812"})
    assert result.outcome.ok and result.printed and result.transaction_id is None
    cert = verify_certificate(result.receipt_payload or "", {KIOSK_ID: read_public_key_file(env.data_dir)})
    assert cert.fee_type == "business_tax" and cert.identifier_masked == "14*******12"
    assert "14010098812" not in (result.receipt_payload or "") and cert.valid_until > dt.date.today()


def test_outstanding_slips_are_offered_paid_and_then_the_certificate_issued(env: DemoEnvironment) -> None:
    declined, ui = certificate_flow(env, {"cert.choose_type": "business_tax",
                                          "slips.enter_business_license": "13990412775", "cert.outstanding": False})
    assert not declined.outcome.ok and declined.certificate is None and payments(env) == []
    result, ui = certificate_flow(env, {"cert.choose_type": "business_tax",
                                        "slips.enter_business_license": "13990412775", "cert.outstanding": True,
                                        "basket.confirm": True})
    assert result.outcome.ok, ui.keys()
    assert result.final_state == TxState.COMPLETED and result.outstanding == 4 and len(payments(env)) == 4
    assert result.certificate is not None and result.certificate.slips_checked >= 4


# --- M5 ----------------------------------------------------------------------------------------------
def permit_flow(env: DemoEnvironment, script: dict[str, Any]) -> tuple[PermitResult, ScriptedUI]:
    ui = ScriptedUI(script)
    return in_kiosk(env, lambda ctx: TrafficPermitFlow(ctx, ui).run()), ui


def camera_check(env: DemoEnvironment, plate_text: str, day: dt.date) -> bool:
    resp = requests.get(f"{env.settings.backoffice_url}/api/v1/traffic-permits/check",
                        params={"plate": plate_text, "date": day.isoformat()},
                        headers={"Authorization": f"Bearer {CAMERA_TOKEN}"}, timeout=10)
    resp.raise_for_status()
    return bool(resp.json()["valid"])


def test_a_permit_is_paid_recorded_and_found_by_the_camera_and_not_sold_twice(env: DemoEnvironment) -> None:
    script = {**plate("68", 6, "214", "44"), "permit.choose_date": "#1", "permit.confirm": True}
    result, ui = permit_flow(env, script)
    tomorrow = dt.datetime.now(TEHRAN).date() + dt.timedelta(days=1)
    assert result.outcome.ok, ui.keys()
    assert result.day == tomorrow and result.plate == "68 د 214 ایران 44"
    assert states(env.data_dir, result.transaction_id or "") == HAPPY
    assert camera_check(env, "68 د 214 ایران 44", tomorrow)
    assert not camera_check(env, "68 د 214 ایران 44", tomorrow + dt.timedelta(days=1))
    again, ui = permit_flow(env, script)
    assert again.outcome.message_key == "permit.unavailable" and again.transaction_id is None
    ledger = sqlite3.connect(env.data_dir / "terminal-ledger.sqlite3")
    sales = ledger.execute("SELECT status FROM sales").fetchall()
    ledger.close()
    assert sales == [("approved",)]  # the refused second permit was never charged


# --- M6, M7 ------------------------------------------------------------------------------------------
def kiosk_demo(data: Path, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONUNBUFFERED": "1"}
    environ.pop("KIOSK_FAULT", None)
    if fault:
        environ["KIOSK_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "kiosk.cli", "demo", *args, "--data-dir", str(data)],
                          env=environ, capture_output=True, text=True, timeout=180)


@pytest.mark.parametrize(("point", "recorded"), [("after-paid", False), ("after-post-sent", True)])
def test_a_crash_mid_permit_is_recovered_to_one_permit_or_the_money_back(
        tmp_path: Path, point: str, recorded: bool) -> None:
    crashed = kiosk_demo(tmp_path, "--headless", "--script", "traffic-permit", "--json", fault=point)
    assert crashed.returncode == 99, crashed.stdout[-2000:] + crashed.stderr[-2000:]
    again = kiosk_demo(tmp_path, "--script", "recover", "--json")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    (row,) = json.loads(again.stdout.strip().splitlines()[-1])
    assert (row["to_state"], row["resolved"]) == ("COMPLETED" if recorded else "REVERSED", True)
    office = sqlite3.connect(tmp_path / "backoffice.sqlite3")
    permits = office.execute("SELECT transaction_id FROM traffic_permits").fetchall()
    office.close()
    ledger = sqlite3.connect(tmp_path / "terminal-ledger.sqlite3")
    sales = ledger.execute("SELECT status FROM sales").fetchall()
    ledger.close()
    assert permits == ([(row["tx_id"],)] if recorded else [])
    assert sales == [("approved",)] if recorded else [("reversed",)]


@pytest.mark.parametrize("script", ["slips-print", "slips-pay", "certificate", "traffic-permit"])
def test_the_municipal_demo_scripts_run_end_to_end(tmp_path: Path, script: str) -> None:
    run = kiosk_demo(tmp_path, "--headless", "--script", script, "--json")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads(run.stdout)
    assert summary["ok"] and summary["journal_ok"] and summary["printed"]
    assert all(Path(p).is_file() for p in summary["printed"])
    assert NATIONAL_CODE not in run.stdout and "13990412775" not in run.stdout  # nor a licence


def test_choosing_more_slips_than_one_payment_takes_asks_again_without_a_new_look_up(env: DemoEnvironment) -> None:
    result, ui = slips_flow(env, {"slips.choose_type": "waste_charge", "slips.enter_national_code": NATIONAL_CODE,
                                  "slips.choose": ["all", "first:2"], "slips.what_next": ["pay", "pay"],
                                  "basket.confirm": True})
    assert "slips.too_many" in ui.keys("error")
    assert ui.keys("step").count("slips.looking_up") == 1  # the list stayed; no second counted look-up
    assert result.outcome.ok and result.final_state == TxState.COMPLETED and len(payments(env)) == 2


def test_a_certificate_with_more_outstanding_than_one_payment_takes_is_paid_in_turns(env: DemoEnvironment) -> None:
    result, ui = certificate_flow(env, {"cert.choose_type": "business_tax",
                                        "slips.enter_business_license": "14020063918",  # 12 unpaid
                                        "cert.outstanding": True, "basket.confirm": [True, True]})
    assert result.outcome.ok, ui.keys()
    assert result.outstanding == 12 and len(payments(env)) == 12 and result.certificate is not None
