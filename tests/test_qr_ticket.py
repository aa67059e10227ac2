"""Issue 8, item 6 — QR tickets end to end: QrTicketFlow through a KioskContext on the embedded
demo environment (the nexo driver against its simulator, the ESC/POS driver against the
printer emulator, the real back-office on loopback), the printed QR read back from the
emulator's paper with zxing, verified as a gate would offline, and redeemed at the back-office
with a gate's credential.

The rules checked (kiosk/services/ticket.py, docs/qr-tickets.md):
  T1  a ticket is paid once, recorded once at the back-office, printed as a QR that verifies
      with the kiosk's public key; a gate redeems a single ticket once and a return ticket twice
  T2  nothing prints (paper out, no printer): the ticket is shown on screen, and is valid
  T3  a declined card: nothing issued, recorded or printed
  T4  the back-office refuses the ticket (its id is another sale's): reversed, nothing printed
  T5  the back-office unreachable: printed and valid, the post stays queued, posted later
  T6  a crash at after-paid (no ticket) is reversed; after the post was sent, or before the
      print, the ticket is recorded once and the transaction completed
  T7  the gate's rule refuses a tampered byte, another key, an unknown kiosk, an expired
      ticket, trips that are not the kind's, and a receipt passed off as a ticket
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, TypeVar

import pytest
import requests
import zxingcpp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from backoffice.models import ServiceRole
from backoffice.seed import seed_demo
from kiosk.backoffice_client import BackofficeClient, TicketNotFound, TicketRecord
from kiosk.context import KioskContext
from kiosk.flows.qr_ticket import QrTicketFlow, TicketResult
from kiosk.journal import Journal, OutboxStatus, TxState, journal_path
from kiosk.receipts import ReceiptData, ReceiptSigner, read_public_key_file
from kiosk.recovery import Recovery
from kiosk.scripted_ui import ScriptedUI
from kiosk.services.ticket import TICKET_PRICES_RIALS, ticket_payload, valid_until_for
from kiosk.settings import KioskSettings
from kiosk.tickets import (InvalidTicket, OfflineGate, TicketData, TicketSigner, TripsUsed, encode_body,
                          load_ticket_signer, verify_ticket)
from kiosk.tickets.codec import PREFIX, _b64e
from kiosk_demo.environment import KIOSK_ID, DemoEnvironment, demo_environment

T = TypeVar("T")

GATE_TOKEN = "gate-token-0123456789-abcdefghij"
RIVAL = "kiosk-rival-02"
RIVAL_TOKEN = "rival-token-9876543210-zyxwvutsrq"
HAPPY = [TxState.CREATED, TxState.PAYING, TxState.PAID, TxState.FULFILLING, TxState.FULFILLED, TxState.POSTED,
         TxState.COMPLETED]


# --- the kiosk, the gate and the ledgers -------------------------------------------------------------
@pytest.fixture
def env(tmp_path: Path) -> Iterator[DemoEnvironment]:
    with demo_environment(tmp_path) as environment:
        seed_demo(environment.backoffice_db_url, {KIOSK_ID: environment.settings.backoffice_token, RIVAL: RIVAL_TOKEN},
                  {"gate-1": (ServiceRole.GATE, GATE_TOKEN)})
        yield environment


def in_kiosk(env: DemoEnvironment, work: Callable[[KioskContext], Awaitable[T]], **overrides: Any) -> T:
    async def go() -> T:
        ctx = await KioskContext.open(KioskSettings(**{**env.settings.__dict__, **overrides}), env.data_dir)
        try:
            return await work(ctx)
        finally:
            await ctx.close()

    return asyncio.run(go())


def buy(env: DemoEnvironment, kind: str = "return", **overrides: Any) -> tuple[TicketResult, ScriptedUI]:
    ui = ScriptedUI({"ticket.choose_kind": kind, "ticket.confirm": True})

    async def work(ctx: KioskContext) -> TicketResult:
        return await QrTicketFlow(ctx, ui).run()

    return in_kiosk(env, work, **overrides), ui


def states(data: Path, tx_id: str) -> list[TxState]:
    with Journal(journal_path(data), kiosk_id="check") as j:
        return [e.state for e in j.get(tx_id).entries]


def paid_at(data: Path, tx_id: str) -> float:
    with Journal(journal_path(data), kiosk_id="check") as j:
        return next(e.at for e in j.get(tx_id).entries if e.state == TxState.PAID)


def keys(data: Path) -> dict[str, Any]:
    """What a gate is given: the kiosk's public key file (receipt-ed25519.pub) by kiosk id."""
    return {KIOSK_ID: read_public_key_file(data)}


