"""Maintenance mode's core (kiosk.maintenance), without Kivy: the PIN's salted hash, the
lockout that grows and survives a restart, the audit without the digits, and a technician's
session on the demo kiosk — its real journal, the ESC/POS driver against the printer emulator,
the serial scanner, the PN532 reader — refused while a citizen's transaction is open."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from kiosk.fmt import TEHRAN
from kiosk.maintenance import (
    AUDIT_FILE,
    PIN_FILE,
    STATE_FILE,
    BadPin,
    Locked,
    Maintenance,
    NoPinSet,
    TransactionOpen,
    WrongPin,
    hash_pin,
    pin_matches,
    set_pin,
    stored_pin_hash,
)

PIN = "97315864"  # a run of digits unlikely to appear by chance in the data dir's files
KIOSK = [sys.executable, "-m", "kiosk.cli"]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def no_pin_anywhere(data: Path) -> None:
    for path in data.rglob("*"):
        if path.is_file():
            assert PIN.encode() not in path.read_bytes(), path


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_the_pin_is_kept_as_a_salted_scrypt_hash() -> None:
    a, b = hash_pin(PIN), hash_pin(PIN)
    assert a != b and a.startswith("scrypt$16384$8$1$")  # salted: the same PIN, two hashes
    assert PIN not in a
    assert pin_matches(PIN, a) and pin_matches(PIN, b)
    assert pin_matches("۹۷۳۱۵۸۶۴", a)  # typed on a Persian keypad
    assert not pin_matches("97315865", a)
    assert not pin_matches(PIN, "scrypt$16384$8$1$bad$worse") and not pin_matches(PIN, "")
    for bad in ("123", "123456789", "12a4", ""):
        with pytest.raises(BadPin):
            hash_pin(bad)


def test_set_pin_from_stdin_writes_only_the_hash(tmp_path: Path) -> None:
    # a data dir without kiosk.json (the demo's): the maintenance-pin file, 0600
    demo = tmp_path / "demo"
    demo.mkdir(mode=0o700)
    out = subprocess.run([*KIOSK, "maintenance", "set-pin", "--data-dir", str(demo)], input=f"{PIN}\n{PIN}\n",
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert mode(demo / PIN_FILE) == 0o600 and pin_matches(PIN, stored_pin_hash(demo))
    # a configured kiosk: into kiosk.json's extra, where the fleet sets it; the file still loads
    kiosk = tmp_path / "kiosk"
    kiosk.mkdir(mode=0o700)
    (kiosk / "kiosk.json").write_text(json.dumps({"kiosk_id": "k-1", "extra": {"brand": "x"}}))
    out = subprocess.run([*KIOSK, "maintenance", "set-pin", "--data-dir", str(kiosk)], input=f"{PIN}\n",
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    from kiosk.settings import load_settings

    settings = load_settings(kiosk)
    assert settings.extra["brand"] == "x" and pin_matches(PIN, settings.extra["maintenance_pin_hash"])
    assert mode(kiosk / "kiosk.json") == 0o600 and not (kiosk / PIN_FILE).exists()
    # refused: too short, or two different lines
    for given in ("123\n", f"{PIN}\n12345678\n"):
        out = subprocess.run([*KIOSK, "maintenance", "set-pin", "--data-dir", str(kiosk)], input=given,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 1 and "Traceback" not in out.stderr
    assert pin_matches(PIN, load_settings(kiosk).extra["maintenance_pin_hash"])  # unchanged
    # kiosk.json is not rewritten under a running kiosk (the data dir's lock is held)
    from kiosk.data_lock import DataLock

    with DataLock(kiosk):
        out = subprocess.run([*KIOSK, "maintenance", "set-pin", "--data-dir", str(kiosk)], input="24681357\n",
                             capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "in use by another process" in out.stderr, out.stderr
    assert pin_matches(PIN, load_settings(kiosk).extra["maintenance_pin_hash"])
    no_pin_anywhere(tmp_path)


def test_five_wrong_pins_lock_with_a_growing_back_off_that_survives_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    ctx = SimpleNamespace(data_dir=tmp_path, settings=None)
    gate = Maintenance(ctx, clock=clock)
    with pytest.raises(NoPinSet):
        gate.check_pin(PIN)
    set_pin(tmp_path, PIN)
    for left in (4, 3, 2, 1):
        with pytest.raises(WrongPin) as wrong:
            gate.check_pin("11111111")
        assert wrong.value.context["left"] == left
    with pytest.raises(Locked) as locked:
        gate.check_pin("11111111")  # the fifth
    assert locked.value.context["seconds"] == 30
    with pytest.raises(Locked):
        gate.check_pin(PIN)  # even the right PIN, while locked
    # the kiosk is switched off and on: a new gate, the same lock
    gate = Maintenance(ctx, clock=clock)
    assert gate.lock_status().locked and gate.lock_status().lockouts == 1
    clock.now += 31
    with pytest.raises(Locked) as locked:
        gate.check_pin("11111111")  # once locked, each wrong PIN locks again, twice as long
    assert locked.value.context["seconds"] == 60
    clock.now += 61
    with pytest.raises(Locked) as locked:
        gate.check_pin("22222222")
    assert locked.value.context["seconds"] == 120
    clock.now -= 10_000  # a clock set back does not lock for more than the cap
    assert gate.lock_status().locked_for_s <= 3600
    clock.now += 10_000 + 121
    gate.check_pin(PIN)  # the right PIN: in, and the count starts again
    assert gate.lock_status() == type(gate.lock_status())(0, 0, 0.0)
    with pytest.raises(WrongPin) as wrong:
        gate.check_pin("11111111")
    assert wrong.value.context["left"] == 4
    assert mode(tmp_path / STATE_FILE) == 0o600 and mode(tmp_path / AUDIT_FILE) == 0o600
    events = [e["event"] for e in gate.audit.lines()]
    assert events.count("pin_wrong") == 8 and events.count("pin_ok") == 1 and "pin_set" in events
    assert events.count("pin_refused") == 2  # no PIN set; the right PIN while locked
    no_pin_anywhere(tmp_path)
    # a change waits for another holder of the state's lock (the fleet agent, the CLI)
    import threading

    from kiosk.maintenance import MaintenanceState

    results: list[str] = []
    with MaintenanceState(tmp_path).locked():
        worker = threading.Thread(target=lambda: results.append(str(_try(gate, "33333333"))))
        worker.start()
        worker.join(0.5)
        assert worker.is_alive() and not results
    worker.join(5)
    assert results == ["maint.wrong_pin"]
    # a damaged state file does not reset the lockout
    for damaged in ("{not json", '{"failures": "x"}', "[]"):
        (tmp_path / STATE_FILE).write_text(damaged)
        with pytest.raises(Locked):
            Maintenance(ctx, clock=clock).check_pin(PIN)
        with pytest.raises(Locked):  # locked from then on, for 30 s (not for ever)
            Maintenance(ctx, clock=clock).check_pin(PIN)
        clock.now += 31
        Maintenance(ctx, clock=clock).check_pin(PIN)


def _try(gate: Maintenance, pin: str) -> str:
    try:
        gate.check_pin(pin)
    except (WrongPin, Locked) as exc:
        return exc.key
    return "ok"


@pytest.fixture
def kiosk(tmp_path: Path):
    from kiosk_demo.environment import demo_environment

    with demo_environment(tmp_path) as env:
        set_pin(tmp_path, PIN)
        yield env


def _journal_day(journal) -> None:
    """A completed fee, a top-up whose refund the terminal refused, one still paying."""
    done = journal.begin("fee_payment", 150_000, {"bill_id": "1234567890123"})
    for state in ("PAYING", "PAID", "FULFILLING", "FULFILLED", "POSTED", "COMPLETED"):
        journal.append(done.tx_id, state)
    stuck = journal.begin("card_topup", 200_000)
    for state, data in (("PAYING", None), ("PAID", {"masked_pan": "603799******1234", "rrn": "112233445566"}),
                        ("REVERSING", None), ("REFUND_PENDING", {"error_condition": "Refusal"})):
        journal.append(stuck.tx_id, state, data)
    paying = journal.begin("qr_ticket", 80_000)
    journal.append(paying.tx_id, "PAYING")
    return done.tx_id, stuck.tx_id, paying.tx_id


def test_a_technician_session_on_the_demo_kiosk(kiosk, tmp_path: Path) -> None:
    from devices.contracts import ReceiptPrinter
    from kiosk.context import KioskContext
    from kiosk.status import for_context

    async def scenario() -> dict:
        ctx = await KioskContext.open(kiosk.settings, tmp_path)
        try:
            status = for_context(ctx)
            gate = Maintenance(ctx)
            # a citizen's transaction is under way (claimed by its flow): refused, PIN not checked
            tx = await ctx.money.open_transaction("fee_payment", 10_000, {})
            with pytest.raises(TransactionOpen):
                gate.open_session(PIN, status=status)
            await ctx.money.cancel(tx)
            ctx.money.release(tx)
            with pytest.raises(WrongPin):
                gate.open_session("11111111", status=status)
            session = gate.open_session(PIN, status=status)

            devices = {d["name"]: d for d in session.devices()}
            assert set(devices) == {"terminal", "printer", "scanner", "card_reader", "dispenser"}
            assert devices["printer"]["class"] == "ReceiptPrinter" and devices["printer"]["state"] == "online"
            jobs_before = devices["printer"]["counters"].get("jobs", 0)

            printed = await session.test_print()
            assert printed.ok and printed.key == "maint.test_print_ok"
            await asyncio.to_thread(kiosk.printer.wait_for_jobs, 1)
            page = kiosk.printer.receipts()[-1]
            assert any(q.startswith(f"CITY-KIOSK-TEST {ctx.kiosk_id} ") for q in page.qr_codes)
            assert {d["name"]: d for d in session.devices()}["printer"]["counters"]["jobs"] == jobs_before + 1

            scan = asyncio.ensure_future(session.scan_test(timeout=10))
            await asyncio.sleep(0.3)
            kiosk.scanner.send("MAINT-SCAN-4711")
            scanned = await scan
            assert scanned.ok and scanned.params["code"] == "MAINT-SCAN-4711"
            quiet = await session.scan_test(timeout=0.5)  # nothing held under it: a failure, said so
            assert not quiet.ok and quiet.key == "maint.test_failed"

            card = await session.card_read(timeout=10)  # the demo card lies on the virtual reader
            assert card.ok and card.params["uid"].startswith("…") and len(card.params["uid"]) == 5

            # paper runs out; the technician loads a roll and says so: cleared at once
            printer = ctx.devices.first(ReceiptPrinter)
            kiosk.printer.set_paper("out")
            await printer.paper_state()
            assert status.devices["printer"].reason is not None
            kiosk.printer.set_paper("ok")
            refilled = await session.paper_refilled()
            assert refilled.ok and refilled.params["paper"] == "ok"
            assert status.devices["printer"].reason is None
            assert gate.state.load()["paper_refills"][-1]["printer"] == "printer"

            done, stuck, paying = _journal_day(ctx.journal)
            totals = session.totals()
            assert totals.by_kind["fee_payment"] == (2, 160_000)  # the cancelled one counts, 10 000
            assert totals.by_state["COMPLETED"] == (1, 150_000)
            assert totals.by_state["REFUND_PENDING"] == (1, 200_000)
            assert totals.by_state["CANCELLED"] == (1, 10_000)
            assert totals.count == 4 and totals.sum_rials == 440_000
            yesterday = dt.datetime.now(TEHRAN).date() - dt.timedelta(days=1)
            assert session.totals(yesterday).count == 0

            pending = session.needs_operator()
            assert [p["tx_id"] for p in pending] == [stuck, paying]
            assert pending[0]["state"] == "REFUND_PENDING" and pending[0]["amount_rials"] == 200_000
            assert pending[0]["details"] == {"masked_pan": "603799******1234", "rrn": "112233445566",
                                             "error_condition": "Refusal"}

            report = await session.print_day_report()
            assert report.ok and report.params == {"count": 4, "sum_rials": 440_000}
            await asyncio.to_thread(kiosk.printer.wait_for_jobs, 2)
            qr = [q for q in kiosk.printer.receipts()[-1].qr_codes if q.startswith("CITY-KIOSK-EOD")]
            assert qr and "n=4 sum=440000 completed=1/150000 pending=2" in qr[0]

            # a service taken out of service: its tile says why, at once and after a restart
            assert status.service("qr_ticket").available
            session.set_service("qr_ticket", False)
            assert status.service("qr_ticket").reason.key == "status.disabled_by_technician"
            assert {s["service"]: s for s in session.services()}["qr_ticket"]["disabled"] is True
            fresh = for_context(ctx)  # the next start reads the data dir
            assert fresh.service("qr_ticket").reason.key == "status.disabled_by_technician"
            assert fresh.service("fee_payment").available
            session.set_service("qr_ticket", True)
            assert status.service("qr_ticket").available
            with pytest.raises(ValueError):
                session.set_service("no_such_service", False)
            session.close()
            return {"events": [e["event"] for e in gate.audit.lines()]}
        finally:
            await ctx.close()

    out = asyncio.run(scenario())
    assert out["events"][:4] == ["pin_set", "session_refused", "pin_wrong", "pin_ok"]
    for event in ("session_start", "test_print", "scan_test", "card_read", "paper_refilled", "day_report",
                  "service_out", "service_in", "session_end"):
        assert event in out["events"], event
    no_pin_anywhere(tmp_path)
    assert "MAINT-SCAN-4711" not in (tmp_path / AUDIT_FILE).read_text()  # a scanned code is not kept


def test_status_and_report_commands(kiosk, tmp_path: Path) -> None:
    from kiosk.journal import Journal, journal_path

    with Journal(journal_path(tmp_path), kiosk_id="kiosk-demo-01") as journal:
        _journal_day(journal)
    out = subprocess.run([*KIOSK, "maintenance", "report", "--json", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["count"] == 3 and report["by_state"]["REFUND_PENDING"] == {"count": 1, "sum_rials": 200_000}
    out = subprocess.run([*KIOSK, "maintenance", "status", "--json", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["pin_set"] is True and status["refund_pending"] == 1 and status["locked_for_s"] == 0
    out = subprocess.run([*KIOSK, "maintenance", "report", "--day", "yesterday", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "not a date like 2026-11-30" in out.stderr
    yesterday = (dt.datetime.now(TEHRAN).date() - dt.timedelta(days=1)).isoformat()
    out = subprocess.run([*KIOSK, "maintenance", "report", "--day", yesterday, "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "0 transactions" in out.stdout, out.stderr
