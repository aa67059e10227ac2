"""The device simulator panel's page in Debian's headless Chromium (playwright drives it; no
browser is downloaded): clicks on the page change the simulators, and the page shows it.

Chromium is a Debian package (`make` installs it, see DEB_PACKAGES); without it this test
fails and says so — it is never skipped."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from devices.contracts import PrintJob
from devices.registry import create
from devices.transit_card.demo import DEMO_CARD_UID
from kiosk_demo.environment import demo_environment
from kiosk_demo.panel import serve_panel
from playwright.sync_api import expect

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install chromium`, or `make test` "
                    "as root, which installs DEB_PACKAGES); the panel's browser test needs it", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        try:
            yield b
        finally:
            b.close()


def _print(env: Any) -> None:
    from PIL import Image

    async def go() -> None:
        printer = create(next(d for d in env.settings.devices if d.name == "printer"))
        await printer.open()
        try:
            await printer.print_job(PrintJob([("image", Image.new("1", (576, 48), 0)), ("qr", "CKR1:browser")]))
        finally:
            await printer.close()

    # playwright's sync API keeps an event loop on this thread: the driver runs on its own
    worker = threading.Thread(target=asyncio.run, args=(go(),))
    worker.start()
    worker.join(30)


def test_the_page_places_a_card_toggles_paper_and_shows_what_was_printed(browser: Any, tmp_path: Path) -> None:
    console_errors: list[str] = []
    (tmp_path / "data").mkdir()
    with demo_environment(tmp_path / "data") as env, serve_panel(env) as server:
        page = browser.new_page(viewport={"width": 1200, "height": 1600})
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: console_errors.append(str(e)))
        page.goto(server.url)
        page.wait_for_selector("body[data-ready='1']", timeout=10_000)
        assert page.locator("#card-in-field").inner_text() == DEMO_CARD_UID
        assert "کارت بلیت" in page.content()

        # take the card off, then put it back, by clicking
        page.click("#remove-card")
        expect(page.locator("#card-in-field")).to_have_text("—", timeout=5000)
        assert env.card_reader.card is None
        page.click(f"button.place[data-uid='{DEMO_CARD_UID}']")
        expect(page.locator("#card-in-field")).to_have_text(DEMO_CARD_UID, timeout=5000)
        assert env.card_reader.card is not None and env.card_reader.card.uid_hex == DEMO_CARD_UID
        assert page.locator(f"tr.in-field[data-uid='{DEMO_CARD_UID}']").count() == 1

        # a new blank 7-byte card goes on the reader
        page.click("#new-card-7")
        expect(page.locator("#card-in-field")).to_have_text(re.compile(r"^[0-9a-f]{14}$"), timeout=5000)
        assert len(env.card_reader.card.uid) == 7
        expect(page.locator("tr.in-field td").nth(1)).to_have_text("خام blank")

        page.click("#tear-card")
        expect(page.locator("#message")).to_contain_text("leaves at the next block write", timeout=5000)

        # paper out, then the cover opened: the emulator changes and so does the page
        page.click("#paper-out")
        page.wait_for_selector("#paper-out.active", timeout=5000)
        assert "paper out" in page.locator("#printer-state").inner_text()
        assert env.printer._model.paper == "out"
        page.click("#cover-toggle")
        page.wait_for_selector("#cover-toggle.active", timeout=5000)
        assert env.printer._model.cover_open is True
        page.click("#paper-ok")
        page.click("#cover-toggle")
        expect(page.locator("#printer-state")).to_contain_text("paper ok · cover closed", timeout=5000)
        assert env.printer._model.paper == "ok" and env.printer._model.cover_open is False

        # the terminal's next answer and delay
        page.select_option("#terminal-answer", "decline")
        page.fill("#terminal-latency", "1.5")
        page.click("#terminal-apply")
        expect(page.locator("#terminal-state")).to_contain_text("next payment decline", timeout=5000)
        assert env.terminal.mode == "once-decline" and env.terminal.latency_s == 1.5

        # a slip from the list is scanned: its barcode goes to the scanner's wire
        page.wait_for_selector("#slip-list button.scan", timeout=5000)
        barcode = page.locator("#slip-list button.scan").first.get_attribute("data-barcode")
        assert barcode and len(barcode) == 26 and barcode.isdigit()
        page.locator("#slip-list button.scan").first.click()
        expect(page.locator("#message")).to_contain_text(f"barcode sent: {barcode}", timeout=5000)

        assert console_errors == []
        # a bad request shows its error on the page (the browser logs the 400 too)
        page.fill("#scan-text", "é")
        page.click("#scan-send")
        page.wait_for_selector("#message.error", timeout=5000)
        assert "printable ASCII" in page.locator("#message").inner_text()
        assert [e for e in console_errors if "400 (Bad Request)" not in e] == []
        console_errors.clear()

        # something printed appears as an image, decoded from the ESC/POS job
        _print(env)
        page.wait_for_selector("#printed-list figure.printed img", timeout=10_000)
        img = page.locator("#printed-list figure.printed img").first
        expect(img).to_have_js_property("naturalWidth", 576, timeout=5000)
        shot = tmp_path / "panel.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        keep = os.environ.get("KIOSK_PANEL_SCREENSHOT")
        if keep:  # a person can look at it: KIOSK_PANEL_SCREENSHOT=/tmp/panel.png
            shutil.copy(shot, keep)
        page.close()
    assert console_errors == []