def recorded(env: DemoEnvironment, ticket_id: str) -> TicketRecord | None:
    with BackofficeClient(env.settings.backoffice_url, env.settings.backoffice_token, retries=1) as client:
        try:
            return client.ticket_status(ticket_id)
        except TicketNotFound:
            return None


def redeem(url: str, ticket_id: str, gate_id: str = "gate-A1") -> requests.Response:
    return requests.post(f"{url}/api/v1/tickets/{ticket_id}/redeem", json={"gate_id": gate_id},
                         headers={"Authorization": f"Bearer {GATE_TOKEN}"}, timeout=10)


def printed_qr(env: DemoEnvironment) -> list[str]:
    """What a phone or a gate reads off the paper the printer emulator produced."""
    return [r.text for paper in env.printer.receipts() for r in zxingcpp.read_barcodes(paper.image.convert("L"))]


# --- T1: the happy path ------------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "trips"), [("single", 1), ("return", 2)])
def test_a_ticket_is_paid_recorded_printed_verified_and_each_trip_opens_a_gate_once(
        env: DemoEnvironment, kind: str, trips: int) -> None:
    result, ui = buy(env, kind)
    tx = result.transaction_id
    assert tx and result.outcome.ok and result.outcome.message_key == "ticket.done" and result.printed
    assert states(env.data_dir, tx) == HAPPY
    assert env.terminal.net_charged(tx) == TICKET_PRICES_RIALS[kind] == result.amount_rials

    # the paper carries one QR, the signed ticket, readable by a camera
    assert [r.qr_codes for r in env.printer.receipts()] == [[result.receipt_payload]]
    assert printed_qr(env) == [result.receipt_payload]
    ticket = verify_ticket(printed_qr(env)[0], keys(env.data_dir))
    until = valid_until_for(paid_at(env.data_dir, tx))
    assert (ticket.kiosk_id, ticket.ticket_id, ticket.kind, ticket.trips, ticket.amount_rials, ticket.valid_until) == (
        KIOSK_ID, tx, kind, trips, TICKET_PRICES_RIALS[kind], until)
    # valid until the end of the Tehran day it was bought on, plus three hours
    local = until.astimezone(dt.timezone(dt.timedelta(hours=3, minutes=30)))
    bought = dt.datetime.fromtimestamp(paid_at(env.data_dir, tx), local.tzinfo)
    assert (local.hour, local.minute) == (3, 0) and local.date() == bought.date() + dt.timedelta(days=1)

    # the back-office holds the same ticket, and its gates use each trip once
    record = recorded(env, tx)
    assert record is not None and (record.kind, record.trips, record.trips_used, record.amount_rials) == (
        kind, trips, 0, TICKET_PRICES_RIALS[kind])
    assert dt.datetime.fromisoformat(record.valid_until.replace("Z", "+00:00")) == until
    url = env.settings.backoffice_url
    for trip in range(1, trips + 1):
        used = redeem(url, tx, gate_id=f"gate-{trip}")
        assert used.status_code == 201 and used.json()["trip_no"] == trip, used.text
    again = redeem(url, tx)
    assert again.status_code == 409 and again.json()["error"] == "ticket.used"
    assert recorded(env, tx).trips_used == trips  # type: ignore[union-attr]
    # and a gate with no link counts the same way
    gate = OfflineGate(keys(env.data_dir))
    assert [gate.admit(result.receipt_payload) for _ in range(trips)] == list(range(1, trips + 1))
    with pytest.raises(TripsUsed):
        gate.admit(result.receipt_payload)
    assert [s.key for s in ui.transcript if s.kind == "step"][-2:] == ["ticket.issuing", "ticket.printing"]


