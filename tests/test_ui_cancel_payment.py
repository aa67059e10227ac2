"""The touch UI's Cancel on the payment screen (issue 10, payment waiting): a citizen confirms a
fee, the terminal waits for a card that never comes, the citizen taps Cancel (and presses it again) and reads
that the payment was cancelled and nothing charged. On the demo's real back-office and nexo
terminal simulator (latency: the card never presented), offscreen, one Kivy app per process
(screens.driver's Citizen taps the widgets)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent('''
    import asyncio, json, sys
    from pathlib import Path
    from kiosk.ui_main import UIOptions, configure_kivy, run_demo_kiosk

    data, lang, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    # cancel: the card never comes, the citizen cancels; idle: the terminal approves after 6 s
    # while the inactivity timer (shortened on the payment screen) would have run out twice
    options = UIOptions(windowed=True, idle_s=600, terminal_latency_s=120.0 if mode == "cancel" else 6.0)
    configure_kivy(options, data)

    async def script(ui, app, ctx, env):
        from backoffice.seed import DEMO_NATIONAL_CODE
        from screens.driver import Citizen
        owner = await asyncio.to_thread(ctx.backoffice.fee_slips, national_code=DEMO_NATIONAL_CODE)
        slip = next(s for s in owner.slips if s.status == "unpaid")
        c = Citizen(ui)

        def cancel_button():  # the step screen's Cancel, shown or not (Citizen.button finds a shown one)
            return next(w for w in ui.root.walk(restrict=True) if getattr(w, "choice_id", "") == "cancel")

        shown = []  # (screen, message key, Cancel's opacity on a step) as each screen is shown
        states = []  # (message key, Cancel's opacity, disabled) at each change of the button
        def on_shown(name):
            if name != "step":
                shown.append([name, ui.screen_key, None])
                return
            btn, key = cancel_button(), ui.screen_key
            shown.append([name, key, btn.opacity])
            btn.bind(opacity=lambda b, v: states.append([key, v, b.disabled]),
                     disabled=lambda b, v: states.append([key, b.opacity, v]))
        ui.listeners.append(on_shown)
        session = asyncio.ensure_future(ui.run_sessions(ctx, sessions=1))
        out = {}
        await c.screen("attract")
        if lang == "en":
            await c.switch_language()
            await c.settle()
        await c.press("start")
        await c.screen("home")
        await c.press("fee_payment")
        await c.screen("choose", "fee.how_to_enter")
        await c.press("manual")
        await c.screen("digits", "fee.enter_bill_id")
        await c.type_digits(slip.bill_id)
        await c.press("ok")
        await c.screen("digits", "fee.enter_payment_id")
        await c.type_digits(slip.payment_id)
        await c.press("ok")
        await c.screen("confirm", "fee.confirm")
        await c.press("yes")
        out["waiting"] = await c.screen("step", "pay.insert_card")
        # Cancel appears once the terminal has the payment and waits for the card
        await c.until(lambda: "PaymentRequest" in env.terminal.requests_seen, "the terminal asked")
        await c.until(lambda: cancel_button().opacity == 1 and not cancel_button().disabled, "Cancel shown")
        out["cancel_label"] = [t for t in c.texts() if t in ("انصراف", "Cancel")]
        if mode == "idle":
            # the citizen stands still: a second of inactivity and a second of warning would
            # reset the session; anything that (re)starts the idle timer now must not run it
            ui.idle_s, ui.warn_s = 1.0, 1.0
            ui._start_idle()
            ui._activity()
            out["outcome"] = await c.screen("outcome", timeout=60)
            ui.idle_s, ui.warn_s = 600.0, 20.0
        else:
            await c.press("cancel")
            # a second press (what the button's release calls; a tap where it was could land on the
            # outcome's Done): nothing waits for it any more
            ui._cancel_wait()
            out["outcome"] = await c.screen("outcome")
        out["states"] = states
        out["outcome_key"] = ui.screen_key
        out["shown"] = shown
        out["waiters_left"] = len(ui._cancel_waiters)
        tx = ui.last_outcome.transaction_id
        out["state"] = str(ctx.journal.state_of(tx))
        out["journal"] = [str(e.state) for e in ctx.journal.get(tx).entries]
        out["net"] = env.terminal.net_charged(tx)
        out["requests"] = list(env.terminal.requests_seen)
        out["bill_status"] = (await asyncio.to_thread(ctx.backoffice.lookup_bill, slip.bill_id, slip.payment_id)).status
        await c.press("done")
        await c.screen("attract")
        await asyncio.wait_for(session, 10)
        return out

    print("RESULT " + json.dumps(asyncio.run(run_demo_kiosk(data, options, script)), ensure_ascii=False))
''')


def run_ui(script: str, *args: str, timeout: float = 150) -> dict:
    env = {**os.environ, "SDL_VIDEODRIVER": "offscreen", "KIVY_NO_ARGS": "1"}
    env.pop("DISPLAY", None)
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                         timeout=timeout, env=env)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert out.returncode == 0 and lines, (out.stdout[-3000:], out.stderr[-5000:])
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.parametrize("lang", ["fa", "en"])
def test_a_citizen_taps_cancel_while_the_terminal_waits_for_the_card(tmp_path: Path, lang: str) -> None:
    r = run_ui(SCRIPT, str(tmp_path), lang, "cancel")
    assert r["cancel_label"] == ["انصراف" if lang == "fa" else "Cancel"]
    assert r["outcome_key"] == "pay.cancelled"
    cancelled = "پرداخت لغو شد. مبلغی از حساب شما کم نشد" if lang == "fa" else "Payment cancelled. Nothing was charged"
    assert any(cancelled in t for t in r["outcome"]), r["outcome"]
    assert r["state"] == "DECLINED" and r["journal"] == ["CREATED", "PAYING", "DECLINED"]
    assert r["net"] == 0 and "AbortRequest" in r["requests"]
    assert r["bill_status"] == "unpaid"
    assert r["waiters_left"] == 0  # no Cancel left waiting
    shown = [tuple(s) for s in r["shown"]]
    payment = shown.index(("step", "pay.insert_card", 0))  # no Cancel before the charge waits
    assert shown[payment + 1:payment + 3] == [("step", "pay.cancelling", 0), ("outcome", "pay.cancelled", None)]
    # pressed through the Citizen driver (choice_id "cancel"); once nothing waits for it, the
    # button on the payment screen is hidden and disabled at once, before the next screen
    assert cancel_states(r) == [[1, False], [0, True]], r["states"]


def cancel_states(r: dict) -> list[list]:
    """The payment screen's Cancel (opacity, disabled) after each change, changes of one
    assignment merged (the last of a run of same-opacity records)."""
    rows = [row[1:] for row in r["states"] if row[0] == "pay.insert_card"]
    return [row for i, row in enumerate(rows) if i + 1 == len(rows) or rows[i + 1][0] != row[0]]


def test_inactivity_never_cancels_a_payment_waiting_on_the_terminal(tmp_path: Path) -> None:
    # the terminal answers after 6 s; on the payment screen the idle timer is set to 1 s with
    # a 1 s warning and (re)started as a resize or a tap would: were it to run, the warning
    # would show and the session reset would release the Cancel waiter, cancelling the charge
    r = run_ui(SCRIPT, str(tmp_path), "fa", "idle")
    shown = [tuple(s) for s in r["shown"]]
    assert not any(s[0] == "inactivity" for s in shown), shown
    assert r["outcome_key"] == "fee.paid" and r["state"] == "COMPLETED", (r["outcome_key"], r["journal"])
    assert "AbortRequest" not in r["requests"] and r["net"] > 0
    assert r["bill_status"] == "paid"
    assert r["waiters_left"] == 0
    # shown while the terminal waited, hidden and disabled as soon as it answered
    assert cancel_states(r) == [[1, False], [0, True]], r["states"]
