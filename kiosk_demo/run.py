"""The headless demo: recovery first, then one scripted citizen through the fee-payment flow on
the embedded environment (kiosk_demo.environment). Returns the summary `kiosk demo` prints.

The data dir's lock (kiosk.data_lock) is taken before anything starts, so a second demo never
starts a second terminal simulator on the same ledger, nor seeds the same back-office."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backoffice.seed import DEMO_NATIONAL_CODE
from kiosk.backoffice_client import BackofficeClient
from kiosk.context import KioskContext
from kiosk.data_lock import DataLock
from kiosk.errors import KioskError
from kiosk.faults import check_fault_env
from kiosk.flows.fee_payment import FeePaymentFlow
from kiosk.journal import TxState
from kiosk.recovery import Recovery, Resolution
from kiosk.scripted_ui import ScriptedUI
from kiosk.service_guard import JournalBroken
from kiosk.status import StatusFile, for_context
from kiosk_demo.environment import demo_environment
from kiosk_demo.municipal_scripts import MUNICIPAL_SCRIPTS
from kiosk_demo.transit_scripts import TRANSIT_SCRIPTS

#: the scripts that run one flow of the table shape (transit and municipal services)
SCRIPTED = {**TRANSIT_SCRIPTS, **MUNICIPAL_SCRIPTS}

log = logging.getLogger("kiosk.demo")


@dataclass(frozen=True)
class DemoOptions:
    terminal_latency_s: float = 0.0
    terminal_answer: str = "approve"  # the simulator's standing mode


class NoUnpaidSlips(KioskError):
    """Every demo fee slip is paid (the seed normally tops them up; an old back-office db)."""

    key = "demo.no_unpaid_slips"
    fa = "همهٔ فیش‌های نمایشی پرداخت شده‌اند؛ با یک --data-dir تازه دوباره اجرا کنید."
    en = "Every demo fee slip is already paid; run the demo again with a fresh --data-dir."


def _pick_unpaid_slip(client: BackofficeClient) -> Any:
    owner = client.fee_slips(national_code=DEMO_NATIONAL_CODE)
    for slip in owner.slips:
        if slip.status == "unpaid":
            return slip
    raise NoUnpaidSlips("the demo owner has no unpaid fee slips left")


def _script(name: str, slip: Any) -> dict[str, Any]:
    typed = {"fee.enter_bill_id": slip.bill_id, "fee.enter_payment_id": slip.payment_id}
    if name == "pay-fee":
        return {"fee.how_to_enter": "wait", **typed, "fee.confirm": True}
    if name == "pay-fee-cancel":
        return {"fee.how_to_enter": "manual", **typed, "fee.confirm": False}
    return {"fee.how_to_enter": "manual", **typed, "fee.confirm": True}


async def run_demo(data: Path, script: str, *, echo: bool = True,
                   options: DemoOptions = DemoOptions()) -> dict[str, Any]:
    """Raises DataDirLocked (another process owns `data`), UnknownFaultPoint, NoUnpaidSlips."""
    check_fault_env()
    with DataLock(data) as lock, demo_environment(
            data, terminal_mode=options.terminal_answer, terminal_latency_s=options.terminal_latency_s) as env:
        slip = None
        if script not in SCRIPTED:
            probe = BackofficeClient(env.settings.backoffice_url, env.settings.backoffice_token)
            try:
                slip = await asyncio.to_thread(_pick_unpaid_slip, probe)
            finally:
                probe.close()
        if script == "pay-fee-declined":
            env.terminal.set_mode("once-decline")
        ctx = await KioskContext.open(env.settings, data, lock=lock)
        broken: JournalBroken | None = None
        # the kiosk's device and service status in device-status.json while it runs, as `kiosk ui`
        # writes it: what the fleet agent beside it reports
        status_file = StatusFile(data).attach(for_context(ctx))
        try:
            recovered: list[Resolution] = []
            try:
                recovered = await Recovery(ctx.journal, ctx.money).run()
            except JournalBroken as exc:  # out of service: the citizen is told so below
                broken = exc
                print(f"kiosk demo: {exc.message('en')}", flush=True)
            ctx.start_outbox_worker()  # store-and-forward and background recovery while it runs
            if echo:
                for r in recovered:
                    print(f"recovered {r.tx_id}: {r.from_state} → {r.to_state} ({r.action})", flush=True)
                if slip is not None:
                    print(f"citizen: {script} — {slip.description_fa} ({slip.amount_rials:,} rials)", flush=True)
                else:
                    print(f"citizen: {script} — {SCRIPTED[script].description}", flush=True)
            card: dict[str, Any] = {}
            transit = SCRIPTED.get(script)
            if transit is not None:
                ui = ScriptedUI(transit.answers, echo=echo)
                result, card = await transit.run(ctx, env, ui)
            else:
                assert slip is not None
                ui = ScriptedUI(_script(script, slip), echo=echo)
                if script == "pay-fee":  # the citizen holds the slip's barcode under the scanner
                    barcode = slip.bill_id.zfill(13) + slip.payment_id.zfill(13)
                    asyncio.get_running_loop().call_later(0.2, env.scanner.send, barcode)
                result = await FeePaymentFlow(ctx, ui).run()
            receipt_png = _save_receipt(env, data, result.transaction_id)
            printed = _save_printed(env, data, script)
            report = ctx.journal.verify()
        finally:
            status_file.close()
            await ctx.close()
    if script in SCRIPTED:
        expected = SCRIPTED[script].expected_state
    else:
        expected = {"pay-fee-declined": TxState.DECLINED, "pay-fee-cancel": None}.get(script, TxState.COMPLETED)
    ok = (broken is None and result.final_state == expected and report.ok
          and (script not in SCRIPTED or result.outcome.ok)
          and all(r.resolved for r in recovered))
    return {
        "ok": ok,
        "script": script,
        "transaction_id": result.transaction_id,
        "final_state": str(result.final_state) if result.final_state else None,
        "outcome": result.outcome.message_key,
        "amount_rials": result.amount_rials,
        "receipt_payload": result.receipt_payload,
        "receipt_png": receipt_png,
        "printed": printed,
        "journal_ok": report.ok,
        "recovered": [r.to_dict() for r in recovered],
        "transcript": [{"kind": s.kind, "key": s.key, "fa": s.line("fa"), "en": s.line("en")} for s in ui.transcript],
        "data_dir": str(data),
        **card,
    }


def _save_receipt(env: Any, data: Path, tx_id: str | None) -> str | None:
    """Keep what the printer emulator received as a PNG, decoded from the ESC/POS bytes."""
    receipts = env.printer.receipts()
    if not tx_id or not receipts:
        return None
    path = data / "receipts" / f"{tx_id}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    receipts[-1].image.save(path)
    return str(path)


def _save_printed(env: Any, data: Path, script: str) -> list[str]:
    """Every document the printer emulator received in this run (slips, a certificate, a
    receipt), each as a PNG decoded from its ESC/POS bytes: the summary lists their paths."""
    # the emulator records a job when its connection closes, on its own thread: let the last
    # one land (the count holds still for a moment) before reading them
    seen, still_since, deadline = -1, time.monotonic(), time.monotonic() + 3.0
    while time.monotonic() < deadline:
        count = len(env.printer.jobs)
        if count != seen:
            seen, still_since = count, time.monotonic()
        elif time.monotonic() - still_since >= 0.3:
            break
        time.sleep(0.05)
    out = []
    folder = data / "printed"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n, paper in enumerate(env.printer.receipts(), 1):
        path = folder / f"{script}-{stamp}-{n}.png"
        paper.image.save(path)
        out.append(str(path))
    return out


async def run_tool(data: Path, tool: str, *, as_json: bool, options: DemoOptions = DemoOptions()) -> int:
    """`kiosk demo --script recover|doctor`: the technician's command on the embedded
    environment, whose simulators hold this data dir's terminal ledger and back-office."""
    from devices.base import HealthLevel
    from kiosk.commands import doctor, recover

    check_fault_env()
    with DataLock(data) as lock, demo_environment(
            data, terminal_mode=options.terminal_answer, terminal_latency_s=options.terminal_latency_s) as env:
        if tool == "doctor":
            rows = await doctor.diagnose(env.settings, HealthLevel.EXTERNAL)
            return doctor.report(rows, as_json=as_json)
        results = await recover.recover(data, env.settings, lock=lock)
    return recover.report(results, as_json=as_json)