# --- T2: nothing prints --------------------------------------------------------------------------------
@pytest.mark.parametrize("why", ["paper_out", "no_printer"])
def test_a_ticket_that_cannot_be_printed_is_shown_on_screen_and_is_valid(env: DemoEnvironment, why: str) -> None:
    overrides: dict[str, Any] = {}
    if why == "paper_out":
        env.printer.set_paper("out")
    else:
        overrides["devices"] = tuple(d for d in env.settings.devices if d.name != "printer")
    result, ui = buy(env, "single", **overrides)
    tx = result.transaction_id
    assert tx and result.outcome.ok and result.outcome.message_key == "ticket.done_on_screen"
    assert not result.printed and env.printer.jobs == []
    shown = [s for s in ui.transcript if s.key == "ticket.show_on_screen"]
    assert len(shown) == 1 and shown[0].params["payload"] == result.receipt_payload
    assert "photo" in shown[0].line("en") and "معتبر" in shown[0].line("fa")
    assert verify_ticket(shown[0].params["payload"], keys(env.data_dir)).ticket_id == tx
    assert states(env.data_dir, tx) == HAPPY
    assert recorded(env, tx) is not None and env.terminal.net_charged(tx) == TICKET_PRICES_RIALS["single"]
    notice = [s.key for s in ui.transcript if s.key == "ticket.no_printer_notice"]
    assert notice == (["ticket.no_printer_notice"] if why == "no_printer" else [])


# --- T3: declined --------------------------------------------------------------------------------------
def test_a_declined_card_issues_nothing(env: DemoEnvironment) -> None:
    env.terminal.set_mode("once-decline")
    result, ui = buy(env)
    tx = result.transaction_id
    assert tx and not result.outcome.ok and result.outcome.message_key == "pay.declined"
    assert result.final_state == TxState.DECLINED and result.receipt_payload is None
    assert states(env.data_dir, tx) == [TxState.CREATED, TxState.PAYING, TxState.DECLINED]
    assert env.printer.jobs == [] and recorded(env, tx) is None and env.terminal.net_charged(tx) == 0
    assert not [s for s in ui.transcript if s.key.startswith("ticket.show")]


