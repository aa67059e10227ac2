"""The dashboard's pages for issue 11 item 8, in headless Chromium (playwright, /usr/bin/chromium)
against a real fleet server on SQLite and PostgreSQL: reconciliation (run from the page against
a real back-office, each kiosk's differences), commands (queued from a kiosk's page, listed with
their feedback), configuration pushes (admin only), rollout control (pause/resume for an
operator, abort for an admin) and the transactions-per-hour chart (server-rendered SVG). Forms
obey the Origin check and the roles; refusals and actions are audited; nothing is loaded from
elsewhere and no script runs."""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterator

import pytest
import requests
from playwright.sync_api import Browser, Page, sync_playwright

from provisioning.server import service as svc
from provisioning.server.app import Settings
from provisioning.server.db import make_engine, session_factory
from provisioning.server.models import Role
from provisioning.server.server import serve_in_thread
from test_fleet_reconcile import (  # noqa: F401
    INTEGRATION,
    K1,
    K2,
    SETTLED,
    Backoffice,
    Chain,
    _no_old_results,
    away_from_midnight,
    backoffice,
    pay,
    today,
    tx_id,
    unpaid_slips,
)
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


@pytest.fixture
def fleet_with_backoffice(fleet_db: str, backoffice: Backoffice) -> Iterator[Fleet]:
    """A fleet server started as `fleet serve --backoffice URL` with the integration token."""
    server = serve_in_thread(fleet_db, settings=Settings(backoffice_url=backoffice.url, backoffice_token=INTEGRATION))
    engine = make_engine(fleet_db)
    sessions = session_factory(engine)
    with sessions() as s, s.begin():
        admin = svc.create_manager_token(s, svc.CLI, "root", Role.ADMIN)
    try:
        yield Fleet(server.url, fleet_db, server, sessions, admin)
    finally:
        server.stop()
        engine.dispose()


def _sign_in(page: Page, url: str, token: str) -> None:
    page.goto(url + "/ui/logout")
    page.goto(url + "/ui/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")


def _no_script_nothing_from_elsewhere(page: Page, seen: list[str], base: str) -> None:
    assert all(u.startswith(base) for u in seen), [u for u in seen if not u.startswith(base)]
    assert page.locator("script").count() == 0


