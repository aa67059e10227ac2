"""The managers' web dashboard in headless Chromium (playwright, /usr/bin/chromium) against a
real fleet server on SQLite and PostgreSQL: sign-in with a manager token, the kiosk list with
its alerts, a kiosk's page, accepting a pending kiosk as an operator, the audit log as an
admin; a viewer and a cross-site form refused and audited; nothing loaded from elsewhere."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
import requests
from playwright.sync_api import Browser, Page, sync_playwright

from provisioning.server.models import Role
from test_fleet_support import Fleet, SignedKiosk, fleet, fleet_db, fleet_pg_database  # noqa: F401

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def _sign_in(page: Page, url: str, token: str) -> None:
    page.goto(url + "/ui/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")


def test_the_dashboard(fleet: Fleet, browser: Browser) -> None:
    pending = SignedKiosk(fleet.url, "kiosk-new")
    assert pending.enroll(fleet.enroll_token(needs_approval=True)).status_code == 201
    busy = SignedKiosk(fleet.url, "kiosk-busy")
    assert busy.enroll(fleet.enroll_token(site="north")).status_code == 201
    busy.heartbeat(devices={"terminal": "fault: no paper"}, refunds_pending=1)
    viewer = fleet.manager_token("vera", Role.VIEWER)
    operator = fleet.manager_token("olga", Role.OPERATOR)
    context = browser.new_context()
    page = context.new_page()
    seen: list[str] = []
    page.on("request", lambda req: seen.append(req.url))

    page.goto(fleet.url + "/ui/")
    assert page.url.endswith("/ui/login")  # not signed in: the sign-in page
    _sign_in(page, fleet.url, "fleetm_not-a-real-token-at-all-xxxxxxxxxx")
    assert "not a valid manager token" in page.content()
    assert any(a["action"] == "ui sign-in" for a in fleet.audit("auth.unauthorized"))

    _sign_in(page, fleet.url, viewer)
    assert page.url.endswith("/ui/")
    row = page.locator("tr[data-kiosk=kiosk-busy]")
    assert "device terminal: fault: no paper" in row.inner_text()
    assert "1 refund(s) pending for an operator" in row.inner_text()
    assert page.locator("tr[data-kiosk=kiosk-new] button").count() == 0  # a viewer gets no buttons
    assert page.locator("a[href='/ui/audit']").count() == 0
    # a viewer posting the accept form anyway is refused, and it is audited
    r = page.request.post(fleet.url + "/ui/kiosks/kiosk-new/accept", headers={"Origin": fleet.url})
    assert r.status == 403 and "needs the operator role" in r.text()
    assert fleet.audit("auth.forbidden")[0]["actor"] == "manager:vera"
    page.click("a[href='/ui/kiosks/kiosk-busy']")
    assert "Kiosk kiosk-busy" in page.inner_text("h1") and "device terminal" in page.content()
    page.goto(fleet.url + "/ui/audit")
    assert "needs the admin role" in page.content()

    page.goto(fleet.url + "/ui/logout")
    _sign_in(page, fleet.url, operator)
    page.click("tr[data-kiosk=kiosk-new] button[value=accept]")
    assert page.locator("tr[data-kiosk=kiosk-new] td.status").inner_text() == "accepted"
    assert pending.heartbeat().status_code == 200
    # the same form from another site's page is refused (besides the SameSite cookie)
    cookie = next(c["value"] for c in context.cookies() if c["name"] == "fleet_token")
    forged = requests.post(fleet.url + "/ui/kiosks/kiosk-busy/revoke", cookies={"fleet_token": cookie},
                           headers={"Origin": "https://evil.example"}, allow_redirects=False, timeout=10)
    assert forged.status_code == 403 and fleet.audit("ui.cross_site")

    page.goto(fleet.url + "/ui/logout")
    _sign_in(page, fleet.url, fleet.admin)
    page.goto(fleet.url + "/ui/audit")
    text = page.inner_text("table")
    assert "manager:olga" in text and "kiosk.accept" in text and "ui.cross_site" in text
    assert all(u.startswith(fleet.url) for u in seen), [u for u in seen if not u.startswith(fleet.url)]
    headers: dict[str, Any] = requests.get(fleet.url + "/ui/login", timeout=10).headers
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    context.close()