# --- T4: refused ----------------------------------------------------------------------------------------
class _RivalFirst(http.server.BaseHTTPRequestHandler):
    """In front of the back-office: when the kiosk posts a ticket, another kiosk records a
    ticket under the same id first, then the kiosk's post goes through (and is refused)."""

    upstream = ""

    def log_message(self, *args: Any) -> None:
        pass

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.command == "POST" and self.path == "/api/v1/tickets":
            rival = {**json.loads(body), "transaction_id": "rival-sale-1"}
            requests.post(f"{self.upstream}/api/v1/tickets", json=rival, timeout=10,
                          headers={"Authorization": f"Bearer {RIVAL_TOKEN}", "Idempotency-Key": "rival-sale-1"})
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "idempotency-key",
                                                                            "content-type", "accept")}
        resp = requests.request(self.command, self.upstream + self.path, data=body or None, headers=headers, timeout=10)
        self.send_response(resp.status_code)
        self.send_header("Content-Type", resp.headers.get("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(resp.content)))
        self.end_headers()
        self.wfile.write(resp.content)

    do_GET = do_POST = _forward


def test_a_ticket_the_backoffice_refuses_is_reversed_and_not_printed(env: DemoEnvironment) -> None:
    handler = type("Rival", (_RivalFirst,), {"upstream": env.settings.backoffice_url})
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        result, ui = buy(env, backoffice_url=f"http://127.0.0.1:{proxy.server_address[1]}")
    finally:
        proxy.shutdown()
        proxy.server_close()
    tx = result.transaction_id
    assert tx and not result.outcome.ok and result.outcome.message_key == "ticket.refused_reversed"
    got = states(env.data_dir, tx)
    assert got[:4] == HAPPY[:4] and got[-2:] == [TxState.REVERSING, TxState.REVERSED], got
    assert env.printer.jobs == [] and result.receipt_payload is None
    assert env.terminal.net_charged(tx) == 0
    assert recorded(env, tx) is None  # the id is the rival's sale, not this kiosk's
    assert [s.key for s in ui.transcript if s.kind == "error"] == ["ticket.refused_reversed"]


# --- T5: the back-office unreachable --------------------------------------------------------------------
def test_with_the_backoffice_down_the_ticket_is_printed_valid_and_posted_later(env: DemoEnvironment) -> None:
    result, _ = buy(env, "single", backoffice_url="http://127.0.0.1:9")  # nothing listens on the discard port
    tx = result.transaction_id
    assert tx and result.outcome.ok and result.outcome.message_key == "ticket.done_pending" and result.printed
    assert result.final_state == TxState.FULFILLING
    assert verify_ticket(printed_qr(env)[0], keys(env.data_dir)).ticket_id == tx  # a gate admits it now
    assert recorded(env, tx) is None
    with Journal(journal_path(env.data_dir), kiosk_id="check") as j:
        assert [(i.kind, i.status) for i in j.outbox_for(tx)] == [("ticket_post", OutboxStatus.PENDING)]

    async def recover(ctx: KioskContext) -> list[Any]:
        return await Recovery(ctx.journal, ctx.money).run()

    rows = in_kiosk(env, recover)  # the back-office is back
    assert [(r.tx_id, r.to_state, r.resolved) for r in rows] == [(tx, "COMPLETED", True)]
    assert states(env.data_dir, tx) == HAPPY
    record = recorded(env, tx)
    assert record is not None and record.trips == 1 and env.terminal.net_charged(tx) == TICKET_PRICES_RIALS["single"]


# --- T6: crashes -----------------------------------------------------------------------------------------
def kiosk_demo(data: Path, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONUNBUFFERED": "1"}
    environ.pop("KIOSK_FAULT", None)
    if fault:
        environ["KIOSK_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "kiosk.cli", "demo", *args, "--data-dir", str(data)],
                          env=environ, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("point", "issued"), [("after-paid", False), ("after-post-sent", True),
                                               ("before-receipt", True)])
def test_a_crash_mid_sale_is_recovered_to_one_recorded_ticket_or_the_money_back(
        tmp_path: Path, point: str, issued: bool) -> None:
    crashed = kiosk_demo(tmp_path, "--headless", "--script", "qr-ticket", "--json", fault=point)
    assert crashed.returncode == 99, crashed.stdout[-2000:] + crashed.stderr[-2000:]
    assert f"KIOSK_FAULT: crashing at {point}" in crashed.stderr
    with Journal(journal_path(tmp_path), kiosk_id="check") as j:
        (tx,) = [t.tx_id for t in j.transactions()]

    again = kiosk_demo(tmp_path, "--script", "recover", "--json")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    rows = json.loads(again.stdout.strip().splitlines()[-1])
    assert [(r["tx_id"], r["to_state"], r["resolved"]) for r in rows] == [
        (tx, "COMPLETED" if issued else "REVERSED", True)]
    with Journal(journal_path(tmp_path), kiosk_id="check") as j:
        assert j.open_transactions() == [] and j.verify().ok
        got = [e.state for e in j.get(tx).entries]
    ledger = sqlite3.connect(tmp_path / "terminal-ledger.sqlite3")
    sales = ledger.execute("SELECT status, amount_rials FROM sales WHERE reference = ?", (tx,)).fetchall()
    ledger.close()
    office = sqlite3.connect(tmp_path / "backoffice.sqlite3")
    tickets = office.execute("SELECT ticket_id, trips, amount_rials FROM tickets").fetchall()
    office.close()
    price = TICKET_PRICES_RIALS["return"]
    if issued:
        assert got == HAPPY and sales == [("approved", price)] and tickets == [(tx, 2, price)]
        # never handed over before the crash: support shows it again from the journal, same QR
        with Journal(journal_path(tmp_path), kiosk_id="check") as j:
            again_qr = ticket_payload(j.get(tx), load_ticket_signer(tmp_path))
        assert again_qr and verify_ticket(again_qr, keys(tmp_path)).ticket_id == tx
    else:
        assert got[-1] == TxState.REVERSED and TxState.FULFILLING not in got
        assert sales == [("reversed", price)] and tickets == []
        with Journal(journal_path(tmp_path), kiosk_id="check") as j:
            assert ticket_payload(j.get(tx), load_ticket_signer(tmp_path)) is None


# --- T7: the gate's rule -----------------------------------------------------------------------------------
def _ticket(**changes: Any) -> TicketData:
    base: dict[str, Any] = {"kiosk_id": KIOSK_ID, "ticket_id": f"{KIOSK_ID}-20250601-0123abcd456789",
                            "kind": "return", "trips": 2, "amount_rials": 90_000,
                            "valid_until": dt.datetime(2025, 6, 1, 23, 30, tzinfo=dt.UTC)}
    return TicketData(**{**base, **changes})


NOON = dt.datetime(2025, 6, 1, 8, 30, tzinfo=dt.UTC)


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def test_a_ticket_verifies_with_its_kiosks_key_until_it_expires(key: Ed25519PrivateKey) -> None:
    payload = TicketSigner(key).sign(_ticket())
    assert payload.startswith(PREFIX) and len(payload) < 160
    gate_keys = {KIOSK_ID: key.public_key()}
    assert verify_ticket(payload, gate_keys, now=NOON) == verify_ticket(payload, gate_keys, now=NOON)
    assert verify_ticket(payload, gate_keys, now=NOON).trips == 2
    assert verify_ticket(payload, gate_keys, now=_ticket().valid_until).ticket_id == _ticket().ticket_id
    with pytest.raises(InvalidTicket) as late:
        verify_ticket(payload, gate_keys, now=_ticket().valid_until + dt.timedelta(seconds=1))
    assert late.value.reason == "expired"
    # ids that are not a journal transaction id travel too
    for odd in (f"{KIOSK_ID}-manual-7", "T-42"):
        assert verify_ticket(TicketSigner(key).sign(_ticket(ticket_id=odd)), gate_keys, now=NOON).ticket_id == odd


def test_any_tampered_character_is_refused(key: Ed25519PrivateKey) -> None:
    payload = TicketSigner(key).sign(_ticket())
    gate_keys = {KIOSK_ID: key.public_key()}
    reasons = set()
    for i in range(len(PREFIX), len(payload)):
        if payload[i] == ".":
            continue
        swapped = "B" if payload[i] != "B" else "C"
        with pytest.raises(InvalidTicket) as bad:
            verify_ticket(payload[:i] + swapped + payload[i + 1:], gate_keys, now=NOON)
        reasons.add(bad.value.reason)
    assert reasons <= {"signature", "format", "unknown_kiosk"} and "signature" in reasons


def test_another_key_an_unknown_kiosk_wrong_trips_and_a_receipt_are_refused(key: Ed25519PrivateKey) -> None:
    payload = TicketSigner(key).sign(_ticket())

    def reason(text: str, gate_keys: dict[str, Any]) -> str:
        with pytest.raises(InvalidTicket) as bad:
            verify_ticket(text, gate_keys, now=NOON)
        return bad.value.reason

    assert reason(payload, {KIOSK_ID: Ed25519PrivateKey.generate().public_key()}) == "signature"
    assert reason(payload, {"kiosk-other": key.public_key()}) == "unknown_kiosk"
    # a body the key did sign, but with one trip for a return ticket: not a ticket this kiosk issues
    body = bytearray(encode_body(_ticket()))
    body[1] = 1
    forged = f"{PREFIX}{_b64e(bytes(body))}.{_b64e(key.sign(PREFIX.encode() + bytes(body)))}"
    assert reason(forged, {KIOSK_ID: key.public_key()}) == "format"
    # the same key signs receipts: a receipt is never a ticket, nor a ticket body under CK2
    receipt = ReceiptSigner(key).sign(ReceiptData(
        tx_id=_ticket().ticket_id, kiosk_id=KIOSK_ID, kind="qr_ticket", amount_rials=90_000, at=NOON, bill_id="",
        payment_id="", service_label_fa="", service_label_en="", tracking_code="", rrn="", stan="",
        masked_pan="", status="paid", journal_seq=1, journal_hash="ab" * 32))
    assert reason(receipt, {KIOSK_ID: key.public_key()}) == "format"
    body = encode_body(_ticket())
    crossed = f"{PREFIX}{_b64e(body)}.{_b64e(key.sign(b'CK2:' + body))}"
    assert reason(crossed, {KIOSK_ID: key.public_key()}) == "signature"
    assert reason("CKT9:abc.def", {KIOSK_ID: key.public_key()}) == "unknown_version"