def test_reconciliation_and_activity_pages(fleet_with_backoffice: Fleet, backoffice: Backoffice,
                                           browser: Browser) -> None:
    f, bo = fleet_with_backoffice, backoffice
    away_from_midnight()
    token = f.enroll_token(max_uses=2)
    k1, k2 = SignedKiosk(f.url, K1), SignedKiosk(f.url, K2)
    for k in (k1, k2):
        assert k.enroll(token).status_code == 201
    s_ok, s_missing, s_k2 = unpaid_slips(bo, 3)
    c1, c2 = Chain(k1), Chain(k2)
    t_ok, t_missing, t_k2 = tx_id("k1"), tx_id("k1"), tx_id("k2")
    c1.add(t_ok, "fee_payment", s_ok["amount_rials"], SETTLED, data={"bill_id": s_ok["bill_id"],
                                                                      "payment_id": s_ok["payment_id"]})
    c1.add(t_missing, "fee_payment", s_missing["amount_rials"], SETTLED,
           data={"bill_id": s_missing["bill_id"], "payment_id": s_missing["payment_id"]})
    c2.add(t_k2, "fee_payment", s_k2["amount_rials"], SETTLED,
           data={"bill_id": s_k2["bill_id"], "payment_id": s_k2["payment_id"]})
    c1.upload()
    c2.upload()
    pay(bo, K1, t_ok, s_ok)
    pay(bo, K2, t_k2, s_k2)
    day = today()
    viewer = f.manager_token("vera", Role.VIEWER)
    operator = f.manager_token("olga", Role.OPERATOR)
    page = browser.new_context().new_page()
    seen: list[str] = []
    page.on("request", lambda req: seen.append(req.url))

    _sign_in(page, f.url, viewer)
    page.click("a[href='/ui/reconciliation']")
    assert "No day reconciled yet" in page.content() and page.locator("form[action='/ui/reconciliation']").count() == 0
    r = page.request.post(f.url + "/ui/reconciliation", form={"date": day.isoformat()}, headers={"Origin": f.url})
    assert r.status == 403 and "needs the operator role" in r.text()
    assert any(a["action"] == "reconcile.run" and a["actor"] == "manager:vera" for a in f.audit("auth.forbidden"))

    _sign_in(page, f.url, operator)
    page.goto(f.url + "/ui/reconciliation")
    assert page.input_value("input[name=date]") == day.isoformat()
    page.click("form[action='/ui/reconciliation'] button[type=submit]")
    assert page.url.endswith(f"/ui/reconciliation/{day}")
    assert "2 kiosk(s), 1 difference(s) at 1 kiosk(s)" in page.inner_text("#summary")
    assert page.locator(f"tr[data-kiosk={K2}] td.ok").inner_text() == "none"
    diff = page.locator(f"table.differences[data-kiosk={K1}] tr[data-tx='{t_missing}']")
    assert "missing_at_backoffice" in diff.inner_text() and str(s_missing["amount_rials"]) in diff.inner_text()
    page.goto(f.url + "/ui/reconciliation")
    assert page.locator(f"tr[data-day='{day}'] td.alert").inner_text() == "1"
    assert any(a["action"] == "reconcile.run" and a["actor"] == "manager:olga" for a in f.audit("ok"))
    # a cross-site form is refused before the back-office is asked
    cookie = next(c["value"] for c in page.context.cookies() if c["name"] == "fleet_token")
    forged = requests.post(f.url + "/ui/reconciliation", data={"date": day.isoformat()},
                           cookies={"fleet_token": cookie}, headers={"Origin": "https://evil.example"},
                           allow_redirects=False, timeout=10)
    assert forged.status_code == 403 and any(a["action"] == "reconcile.run" for a in f.audit("ui.cross_site"))

    # transactions per hour: the fleet's and one kiosk's, as SVG bars
    page.click("a[href='/ui/activity']")
    bars = page.locator("svg.chart rect.bar")
    assert bars.count() == 24
    counts = [int(bars.nth(i).get_attribute("data-count") or 0) for i in range(24)]
    assert sum(counts) == 3
    hour = dt.datetime.now(dt.timezone(dt.timedelta(hours=3, minutes=30))).hour
    assert counts[hour] >= 1 or counts[(hour - 1) % 24] >= 1
    assert "3 in all" in page.content()
    page.click(f"a[href='/ui/kiosks/{K1}?day={day}']")
    kiosk_bars = page.locator("svg.chart rect.bar")
    assert sum(int(kiosk_bars.nth(i).get_attribute("data-count") or 0) for i in range(24)) == 2
    yesterday = day - dt.timedelta(days=1)
    page.goto(f.url + f"/ui/activity?day={yesterday}")
    assert "0 in all" in page.content()
    _no_script_nothing_from_elsewhere(page, seen, f.url)
    page.context.close()


