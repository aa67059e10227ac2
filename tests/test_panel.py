"""The device simulator panel (kiosk_demo/panel) over HTTP, against a real DemoEnvironment: what
the panel does to a simulator is checked through the kiosk's real driver on the simulator's
real wire (PN532 on its pty, serial scanner, ESC/POS over TCP, nexo over HTTPS)."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from PIL import Image

from devices.contracts import KeyType, PaperState, PaymentOutcome, PrintJob
from devices.base import DeviceError, DeviceOffline
from devices.registry import create
from devices.transit_card.demo import DEMO_CARD_SERIAL, DEMO_CARD_UID
from kiosk.bills import parse_barcode
from kiosk_demo.environment import demo_environment
from kiosk_demo.panel import GUARD_HEADER, PanelServer, serve_panel

GUARD = {GUARD_HEADER: "1"}


class Harness:
    def __init__(self, env: Any, url: str) -> None:
        self.env = env
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        headers = {**GUARD, **kw.pop("headers", {})}
        return self.http.post(path, json=body if body is not None else {}, headers=headers, **kw)

    def ok(self, path: str, body: Any = None) -> dict[str, Any]:
        resp = self.post(path, body)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def device(self, name: str) -> Any:
        config = next(d for d in self.env.settings.devices if d.name == name)
        return create(config)


@pytest.fixture(scope="module")
def panel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    data = tmp_path_factory.mktemp("panel")
    with demo_environment(data) as env, serve_panel(env) as server:
        h = Harness(env, server.url)
        yield h
        h.http.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_cards_placed_and_removed_on_the_panel_are_what_the_pn532_driver_sees(panel: Harness) -> None:
    async def present() -> Any:
        reader = panel.device("card_reader")
        await reader.open()
        try:
            return await reader.card_present()
        finally:
            await reader.close()

    cards = panel.get("/api/cards").json()
    demo = next(c for c in cards["cards"] if c["uid"] == DEMO_CARD_UID)
    assert demo["serial"] == DEMO_CARD_SERIAL and demo["balance_rials"] > 0
    assert run(present()).uid == DEMO_CARD_UID

    assert panel.ok("/api/cards/remove")["in_field"] is None
    assert run(present()) is None

    made = panel.ok("/api/cards/new", {"uid_bytes": 7})
    assert len(made["uid"]) == 14 and made["in_field"] == made["uid"]
    row = next(c for c in made["cards"] if c["uid"] == made["uid"])
    assert row["blank"] and row["uid_bytes"] == 7

    async def read_blank() -> tuple[Any, bytes]:
        reader = panel.device("card_reader")
        await reader.open()
        try:
            card = await reader.select()
            # a factory-blank card: transport key FF…FF opens sector 1, whose blocks are empty
            await reader.authenticate(4, KeyType.A, b"\xff" * 6, card.uid_bytes[-4:])
            return card, await reader.read_block(4)
        finally:
            await reader.close()

    card, block = run(read_blank())
    assert card.uid == made["uid"] and block == bytes(16)

    back = panel.ok("/api/cards/place", {"uid": DEMO_CARD_UID.upper()})
    assert back["in_field"] == DEMO_CARD_UID
    assert run(present()).uid == DEMO_CARD_UID
    # the new card is kept by the reader (and its cards file), so it can be placed again
    assert made["uid"] in {c["uid"] for c in back["cards"]}
    assert made["uid"] in (panel.env.data_dir / "cards.json").read_text()


def test_a_card_pulled_away_mid_write_from_the_panel_tears_the_drivers_write(panel: Harness) -> None:
    made = panel.ok("/api/cards/new", {"uid_bytes": 4})
    uid = made["uid"]
    armed = panel.ok("/api/cards/tear", {"at_op": 1, "after_bytes": 5})
    assert armed["tear"] == {"uid": uid, "at_op": 1, "after_bytes": 5}

    async def write() -> None:
        reader = panel.device("card_reader")
        await reader.open()
        try:
            card = await reader.select()
            await reader.authenticate(4, KeyType.A, b"\xff" * 6, card.uid_bytes)
            await reader.write_block(4, bytes(range(1, 17)))
        finally:
            await reader.close()

    with pytest.raises(DeviceError):
        run(write())
    assert panel.get("/api/cards").json()["in_field"] is None
    # the torn block kept its first 5 new bytes; the card can be put back
    torn = panel.env.card_reader.cards[uid]
    assert torn.block(4) == bytes(range(1, 6)) + bytes(11)
    assert panel.ok("/api/cards/place", {"uid": uid})["in_field"] == uid
    assert panel.post("/api/cards/remove").status_code == 200
    refused = panel.post("/api/cards/tear", {})
    assert refused.status_code == 409 and refused.json()["error"] == "panel.unavailable"
    panel.ok("/api/cards/place", {"uid": DEMO_CARD_UID})


def test_a_slip_scanned_on_the_panel_reaches_the_scanner_driver_as_its_barcode(panel: Harness) -> None:
    slips = panel.get("/api/slips", params={"limit": 5}).json()["slips"]
    assert len(slips) == 5 and all(s["amount_rials"] > 0 for s in slips)
    slip = slips[1]
    assert slip["barcode"] == slip["bill_id"].zfill(13) + slip["payment_id"].zfill(13)

    async def scan() -> Any:
        scanner = panel.device("scanner")
        await scanner.open()
        try:
            reading = asyncio.create_task(scanner.read(timeout=5))
            await asyncio.sleep(0.2)
            resp = await asyncio.to_thread(panel.post, "/api/scan", {"bill_id": slip["bill_id"],
                                                                      "payment_id": slip["payment_id"]})
            assert resp.status_code == 200, resp.text
            return await reading
        finally:
            await scanner.close()

    code = run(scan())
    assert code.text == slip["barcode"]
    bill = parse_barcode(code.text)
    assert (bill.bill_id, bill.payment_id) == (slip["bill_id"], slip["payment_id"])


def test_printer_controls_on_the_panel_are_what_the_escpos_driver_reports(panel: Harness) -> None:
    async def paper() -> PaperState:
        printer = panel.device("printer")
        await printer.open()
        try:
            return await printer.paper_state()
        finally:
            await printer.close()

    async def print_one() -> None:
        printer = panel.device("printer")
        await printer.open()
        try:
            await printer.print_job(PrintJob([("text", "COVER TEST")]))
        finally:
            await printer.close()

    try:
        assert panel.ok("/api/printer", {"paper": "out"})["paper"] == "out"
        assert run(paper()) == PaperState.OUT
        assert panel.ok("/api/printer", {"paper": "low"})["paper"] == "low"
        assert run(paper()) == PaperState.LOW
        state = panel.ok("/api/printer", {"paper": "ok", "cover_open": True})
        assert state == {**state, "paper": "ok", "cover_open": True, "online": True}
        with pytest.raises(DeviceOffline):
            run(print_one())
        assert panel.ok("/api/printer", {"cover_open": False, "online": False})["online"] is False
        with pytest.raises(DeviceOffline):
            run(print_one())
    finally:
        panel.ok("/api/printer", {"paper": "ok", "cover_open": False, "online": True})
    assert run(paper()) == PaperState.OK
    assert panel.get("/api/state").json()["printer"]["paper"] == "ok"


def test_terminal_answer_and_latency_chosen_on_the_panel_reach_the_nexo_driver(panel: Harness) -> None:
    async def pay(reference: str) -> tuple[Any, float]:
        terminal = panel.device("terminal")
        await terminal.open()
        try:
            started = time.monotonic()
            result = await terminal.pay(terminal.new_ref(reference), 40_000, timeout=10)
            return result, time.monotonic() - started
        finally:
            await terminal.close()

    state = panel.ok("/api/terminal", {"answer": "decline", "once": True, "latency_s": 0.6})
    assert state["once"] and state["next"] == "decline" and state["standing"] == "approve"
    assert state["latency_s"] == 0.6 and "timeout" in state["modes"]
    declined, took = run(pay("panel-decline-1"))
    assert declined.outcome == PaymentOutcome.DECLINED and declined.error_condition == "Refusal"
    assert took >= 0.6
    # "next payment only": the standing answer comes back by itself
    after = panel.get("/api/terminal").json()
    assert after["once"] is False and after["mode"] == "approve"
    approved, _ = run(pay("panel-approve-1"))
    assert approved.outcome == PaymentOutcome.APPROVED

    try:
        assert panel.ok("/api/terminal", {"answer": "decline", "latency_s": 0})["standing"] == "decline"
        for n in range(2):
            assert run(pay(f"panel-decline-standing-{n}"))[0].outcome == PaymentOutcome.DECLINED
    finally:
        panel.ok("/api/terminal", {"answer": "approve", "latency_s": 0})
    assert panel.env.terminal.net_charged("panel-decline-1") == 0


def test_printed_documents_are_listed_newest_first_as_pngs_decoded_from_the_jobs(panel: Harness) -> None:
    before = panel.get("/api/printed").json()["printed"]

    def stripe(width: int, height: int) -> Image.Image:
        img = Image.new("1", (width, height), 1)
        for x in range(width):
            for y in range(0, height, 8):
                img.putpixel((x, y), 0)
        return img

    async def print_two() -> None:
        printer = panel.device("printer")
        await printer.open()
        try:
            await printer.print_job(PrintJob([("image", stripe(384, 64)), ("qr", "CKR1:panel-test")]))
            await printer.print_job(PrintJob([("image", stripe(576, 40)), ("feed", 2)]))
        finally:
            await printer.close()

    run(print_two())
    panel.env.printer.wait_for_jobs(len(before) + 2)
    listed = panel.get("/api/printed").json()["printed"]
    assert len(listed) == len(before) + 2
    newest, older = listed[0], listed[1]
    assert newest["n"] == len(before) + 1 and older["n"] == len(before)
    assert older["qr_codes"] == 1 and newest["qr_codes"] == 0
    for item in (newest, older):
        resp = panel.get(item["url"])
        assert resp.status_code == 200 and resp.headers["content-type"] == "image/png"
        image = Image.open(io.BytesIO(resp.content))
        assert image.format == "PNG" and image.size == (item["width"], item["height"]) and image.width == 576
    # the picture is the printer emulator's own decoding of those bytes
    decoded = panel.env.printer.receipts()[older["n"]]
    png = Image.open(io.BytesIO(panel.get(older["url"]).content)).convert("1")
    assert png.tobytes() == decoded.image.convert("1").tobytes()
    assert decoded.qr_codes == ["CKR1:panel-test"]
    assert panel.get(f"/api/printed/{len(listed)}.png").status_code == 404


def test_the_page_and_its_files_come_from_the_package_with_a_strict_policy(panel: Harness) -> None:
    page = panel.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "پنل شبیه‌سازهای کیوسک" in page.text and "Kiosk device simulators" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from the internet
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    for name, kind in (("panel.js", "text/javascript"), ("panel.css", "text/css"),
                       ("Vazirmatn-Regular.ttf", "font/ttf")):
        resp = panel.get(f"/static/{name}")
        assert resp.status_code == 200 and resp.headers["content-type"].startswith(kind), name
    assert GUARD_HEADER in panel.get("/static/panel.js").text
    assert panel.get("/static/../server.py").status_code == 404
    assert panel.http.head("/api/state").status_code == 200
    missing = panel.http.head("/api/nothing")
    assert missing.status_code == 404 and missing.content == b""
    assert panel.get("/favicon.ico").status_code == 204  # asked for by every browser: no error logged


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "key"), [
    ("post", "/api/printer", {"json": {"paper": "out"}}, 403, "panel.forbidden"),  # no guard header
    ("post", "/api/printer", {"json": {"paper": "out"}, "headers": {**GUARD, "Origin": "http://evil.example"}},
     403, "panel.forbidden"),
    ("get", "/api/state", {"headers": {"Host": "evil.example"}}, 403, "panel.forbidden"),  # DNS rebinding
    ("post", "/api/printer", {"content": b"paper=out", "headers": {**GUARD, "Content-Type": "text/plain"}},
     415, "panel.unsupported_type"),
    ("post", "/api/printer", {"content": b"{not json", "headers": {**GUARD, "Content-Type": "application/json"}},
     400, "panel.bad_request"),
    ("post", "/api/printer", {"json": ["paper"], "headers": GUARD}, 400, "panel.bad_request"),
    ("post", "/api/printer", {"json": {"paper": "gone"}, "headers": GUARD}, 400, "panel.bad_request"),
    ("post", "/api/printer", {"json": {"cover_open": "yes"}, "headers": GUARD}, 400, "panel.bad_request"),
    ("post", "/api/printer", {"json": {}, "headers": GUARD}, 400, "panel.bad_request"),
    ("post", "/api/terminal", {"json": {"answer": "maybe"}, "headers": GUARD}, 400, "panel.bad_request"),
    ("post", "/api/terminal", {"json": {"latency_s": 500}, "headers": GUARD}, 400, "panel.bad_request"),
    ("post", "/api/terminal", {"json": {"latency_s": True}, "headers": GUARD}, 400, "panel.bad_request"),
    ("post", "/api/terminal", {"json": {"once": True}, "headers": GUARD}, 400, "panel.bad_request"),
    ("post", "/api/cards/place", {"json": {"uid": "zz"}, "headers": GUARD}, 400, "panel.bad_request"),
    ("post", "/api/cards/place", {"json": {"uid": "deadbeef"}, "headers": GUARD}, 404, "panel.not_found"),
    ("post", "/api/cards/new", {"json": {"uid_bytes": 5}, "headers": GUARD}, 400, "panel.bad_request"),
    ("post", "/api/cards/tear", {"json": {"at_op": 0}, "headers": GUARD}, 400, "panel.bad_request"),
    ("post", "/api/cards/tear", {"json": {"after_bytes": 17}, "headers": GUARD}, 400, "panel.bad_request"),
    ("post", "/api/scan", {"json": {"code": "line\r\nbreak"}, "headers": GUARD}, 400, "panel.bad_request"),
    ("post", "/api/scan", {"json": {"bill_id": "12a", "payment_id": "1"}, "headers": GUARD}, 400,
     "panel.bad_request"),
    ("post", "/api/scan", {"json": {"code": "x" * (17 * 1024)}, "headers": GUARD}, 413, "panel.too_large"),
    ("get", "/api/slips?limit=0", {}, 400, "panel.bad_request"),
    ("get", "/api/cards/place", {}, 405, "panel.method_not_allowed"),
    ("post", "/api/state", {"json": {}, "headers": GUARD}, 405, "panel.method_not_allowed"),
    ("put", "/api/printer", {"json": {}}, 405, "panel.method_not_allowed"),
    ("get", "/api/nothing", {}, 404, "panel.not_found"),
])
def test_bad_requests_get_a_clear_json_error(panel: Harness, method: str, path: str, kwargs: dict[str, Any],
                                             status: int, key: str) -> None:
    before = panel.get("/api/state").json()
    resp = getattr(panel.http, method)(path, **kwargs)
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error"] == key and body["message_en"] and body["message_fa"]
    assert panel.get("/api/state").json() == before  # a refused request changed nothing


def test_the_panel_listens_on_loopback_only(panel: Harness) -> None:
    for host in ("0.0.0.0", "192.168.1.10", "::1", "example.com"):
        with pytest.raises(ValueError):
            PanelServer(panel.env, host=host)
    assert panel.url.startswith("http://127.0.0.1:")


def test_kiosk_demo_panel_prints_its_url_serves_it_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    kiosk = Path(sys.executable).with_name("kiosk")
    proc = subprocess.Popen([str(kiosk), "demo", "--panel", "--data-dir", str(tmp_path / "data")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("panel: http://127.0.0.1:"), line + (proc.stderr.read() if proc.poll() else "")
        url = line.split(" ", 1)[1].strip()
        state = httpx.get(url + "api/state", timeout=10).json()
        assert state["cards"]["in_field"] == DEMO_CARD_UID
        moved = httpx.post(url + "api/terminal", json={"answer": "timeout"}, headers=GUARD, timeout=10)
        assert moved.json()["standing"] == "timeout"
        # the data dir is the demo's: a second panel on it is refused, with the first one's pid
        second = subprocess.run([str(kiosk), "demo", "--panel", "--data-dir", str(tmp_path / "data")],
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1 and str(proc.pid) in second.stderr
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "panel stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "api/state", timeout=2)


def test_kiosk_demo_panel_refuses_a_port_in_use_and_a_bad_port(tmp_path: Path) -> None:
    import socket

    kiosk = Path(sys.executable).with_name("kiosk")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = subprocess.run([str(kiosk), "demo", "--panel", "--panel-port", str(port),
                               "--data-dir", str(tmp_path / "a")], capture_output=True, text=True, timeout=60)
    assert busy.returncode == 1 and f"127.0.0.1:{port}" in busy.stderr
    bad = subprocess.run([str(kiosk), "demo", "--panel", "--panel-port", "70000", "--data-dir", str(tmp_path / "b")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--panel-port" in bad.stderr


def test_a_citizen_pays_a_slip_scanned_from_the_panel_after_a_decline_chosen_there(panel: Harness) -> None:
    """The panel's purpose: a kiosk flow waits on its devices and the panel plays the citizen's
    hands — one decline chosen on the panel, then the same slip scanned again and paid."""
    from kiosk.context import KioskContext
    from kiosk.flows.fee_payment import FeePaymentFlow
    from kiosk.journal import TxState
    from kiosk.scripted_ui import ScriptedUI

    slip = panel.get("/api/slips", params={"limit": 3}).json()["slips"][2]
    printed_before = len(panel.get("/api/printed").json()["printed"])

    async def pay_by_scanning() -> Any:
        ctx = await KioskContext.open(panel.env.settings, panel.env.data_dir)
        try:
            ui = ScriptedUI({"fee.how_to_enter": "wait", "fee.confirm": True}, echo=False)

            async def hand() -> None:  # the person clicks "Scan" once the kiosk is waiting
                await asyncio.sleep(0.5)
                resp = await asyncio.to_thread(panel.post, "/api/scan", {"code": slip["barcode"]})
                assert resp.status_code == 200, resp.text

            scanning = asyncio.create_task(hand())
            result = await FeePaymentFlow(ctx, ui).run()
            await scanning
            return result
        finally:
            await ctx.close()

    panel.ok("/api/terminal", {"answer": "decline", "once": True, "latency_s": 0.2})
    declined = run(pay_by_scanning())
    assert declined.final_state == TxState.DECLINED and declined.amount_rials == slip["amount_rials"]
    assert panel.get("/api/terminal").json()["once"] is False  # used up by that payment
    paid = run(pay_by_scanning())
    assert paid.final_state == TxState.COMPLETED
    panel.ok("/api/terminal", {"latency_s": 0})

    panel.env.printer.wait_for_jobs(printed_before + 1)
    printed = panel.get("/api/printed").json()["printed"]
    assert len(printed) >= printed_before + 1 and printed[0]["qr_codes"] == 1
    decoded = panel.env.printer.receipts()[printed[0]["n"]]
    assert decoded.qr_codes == [paid.receipt_payload]
    assert slip["barcode"] not in {s["barcode"] for s in panel.get("/api/slips", params={"limit": 500}).json()["slips"]}
