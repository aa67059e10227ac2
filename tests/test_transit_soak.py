"""Issue 8, item 8: the soak. Hundreds of randomized transit transactions in one kiosk on the
real parts (PN532 driver on the virtual reader, nexo driver on its simulator, the back-office,
the printer emulator), with random declines, cards pulled mid-write (put back or not),
crashes at every fault point (kiosk.faults.crash_in_process: the flow stops where a power
cut would stop it; the context is dropped and a new one recovers, as a restart does) and
back-office outages. At the end every card gets one more tap (its pending actions settle), and
the ledgers are compared:

  - for every card: its balance == its initial value + every load the back-office recorded
    for it, and the back-office's last balance and counter are the card's;
  - for every sale the terminal approved: exactly one of {value delivered (a load recorded
    under that transaction), reversed at the terminal, refund pending with an operator};
  - the journal verifies and holds no open transaction.

The test prints the totals it compared. Marked slow; CI runs it (SOAK_N transactions, 500 by
default)."""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests

from backoffice.server import serve_in_thread
from devices.mifare_classic_virtual import VirtualCard
from devices.transit_card.demo import describe_virtual_card, issue_virtual_card
from devices.transit_card.keys import DEMO_MASTER_KEY
from backoffice.models import ServiceRole
from backoffice.seed import seed_demo
from kiosk.backoffice_client import BackofficeClient, LoadNotFound, TicketNotFound
from kiosk.context import KioskContext
from kiosk.faults import SimulatedCrash, crash_in_process
from kiosk.flows.card_balance import CardBalanceFlow
from kiosk.flows.card_sale import CardSaleFlow
from kiosk.flows.card_topup import CardTopupFlow
from kiosk.flows.collect_pending import CollectPendingFlow
from kiosk.flows.qr_ticket import QrTicketFlow
from kiosk.journal import Journal, TxState, journal_path
from kiosk.recovery import Recovery
from kiosk.scripted_ui import ScriptedUI
from kiosk.settings import KioskSettings
from kiosk_demo.environment import DemoEnvironment, demo_environment

N = int(os.environ.get("SOAK_N", "500"))
CARDS = 4
INITIAL = 250_000
CRASH_POINTS = ("after-paying", "after-approved", "after-paid", "before-card-write", "after-card-write",
                "after-post-sent", "after-dispense", "after-card-eject")
INTEGRATION = "soak-ussd-gateway-Qz7Lp2Vn8Xr4"


class Citizen(ScriptedUI):
    """Answers the top-up screens; when asked to put a torn card back, does so or walks away."""

    def __init__(self, script: dict[str, Any], env: DemoEnvironment, puts_back: bool) -> None:
        super().__init__(script)
        self.env = env
        self.puts_back = puts_back

    async def show_step(self, key: str, **params: Any) -> None:
        await super().show_step(key, **params)
        if key == "topup.place_again" and self.puts_back and self.env.card_reader.torn_card is not None:
            self.env.card_reader.place(self.env.card_reader.torn_card)