def test_commands_configuration_and_rollout_control_pages(fleet: Fleet, browser: Browser) -> None:
    f = fleet
    token = f.enroll_token(site="north", max_uses=2)
    kiosks = [SignedKiosk(f.url, f"north-{i}") for i in range(2)]
    for k in kiosks:
        assert k.enroll(token).status_code == 201
    viewer = f.manager_token("vera", Role.VIEWER)
    operator = f.manager_token("olga", Role.OPERATOR)
    page = browser.new_context().new_page()
    seen: list[str] = []
    page.on("request", lambda req: seen.append(req.url))

    # commands: a viewer sees them, gets no form
    _sign_in(page, f.url, viewer)
    page.goto(f.url + "/ui/kiosks/north-0")
    assert page.locator("form[action='/ui/commands/north-0']").count() == 0
    r = page.request.post(f.url + "/ui/commands/north-0", form={"kind": "restart"}, headers={"Origin": f.url})
    assert r.status == 403 and "needs the operator role" in r.text()

    # an operator queues one from the kiosk's page; the kiosk's feedback shows
    _sign_in(page, f.url, operator)
    page.goto(f.url + "/ui/kiosks/north-0")
    page.select_option("select[name=kind]", "disable_service")
    page.fill("input[name=service]", "card_topup")
    page.click("form[action='/ui/commands/north-0'] button[type=submit]")
    assert page.url.endswith("/ui/kiosks/north-0")
    row = page.locator("tr[data-command]").first
    assert "disable_service" in row.inner_text() and "service=card_topup" in row.inner_text()
    assert row.locator("td.status").inner_text() == "queued"
    cid = int(row.get_attribute("data-command") or 0)
    done = kiosks[0].call("POST", f"/api/v1/agent/commands/{cid}/feedback", {"status": "done", "result": "taken out"})
    assert done.status_code == 200, done.text
    page.click("a[href='/ui/commands']")
    listed = page.locator(f"tr[data-command='{cid}']")
    assert "north-0" in listed.inner_text() and "taken out" in listed.inner_text()
    assert listed.locator("td.status").inner_text() == "done"
    # a bad command is refused on a page of its own, and audited
    page.goto(f.url + "/ui/kiosks/north-0")
    page.select_option("select[name=kind]", "disable_service")  # without its service
    page.click("form[action='/ui/commands/north-0'] button[type=submit]")
    assert "takes service" in page.content()
    assert f.audit("command.bad_args")[0]["actor"] == "manager:olga"
    assert any(a["action"] == "command.disable_service" and a["outcome"] == "ok" for a in f.audit())

    # configuration pushes are an admin's: an operator is refused the page and the form
    page.goto(f.url + "/ui/config")
    assert "needs the admin role" in page.content()
    assert page.locator("a[href='/ui/config']").count() == 0
    r = page.request.post(f.url + "/ui/config", form={"target": "fleet", "settings": "{}"}, headers={"Origin": f.url})
    assert r.status == 403

    # rollout control: an operator pauses and resumes, only an admin aborts
    created = f.api("POST", "/api/v1/rollouts", json={"target": "site:north", "settings": {"topup_max_rials": 3_000_000},
                                                      "stages": [50, 100], "action_timeout_s": 600})
    assert created.status_code == 201, created.text
    rid = created.json()["id"]
    page.goto(f.url + "/ui/rollouts")
    row = page.locator(f"tr[data-rollout='{rid}']")
    assert row.locator("button[value=abort]").count() == 0
    row.locator("button[value=pause]").click()
    assert page.locator(f"tr[data-rollout='{rid}'] td.status").inner_text() == "paused"
    page.locator(f"tr[data-rollout='{rid}'] button[value=resume]").click()
    assert page.locator(f"tr[data-rollout='{rid}'] td.status").inner_text() == "running"
    r = page.request.post(f.url + f"/ui/rollouts/{rid}/abort", headers={"Origin": f.url})
    assert r.status == 403 and "needs the admin role" in r.text()

    _sign_in(page, f.url, f.admin)
    page.goto(f.url + "/ui/rollouts")
    page.locator(f"tr[data-rollout='{rid}'] button[value=abort]").click()
    assert page.locator(f"tr[data-rollout='{rid}'] td.status").inner_text() == "aborted"
    assert page.locator(f"tr[data-rollout='{rid}'] button").count() == 0

    # an admin pushes a layer from the form; a layer that is not valid is refused with its reason
    page.click("a[href='/ui/config']")
    page.fill("input[name=target]", "site:north")
    page.fill("textarea[name=settings]", '{"topup_max_rials": 2500000}')
    page.click("form[action='/ui/config'] button[type=submit]")
    assert page.url.endswith("/ui/config")
    pushed = page.locator("tr[data-revision]").first
    assert "site:north" in pushed.inner_text() and "topup_max_rials" in pushed.inner_text()
    view = f.api("GET", "/api/v1/kiosks/north-1").json()
    assert view["config"]["desired"]["topup_max_rials"] == 2_500_000
    page.fill("input[name=target]", "fleet")
    page.fill("textarea[name=settings]", '{"no_such_key": 1}')
    page.click("form[action='/ui/config'] button[type=submit]")
    assert "configuration refused" in page.content()
    page.goto(f.url + "/ui/config")
    page.fill("input[name=target]", "fleet")
    page.fill("textarea[name=settings]", "{not json")
    page.click("form[action='/ui/config'] button[type=submit]")
    assert "not JSON" in page.content()
    cookie = next(c["value"] for c in page.context.cookies() if c["name"] == "fleet_token")
    forged = requests.post(f.url + "/ui/config", data={"target": "fleet", "settings": "{}"},
                           cookies={"fleet_token": cookie}, headers={"Origin": "https://evil.example"},
                           allow_redirects=False, timeout=10)
    assert forged.status_code == 403
    audit: list[dict[str, Any]] = f.audit()
    assert any(a["action"] == "config.push" and a["actor"] == "manager:root" and a["outcome"] == "ok" for a in audit)
    assert any(a["action"] == "config.push" and a["outcome"] == "ui.cross_site" for a in audit)
    assert any(a["action"] == "rollout.pause" and a["actor"] == "manager:olga" for a in audit)
    assert any(a["action"] == "rollout.abort" and a["actor"] == "manager:root" for a in audit)
    page.goto(f.url + "/ui/audit")
    assert "config.push" in page.inner_text("table")
    _no_script_nothing_from_elsewhere(page, seen, f.url)
    headers = requests.get(f.url + "/ui/config", timeout=10, cookies={"fleet_token": cookie}).headers
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    page.context.close()
