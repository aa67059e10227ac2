"""Storage faults (issue 6, failure 8). A new transaction is refused while the data dir's file
system is below the free-space floor; a journal that cannot be written right after the
terminal approved ends in a defined outcome the citizen is told (never an uncaught
exception), and the running kiosk finishes it once space returns: the money is back, or
charged once and posted.

The storage fails for real: the kiosk runs in a child process whose file-size limit
(RLIMIT_FSIZE) is set, the moment PAYING is journaled, to a few hundred bytes past the end of
the journal's WAL — the next commit's frame cannot be written and SQLite reports the write
failed (SQLITE_IOERR_WRITE, as a failing or full medium does; the journal types both as
JournalStorageError). The back-office and the terminal simulator run in this process, so only
the kiosk's own files are limited; portable, no root and no mount needed."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from backoffice.seed import DEMO_NATIONAL_CODE
from kiosk.backoffice_client import BackofficeClient
from kiosk.context import KioskContext
from kiosk.flows.fee_payment import FeePaymentFlow
from kiosk.journal import Journal, TxState, journal_path
from kiosk.scripted_ui import ScriptedUI
from kiosk.settings import KioskSettings
from kiosk_demo.environment import DemoEnvironment, demo_environment

#: the kiosk side, in a child process: pay, with the disk filling while the terminal works;
#: then space returns and the running kiosk's background recovery finishes the transaction
CHILD = r"""
import asyncio, json, resource, signal, sys
from pathlib import Path
from kiosk.context import KioskContext
from kiosk.flows.fee_payment import FeePaymentFlow
from kiosk.journal import OPEN_STATES, TxState
from kiosk.scripted_ui import ScriptedUI
from kiosk.settings import load_settings

data, script = Path(sys.argv[1]), json.loads(sys.argv[2])
UNLIMITED = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)

async def fill_the_disk_once_paying(ctx):
    while not any(t.state == TxState.PAYING for t in ctx.journal.transactions(limit=1)):
        await asyncio.sleep(0.002)
    wal = Path(f"{ctx.journal.path}-wal")
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails, no signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (wal.stat().st_size + 300, resource.RLIM_INFINITY))

async def main():
    ctx = await KioskContext.open(load_settings(data), data)
    try:
        filler = asyncio.create_task(fill_the_disk_once_paying(ctx))
        ui = ScriptedUI(script)
        result = await FeePaymentFlow(ctx, ui).run()
        await filler
        during = ctx.journal.state_of(result.transaction_id)
        resource.setrlimit(resource.RLIMIT_FSIZE, UNLIMITED)  # space is back
        ctx.start_outbox_worker(interval_s=0.05, recovery_interval_s=0.0)
        for _ in range(400):
            if ctx.journal.state_of(result.transaction_id) not in OPEN_STATES:
                break
            await asyncio.sleep(0.05)
        print(json.dumps({"outcome": result.outcome.message_key, "params": result.outcome.params,
                          "tx": result.transaction_id, "errors": ui.keys("error"),
                          "state_during": str(during),
                          "state_after": str(ctx.journal.state_of(result.transaction_id))}))
    finally:
        await ctx.close()

asyncio.run(main())
"""


@pytest.fixture
def env(tmp_path: Path) -> Iterator[DemoEnvironment]:
    servers = tmp_path / "servers"
    servers.mkdir(mode=0o700)
    with demo_environment(servers) as environment:
        yield environment


def unpaid_slip(env: DemoEnvironment) -> Any:
    with BackofficeClient(env.settings.backoffice_url, env.settings.backoffice_token, retries=0) as client:
        return client.fee_slips(national_code=DEMO_NATIONAL_CODE).unpaid[0]


def typed(slip: Any) -> dict[str, Any]:
    return {"fee.how_to_enter": "manual", "fee.enter_bill_id": slip.bill_id,
            "fee.enter_payment_id": slip.payment_id, "fee.confirm": True}


def test_the_disk_filling_while_the_terminal_approves_ends_defined_and_is_finished_when_space_returns(
        env: DemoEnvironment, tmp_path: Path) -> None:
    kiosk_dir = tmp_path / "kiosk"
    kiosk_dir.mkdir(mode=0o700)
    env.settings.save(kiosk_dir / "kiosk.json")
    env.terminal.latency_s = 1.0  # the disk fills while the terminal works
    slip = unpaid_slip(env)

    child = subprocess.run([sys.executable, "-c", CHILD, str(kiosk_dir), json.dumps(typed(slip))],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-3000:]
    assert "Traceback" not in child.stderr
    assert "SQLITE_IOERR_WRITE" in child.stderr  # a real failed write, as SQLite reports it
    seen = json.loads(child.stdout.strip().splitlines()[-1])
    tx_id = seen["tx"]
    # the citizen is told: checked and completed or refunded automatically, with the tx id
    assert seen["outcome"] == "service.storage" and seen["params"] == {"tx": tx_id}
    assert seen["errors"] == ["service.storage"]
    assert seen["state_during"] == "PAYING"  # approved, but PAID could not be written
    # space returned: the running kiosk asked the terminal and gave the money back
    assert seen["state_after"] == "REVERSED"
    assert env.terminal.net_charged(tx_id) == 0
    assert [s["status"] for s in env.terminal.ledger()] == ["reversed"]
    with Journal(journal_path(kiosk_dir), kiosk_id="check") as journal:
        assert journal.verify().ok and journal.open_transactions() == []
        assert [e.state for e in journal.get(tx_id).entries] == [
            TxState.CREATED, TxState.PAYING, TxState.PAID, TxState.REVERSING, TxState.REVERSED]


def test_a_new_transaction_is_refused_below_the_free_space_floor(env: DemoEnvironment, tmp_path: Path) -> None:
    kiosk_dir = tmp_path / "kiosk"
    kiosk_dir.mkdir(mode=0o700)
    settings = KioskSettings(**{**env.settings.__dict__, "min_free_bytes": 2**62})  # more than any disk
    ui = ScriptedUI(typed(unpaid_slip(env)))

    async def go() -> Any:
        ctx = await KioskContext.open(settings, kiosk_dir)
        try:
            return await FeePaymentFlow(ctx, ui).run()
        finally:
            await ctx.close()

    result = asyncio.run(go())
    assert ui.keys("error") == ["service.storage_low"]
    assert result.outcome.message_key == "service.storage_low" and result.transaction_id is None
    assert env.terminal.ledger() == []  # the terminal was never asked
    with Journal(journal_path(kiosk_dir), kiosk_id="check") as journal:
        assert journal.transactions() == []