class Soak:
    def __init__(self, env: DemoEnvironment, rng: random.Random) -> None:
        self.env = env
        self.rng = rng
        self.cards: list[VirtualCard] = [
            issue_virtual_card(f"04{i:02x}a1b2", DEMO_MASTER_KEY, INITIAL, f"93640200{i:02d}") for i in range(CARDS)]
        self.serials = {c.uid_hex: f"93640200{i:02d}" for i, c in enumerate(self.cards)}
        self.sold: dict[str, str] = {}  # uid -> serial of the cards the kiosk sold
        self.paid_elsewhere: Counter[str] = Counter()  # serial -> rials of pending loads created
        self.counts: Counter[str] = Counter()
        self.ctx: KioskContext | None = None
        self.backoffice_port = int(env.settings.backoffice_url.rsplit(":", 1)[1])
        self.server_down = False

    async def open(self) -> KioskContext:
        self.ctx = await KioskContext.open(self.env.settings, self.env.data_dir)
        return self.ctx

    async def restart(self) -> None:
        """A crash: the context goes without finishing anything; a new one recovers."""
        assert self.ctx is not None
        await self.ctx.close()
        ctx = await self.open()
        await Recovery(ctx.journal, ctx.money).run()

    def place(self, card: VirtualCard) -> None:
        torn = self.env.card_reader.torn_card
        if torn is not None and torn.uid_hex == card.uid_hex:
            card = torn
        self.env.card_reader.place(self.env.card_reader.cards.get(card.uid_hex, card))

    def outage(self, down: bool) -> None:
        if down and not self.server_down:
            self.env.backoffice.stop()
            self.server_down = True
        elif not down and self.server_down:
            self.env.backoffice = serve_in_thread(self.env.backoffice_db_url, port=self.backoffice_port)
            self.server_down = False

    async def one(self) -> None:
        rng, env = self.rng, self.env
        card = rng.choice(self.cards)
        self.place(card)
        service = rng.choices(("topup", "balance", "ticket", "buy_card", "collect"), (60, 6, 14, 8, 12))[0]
        if service == "balance":
            self.counts["balance"] += 1
            await CardBalanceFlow(self.ctx, ScriptedUI({})).run()
            return
        if service == "collect":
            self.pay_elsewhere(card, rng.choice((10_000, 20_000)))
        if service != "collect" and rng.random() < 0.08:
            env.terminal.set_mode("once-decline")
            self.counts["declined"] += 1
        if service in ("topup", "collect", "buy_card") and rng.random() < 0.08:
            env.card_reader.tear_next_write(at_op=rng.randint(1, 3), after_bytes=rng.choice((0, 0, 7)))
            self.counts["torn"] += 1
        self.outage(rng.random() < 0.04)
        crash = rng.choice(CRASH_POINTS) if rng.random() < 0.06 else None
        crash_in_process(crash)
        self.counts[service] += 1
        try:
            if service == "topup":
                amount = rng.choice((20_000, 30_000, 40_000, 50_000))
                await CardTopupFlow(self.ctx, Citizen({"topup.choose_amount": "other", "topup.enter_amount": str(amount),
                                                       "topup.confirm": True}, env, rng.random() < 0.5)).run()
            elif service == "ticket":
                await QrTicketFlow(self.ctx, ScriptedUI({"ticket.choose_kind": rng.choice(("single", "return")),
                                                         "ticket.confirm": True})).run()
            elif service == "buy_card":
                sold = await CardSaleFlow(self.ctx, ScriptedUI({"card_sale.choose_value": rng.choice(("0", "100000")),
                                                                "card_sale.confirm": True})).run()
                if sold.card_uid and sold.outcome.ok:
                    self.sold[sold.card_uid.lower()] = sold.card_serial
            else:
                await CollectPendingFlow(self.ctx, Citizen({}, env, rng.random() < 0.5)).run()
        except SimulatedCrash:
            self.counts["crashed"] += 1
            self.outage(False)
            await self.restart()
        finally:
            crash_in_process(None)
        self.outage(False)

    def pay_elsewhere(self, card: VirtualCard, amount: int) -> None:
        """The payer system (USSD) records a top-up for the card: a pending load."""
        serial = self.serials[card.uid_hex]
        resp = requests.post(f"{self.env.settings.backoffice_url}/api/v1/transit/pending-loads", timeout=10,
                             json={"card_serial": serial, "amount_rials": amount, "source": "ussd",
                                   "external_ref": f"soak-{self.rng.getrandbits(64):016x}"},
                             headers={"Authorization": f"Bearer {INTEGRATION}"})
        assert resp.status_code in (200, 201), resp.text
        self.paid_elsewhere[serial] += amount

    async def finish(self) -> None:
        """The back-office back, every card tapped once more, recovery and the outbox drained."""
        self.outage(False)
        assert self.ctx is not None
        await Recovery(self.ctx.journal, self.ctx.money).run()
        for card in self.cards:
            self.place(card)
            await CardBalanceFlow(self.ctx, ScriptedUI({})).run()
            await CollectPendingFlow(self.ctx, ScriptedUI({})).run()
        from kiosk.outbox_worker import OutboxWorker

        worker = OutboxWorker(self.ctx.journal, self.ctx.money, recovery_interval_s=None)
        for _ in range(3):
            for item in self.ctx.journal.outbox_pending(now=float("inf")):  # due or not
                await self.ctx.money.writer.outbox_record_attempt(item.id, "soak: due now", 0.0)
            await worker.drain_once()
            await Recovery(self.ctx.journal, self.ctx.money).run()
        await self.ctx.close()


def card_state(env: DemoEnvironment, card: VirtualCard) -> tuple[int, int]:
    held = env.card_reader.torn_card if (env.card_reader.torn_card is not None
                                         and env.card_reader.torn_card.uid_hex == card.uid_hex) else None
    summary = describe_virtual_card(held or env.card_reader.cards[card.uid_hex])
    return int(summary["balance_rials"]), int(summary["counter"])  # type: ignore[arg-type]


@pytest.mark.slow
def test_soak_no_rial_lost_or_doubled(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("SOAK_SEED", "8")))
    with demo_environment(tmp_path) as env:
        seed_demo(env.backoffice_db_url, {}, {"ussd-gw": (ServiceRole.INTEGRATION, INTEGRATION)})
        env.settings = KioskSettings(**{**env.settings.__dict__, "card_return_wait_s": 0.6, "pay_timeout_s": 5.0,
                                        "status_timeout_s": 1.0, "card_wait_s": 2.0})
        soak = Soak(env, rng)

        async def go() -> None:
            await soak.open()
            for _ in range(N):
                await soak.one()
            await soak.finish()

        asyncio.run(go())

        ledger = env.terminal.ledger()
        with Journal(journal_path(tmp_path), kiosk_id="check") as journal:
            report = journal.verify()
            open_after = [(t.tx_id, str(t.state)) for t in journal.open_transactions()]
            txs = {t.tx_id: t for t in journal.transactions()}
            stuck = {t: [i.last_error for i in journal.outbox_for(t)] for t, x in txs.items()
                     if x.state == TxState.FULFILLED}
        loads: dict[str, Any] = {}  # tx -> the load the back-office holds
        tickets: dict[str, Any] = {}  # tx -> the ticket it holds
        with BackofficeClient(env.settings.backoffice_url, env.settings.backoffice_token, retries=0) as client:
            accounts = {c.uid_hex: client.card_account(soak.serials[c.uid_hex]) for c in soak.cards}
            for tx_id, tx in txs.items():
                if tx.kind in ("card_topup", "card_sale", "pending_load"):
                    try:
                        loads[tx_id] = client.load_status(tx_id)
                    except LoadNotFound:
                        pass
                elif tx.kind == "qr_ticket":
                    try:
                        tickets[tx_id] = client.ticket_status(tx_id)
                    except TicketNotFound:
                        pass
        cards_now = dict(env.card_reader.cards)

    totals: dict[str, Any] = {"transactions": N, **soak.counts}
    # 1. every card of the pool: its initial value + every load the back-office holds for it ==
    #    what the card holds; the back-office's last balance and counter are the card's; every
    #    top-up paid elsewhere was collected, once; no pending action left open
    for i, card in enumerate(soak.cards):
        acct = accounts[card.uid_hex]
        balance, counter = card_state(env, card)
        mine = [ld for ld in loads.values() if ld.card_uid.lower() == card.uid_hex.lower()]
        ordered = [(t, str(x.state), t in loads, stuck.get(t)) for t, x in txs.items()
                   if str(x.data.get("card_uid", "")).lower() == card.uid_hex.lower()]
        assert balance == INITIAL + sum(ld.amount_rials for ld in mine), (card.uid_hex, balance, len(mine), ordered)
        assert (acct.last_balance or INITIAL, acct.last_counter or 0) == (balance, counter), (card.uid_hex, acct)
        assert acct.pending_actions == (), acct.pending_actions  # every pending action settled by a tap
        collected = sum(ld.amount_rials for ld in mine if ld.kind == "pending_load")
        assert collected == soak.paid_elsewhere[soak.serials[card.uid_hex]] and acct.collectable == (), (
            card.uid_hex, collected, acct.collectable)
        totals[f"card_{i}"] = {"balance": balance, "counter": counter, "loads": len(mine), "collected": collected}
    # 2. every card the kiosk sold holds the value its sale recorded
    sold = [ld for ld in loads.values() if ld.kind == "card_sale"]
    for load in sold:
        summary = describe_virtual_card(cards_now[load.card_uid.lower()])
        assert (summary["serial"], summary["balance_rials"]) == (load.card_serial, load.balance_after), (load, summary)
    # 3. every sale the terminal approved: delivered (a load or a ticket under it), reversed, or
    #    refund pending — exactly one
    approved = [sale for sale in ledger if sale["status"] in ("approved", "reversed")]
    outcome: Counter[str] = Counter()
    for sale in approved:
        tx = sale["reference"]
        delivered = tx in loads or tx in tickets
        reversed_ = sale["status"] == "reversed"
        refund = tx in txs and txs[tx].state == TxState.REFUND_PENDING
        assert delivered + reversed_ + refund == 1, (tx, delivered, reversed_, refund, txs.get(tx))
        if tx in loads and loads[tx].kind == "topup":
            assert loads[tx].amount_rials == sale["amount_rials"], (tx, loads[tx], sale)
        outcome["delivered" if delivered else "reversed" if reversed_ else "refund_pending"] += 1
    # 4. the journal
    assert report.ok, report
    assert open_after == [], open_after
    totals.update(approved_sales=len(approved), cards_sold=len(sold), tickets=len(tickets),
                  **{f"sales_{k}": v for k, v in outcome.items()},
                  rials_loaded=sum(ld.amount_rials for ld in loads.values()),
                  rials_paid_elsewhere=sum(soak.paid_elsewhere.values()))
    print("soak totals:", json.dumps(totals, ensure_ascii=False))
    assert soak.counts["crashed"] > 0 and soak.counts["torn"] > 0 and soak.counts["declined"] > 0
