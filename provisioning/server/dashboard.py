"""The managers' web dashboard (issue 11, item 8): server-rendered HTML under /ui, no script,
no CDN, nothing fetched from outside the server.

Sign-in is with a manager token (the same ones as the API), kept in an HttpOnly,
SameSite=Strict cookie scoped to /ui; every page checks it and the role, exactly as the API
does (the same service functions), and every refusal is audited. A form POST is accepted only
from this server's own pages (its Origin must be this server), besides the SameSite cookie.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from typing import Any, Callable
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from provisioning.server import rollout
from provisioning.server import service as svc
from provisioning.server.models import Role

COOKIE = "fleet_token"
_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#1d2733;background:#f5f7f9}
header{background:#0b5d4b;color:#fff;padding:.6rem 1rem;display:flex;gap:1.2rem;align-items:center}
header a{color:#fff;text-decoration:none}header .who{margin-left:auto;opacity:.85}
main{padding:1rem}table{border-collapse:collapse;width:100%;background:#fff}
th,td{border-bottom:1px solid #dde3e8;padding:.4rem .6rem;text-align:left;vertical-align:top;font-size:.92rem}
th{background:#eef2f5}.alert{color:#a3261b}.ok{color:#0b7a3e}.muted{color:#6b7785}
form.inline{display:inline}button{padding:.25rem .7rem;cursor:pointer}
pre{background:#fff;border:1px solid #dde3e8;padding:.6rem;overflow:auto;font-size:.85rem}
.error{background:#fde8e6;border:1px solid #e7a39b;padding:.6rem;margin-bottom:1rem}
.notice{background:#e6f4ec;border:1px solid #9fd0b3;padding:.6rem;margin-bottom:1rem}
fieldset{background:#fff;border:1px solid #dde3e8;margin:1rem 0}textarea{font-family:monospace;width:100%}
svg.chart{background:#fff;border:1px solid #dde3e8;max-width:100%}svg.chart rect.bar{fill:#0b5d4b}
svg.chart text{font-size:10px;fill:#1d2733}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _page(title: str, body: str, manager: svc.Manager | None = None, status: int = 200) -> HTMLResponse:
    nav = ""
    if manager is not None:
        nav = ('<a href="/ui/">Kiosks</a><a href="/ui/rollouts">Rollouts</a><a href="/ui/commands">Commands</a>'
               '<a href="/ui/activity">Activity</a><a href="/ui/reconciliation">Reconciliation</a>'
               + ('<a href="/ui/config">Configuration</a><a href="/ui/audit">Audit</a>'
                  if manager.role == Role.ADMIN else "")
               + f'<span class="who">{_e(manager.name)} ({_e(manager.role.value)}) · '
               '<a href="/ui/logout">sign out</a></span>')
    doc = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)} · fleet</title>'
           f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style></head>'
           f'<body><header><strong>City Kiosk fleet</strong>{nav}</header><main><h1>{_e(title)}</h1>{body}'
           '</main></body></html>')
    return HTMLResponse(doc, status_code=status, headers={"Content-Security-Policy": "default-src 'none'; "
                        "style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
                        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


def add_dashboard(app: FastAPI, transaction: Callable[..., Any], audit_refusal: Callable[..., None]) -> None:
    def signed_in(request: Request) -> svc.Manager | None:
        token = request.cookies.get(COOKIE, "")
        if not token:
            return None
        with transaction(request) as session:
            manager = svc.manager_for_token(session, token)
        if manager is not None:
            request.state.actor = manager.actor
        return manager

    def refused(request: Request, manager: svc.Manager | None, exc: svc.FleetError) -> HTMLResponse:
        audit_refusal(request, manager.actor if manager else "anonymous:ui", exc, path=request.url.path)
        return _page("Refused", f'<div class="error">{_e(exc.message)} <span class="muted">({_e(exc.code)})</span>'
                     '</div><p><a href="/ui/">Back</a></p>', manager, exc.status)

    def view(need: Role, title: str, render: Callable[[Any, svc.Manager], str]) -> Callable[..., Any]:
        def handler(request: Request) -> Response:
            manager = signed_in(request)
            if manager is None:
                return RedirectResponse("/ui/login", status_code=303)
            try:
                svc.require(manager, need, f"ui {title}".lower()[:64])
                with transaction(request) as session:
                    body = render(session, manager)
            except svc.FleetError as exc:
                return refused(request, manager, exc)
            return _page(title, body, manager)

        return handler

    @app.get("/ui/login", include_in_schema=False)
    def login_form() -> HTMLResponse:
        return _page("Sign in", '<form method="post" action="/ui/login"><p><label>Manager token<br>'
                     '<input type="password" name="token" size="60" autocomplete="off" required></label></p>'
                     '<button type="submit">Sign in</button></form>')

    @app.post("/ui/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        # an urlencoded form, read by hand (FastAPI's Form() needs python-multipart)
        raw = (await request.body())[:4096].decode("utf-8", "replace")
        token = (parse_qs(raw).get("token") or [""])[0]

        def check() -> svc.Manager | None:
            with transaction(request) as session:
                return svc.manager_for_token(session, token.strip())

        manager = await run_in_threadpool(check)
        if manager is None:
            exc = svc.FleetError(401, "auth.unauthorized", "not a valid manager token", action="ui sign-in")
            await run_in_threadpool(audit_refusal, request, "anonymous:ui", exc)
            return _page("Sign in", f'<div class="error">{_e(exc.message)}</div><p><a href="/ui/login">Try again'
                         '</a></p>', status=401)
        resp = RedirectResponse("/ui/", status_code=303)
        resp.set_cookie(COOKIE, token.strip(), httponly=True, samesite="strict", path="/ui",
                        secure=request.url.scheme == "https")
        return resp

    @app.get("/ui/logout", include_in_schema=False)
    def logout() -> Response:
        resp = RedirectResponse("/ui/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/ui")
        return resp

    def kiosks_page(session: Any, manager: svc.Manager) -> str:
        rows = svc.list_kiosks(session, app.state.settings.interval_s)
        if not rows:
            return '<p class="muted">No kiosks yet.</p>'
        out = ['<table><tr><th>Kiosk</th><th>Status</th><th>Site</th><th>Presence</th><th>Config '
               '(reported/desired)</th><th>Alerts</th><th></th></tr>']
        for r in rows:
            c = r["config"]
            sync = '<span class="ok">in sync</span>' if c["in_sync"] else '<span class="alert">differs</span>'
            alerts = "<br>".join(f'<span class="alert">{_e(a)}</span>' for a in r["alerts"]) or "-"
            actions = ""
            if r["status"] == "pending" and manager.role.rank >= Role.OPERATOR.rank:
                actions = "".join(f'<form class="inline" method="post" action="/ui/kiosks/{_e(r["kiosk_id"])}/{d}">'
                                  f'<button type="submit" name="do" value="{d}">{d.title()}</button></form> '
                                  for d in ("accept", "reject"))
            out.append(f'<tr data-kiosk="{_e(r["kiosk_id"])}"><td><a href="/ui/kiosks/{_e(r["kiosk_id"])}">'
                       f'{_e(r["kiosk_id"])}</a></td><td class="status">{_e(r["status"])}</td><td>{_e(r["site"] or "-")}'
                       f'</td><td>{_e(r["presence"])}</td><td>{_e(c["reported_version"] or 0)}/'
                       f'{_e(c["desired_version"])} {sync}</td><td>{alerts}</td><td>{actions}</td></tr>')
        return "".join(out) + "</table>"

    def audit_page(session: Any, manager: svc.Manager) -> str:
        rows = svc.audit_entries(session, 200)
        out = ['<table><tr><th>When</th><th>Actor</th><th>Action</th><th>Target</th><th>Outcome</th></tr>']
        for a in rows:
            cls = "ok" if a["outcome"] == "ok" else "alert"
            out.append(f'<tr><td>{_e(a["at"])}</td><td>{_e(a["actor"])}</td><td>{_e(a["action"])}</td>'
                       f'<td>{_e(a["target"])}</td><td class="{cls}">{_e(a["outcome"])}</td></tr>')
        return "".join(out) + "</table>"

    def rollouts_page(session: Any, manager: svc.Manager) -> str:
        rows = rollout.list_views(session)
        if not rows:
            return '<p class="muted">No rollouts.</p>'
        out = ['<table><tr><th>#</th><th>Target</th><th>Status</th><th>Stage</th><th>Kiosks</th><th>Why</th>'
               '<th></th></tr>']
        for v in rows:
            counts = ", ".join(f"{k} {n}" for k, n in sorted(v["actions"].items()))
            out.append(f'<tr data-rollout="{v["id"]}"><td>{v["id"]}</td><td>{_e(v["target"])}</td>'
                       f'<td class="status">{_e(v["status"])}</td>'
                       f'<td>{v["stage"] + 1}/{len(v["stages"])}</td><td>{_e(counts)}</td>'
                       f'<td>{_e(v["reason"] or "")}</td><td>{_rollout_buttons(v, manager)}</td></tr>')
        return "".join(out) + "</table>"

    app.get("/ui/", include_in_schema=False)(view(Role.VIEWER, "Kiosks", kiosks_page))
    app.get("/ui/audit", include_in_schema=False)(view(Role.ADMIN, "Audit log", audit_page))
    app.get("/ui/rollouts", include_in_schema=False)(view(Role.VIEWER, "Rollouts", rollouts_page))

    @app.get("/ui/kiosks/{kiosk_id}", include_in_schema=False)
    def kiosk_page(kiosk_id: str, request: Request) -> Response:
        def render(session: Any, manager: svc.Manager) -> str:
            v = svc.get_kiosk(session, kiosk_id, app.state.settings.interval_s)
            c = v["config"]
            cmds = svc.list_commands(session, kiosk_id)
            parts = [f'<p>Status <strong>{_e(v["status"])}</strong> · site {_e(v["site"] or "-")} · '
                     f'{_e(v["presence"])} · last seen {_e(v["last_seen_at"] or "never")} · app {_e(v["app_version"])}'
                     f' · key {_e(v["key_id"])}</p>',
                     f'<h2>Configuration</h2><p>desired v{_e(c["desired_version"])}, reported '
                     f'v{_e(c["reported_version"])} — {_e(c["state"] or "")}</p>'
                     f'<h3>Delta</h3><pre>{_e(json.dumps(c["delta"], ensure_ascii=False, indent=2))}</pre>'
                     f'<h3>Desired</h3><pre>{_e(json.dumps(c["desired"], ensure_ascii=False, indent=2))}</pre>',
                     '<h2>Alerts</h2>' + ("".join(f'<p class="alert">{_e(a)}</p>' for a in v["alerts"]) or
                                          '<p class="muted">none</p>'),
                     '<h2>Commands</h2>' + _command_form(kiosk_id, manager) + _commands_table(cmds),
                     '<h2>Transactions per hour</h2>' + _hourly_chart(session, kiosk_id, _day_arg(request)),
                     f'<h2>Journal</h2><p>head {v["journal"]["head_seq"]}</p>'
                     + "".join(f'<p class="alert">{_e(p["kind"])} at {_e(p["seq"])}: {_e(p["detail"])}</p>'
                               for p in v["journal"]["problems"])]
            return "".join(parts)

        return view(Role.VIEWER, f"Kiosk {kiosk_id}", render)(request)

    @app.post("/ui/kiosks/{kiosk_id}/{decision}", include_in_schema=False)
    def decide(kiosk_id: str, decision: str, request: Request) -> Response:
        manager = signed_in(request)
        if manager is None:
            return RedirectResponse("/ui/login", status_code=303)
        origin = request.headers.get("origin") or request.headers.get("referer") or ""
        try:
            if urlsplit(origin).netloc != request.url.netloc:
                raise svc.FleetError(403, "ui.cross_site", "this form was not sent from this server's own page",
                                     action=f"kiosk.{decision}"[:64], target=kiosk_id)
            if decision not in ("accept", "reject", "revoke"):
                raise svc.FleetError(404, "ui.unknown", "no such action", action="ui", target=kiosk_id)
            with transaction(request) as session:
                svc.decide(session, manager, kiosk_id, decision)
        except svc.FleetError as exc:
            return refused(request, manager, exc)
        return RedirectResponse("/ui/", status_code=303)

    # --- forms: commands, configuration pushes, rollout control, reconciliation -----------------
    async def form_fields(request: Request) -> dict[str, str]:
        raw = (await request.body())[:65536].decode("utf-8", "replace")
        return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}

    def post_form(request: Request, action: str, target: str, work: Callable[[Any, svc.Manager], str]) -> Response:
        """A form POST: signed in, sent from this server's own page, then work(session, manager)
        in one transaction (the service function checks the role and audits); a refusal is
        audited and shown. Answers with a redirect to the page work names."""
        manager = signed_in(request)
        if manager is None:
            return RedirectResponse("/ui/login", status_code=303)
        origin = request.headers.get("origin") or request.headers.get("referer") or ""
        try:
            if urlsplit(origin).netloc != request.url.netloc:
                raise svc.FleetError(403, "ui.cross_site", "this form was not sent from this server's own page",
                                     action=action[:64], target=target)
            with transaction(request) as session:
                back = work(session, manager)
        except svc.FleetError as exc:
            return refused(request, manager, exc)
        return RedirectResponse(back, status_code=303)

    def commands_page(session: Any, manager: svc.Manager) -> str:
        from sqlalchemy import select

        from provisioning.server.models import Command

        rows = [svc.command_view(c) for c in session.scalars(select(Command).order_by(Command.id.desc()).limit(200))]
        if not rows:
            return '<p class="muted">No commands yet. Queue one from a kiosk\'s page.</p>'
        return _commands_table(rows, with_kiosk=True)

    app.get("/ui/commands", include_in_schema=False)(view(Role.VIEWER, "Commands", commands_page))

    @app.post("/ui/commands/{kiosk_id}", include_in_schema=False)
    async def queue_command(kiosk_id: str, request: Request) -> Response:
        fields = await form_fields(request)

        def work(session: Any, manager: svc.Manager) -> str:
            kind = fields.get("kind", "")
            args = {"service": fields["service"].strip()} if fields.get("service", "").strip() else {}
            try:
                hours = float(fields.get("expires_h") or 24)
            except ValueError:
                raise svc.FleetError(422, "request.invalid", "the expiry is a number of hours",
                                     action=f"command.{kind}"[:64], target=kiosk_id) from None
            svc.queue_command(session, manager, kiosk_id, kind, args, dt.timedelta(hours=hours))
            return f"/ui/kiosks/{quote(kiosk_id)}"

        return await run_in_threadpool(post_form, request, "command", kiosk_id, work)

    def config_page(session: Any, manager: svc.Manager) -> str:
        from sqlalchemy import select

        from provisioning.server.models import ConfigLayer

        form = ('<form method="post" action="/ui/config"><fieldset><legend>Push a layer</legend>'
                '<p><label>Target <input name="target" placeholder="fleet, site:NAME or kiosk:ID" required>'
                '</label></p><p><label>Layer (a partial kiosk.json)<br><textarea name="settings" rows="8" '
                'required>{}</textarea></label></p><button type="submit">Push</button></fieldset></form>')
        layers = list(session.scalars(select(ConfigLayer).order_by(ConfigLayer.id.desc()).limit(50)))
        out = ['<h2>Layers pushed</h2><table><tr><th>Revision</th><th>Target</th><th>Keys</th><th>By</th>'
               '<th>When</th></tr>']
        for layer in layers:
            where = f"{layer.scope}:{layer.target}" if layer.target else layer.scope
            out.append(f'<tr data-revision="{layer.revision}"><td>{layer.revision}</td><td>{_e(where)}</td>'
                       f'<td>{_e(", ".join(sorted(layer.settings)) or "(empty)")}</td><td>{_e(layer.created_by)}</td>'
                       f'<td>{_e(layer.created_at.strftime("%Y-%m-%d %H:%M:%SZ"))}</td></tr>')
        return form + "".join(out) + "</table>"

    app.get("/ui/config", include_in_schema=False)(view(Role.ADMIN, "Configuration", config_page))

    @app.post("/ui/config", include_in_schema=False)
    async def push_config(request: Request) -> Response:
        fields = await form_fields(request)

        def work(session: Any, manager: svc.Manager) -> str:
            target = fields.get("target", "").strip()
            scope, _, name = target.partition(":")
            svc.require(manager, Role.ADMIN, "config.push", target or "-")
            try:
                settings = json.loads(fields.get("settings") or "")
            except ValueError as exc:
                raise svc.FleetError(422, "config.invalid", f"the layer is not JSON: {exc}", action="config.push",
                                     target=target) from None
            if not isinstance(settings, dict):
                raise svc.FleetError(422, "config.invalid", "a layer is a JSON object", action="config.push",
                                     target=target)
            svc.push_layer(session, manager, scope, name, settings)
            return "/ui/config"

        return await run_in_threadpool(post_form, request, "config.push", fields.get("target", "")[:100], work)

    @app.post("/ui/rollouts/{rollout_id}/{verb}", include_in_schema=False)
    def rollout_control(rollout_id: int, verb: str, request: Request) -> Response:
        def work(session: Any, manager: svc.Manager) -> str:
            if verb not in ("pause", "resume", "abort"):
                raise svc.FleetError(404, "ui.unknown", "no such action", action="ui", target=str(rollout_id))
            rollout.control(session, manager, rollout_id, verb)
            return "/ui/rollouts"

        return post_form(request, f"rollout.{verb}", str(rollout_id), work)

    def reconciliation_page(session: Any, manager: svc.Manager) -> str:
        from provisioning.server import reconcile

        settings = app.state.settings
        if manager.role.rank < Role.OPERATOR.rank:
            form = ""
        elif getattr(settings, "backoffice_url", None) and getattr(settings, "backoffice_token", None):
            form = ('<form method="post" action="/ui/reconciliation"><fieldset><legend>Reconcile a day with the '
                    f'back-office ({_e(settings.backoffice_url)})</legend><label>Date (Tehran) <input type="date" '
                    f'name="date" value="{_e(_tehran_today().isoformat())}" required></label> <label>Kiosk '
                    '(empty: all) <input name="kiosk"></label> <button type="submit">Reconcile</button>'
                    '</fieldset></form>')
        else:
            form = ('<p class="muted">This server has no back-office configured (fleet serve --backoffice URL); '
                    'results of <code>fleet reconcile</code> show here.</p>')
        rows = reconcile.days_run(session)
        if not rows:
            return form + '<p class="muted">No day reconciled yet.</p>'
        out = ['<table><tr><th>Date</th><th>Kiosks</th><th>Differences</th><th>Run</th></tr>']
        for r in rows:
            cls = "ok" if not r["differences"] else "alert"
            out.append(f'<tr data-day="{_e(r["date"])}"><td><a href="/ui/reconciliation/{_e(r["date"])}">'
                       f'{_e(r["date"])}</a></td><td>{r["kiosks"]}</td><td class="{cls}">{r["differences"]}</td>'
                       f'<td>{_e(r["run_at"])}</td></tr>')
        return form + "".join(out) + "</table>"

    app.get("/ui/reconciliation", include_in_schema=False)(view(Role.VIEWER, "Reconciliation", reconciliation_page))

    @app.get("/ui/reconciliation/{day}", include_in_schema=False)
    def reconciliation_day(day: str, request: Request) -> Response:
        def render(session: Any, manager: svc.Manager) -> str:
            from provisioning.server import reconcile

            when = _parse_day(day)
            return _reconciliation_view(reconcile.fleet_view(session, when))

        return view(Role.VIEWER, f"Reconciliation {day}", render)(request)

    @app.post("/ui/reconciliation", include_in_schema=False)
    async def reconciliation_run(request: Request) -> Response:
        from provisioning.server import reconcile

        fields = await form_fields(request)
        settings = app.state.settings
        records: dict[Any, Any] = {}

        def work(session: Any, manager: svc.Manager) -> str:
            when = _parse_day(fields.get("date", ""))
            kiosk = fields.get("kiosk", "").strip() or None
            reconcile.reconcile(session, manager, when, records, kiosk)
            return f"/ui/reconciliation/{when.isoformat()}"

        def fetch_then_work() -> Response:
            manager = signed_in(request)
            if manager is None:
                return RedirectResponse("/ui/login", status_code=303)
            try:
                svc.require(manager, Role.OPERATOR, "reconcile.run", fields.get("date", "")[:20] or "-")
                if not getattr(settings, "backoffice_url", None) or not getattr(settings, "backoffice_token", None):
                    raise svc.FleetError(409, "reconcile.not_configured", "this server has no back-office to "
                                         "reconcile with (fleet serve --backoffice URL)", action="reconcile.run")
                origin = request.headers.get("origin") or request.headers.get("referer") or ""
                if urlsplit(origin).netloc == request.url.netloc:  # else post_form refuses it, audited
                    records.update(reconcile.fetch_window(settings.backoffice_url, settings.backoffice_token,
                                                          _parse_day(fields.get("date", "")),
                                                          fields.get("kiosk", "").strip() or None))
            except svc.FleetError as exc:
                return refused(request, manager, exc)
            return post_form(request, "reconcile.run", fields.get("date", "")[:20], work)

        return await run_in_threadpool(fetch_then_work)

    def activity_page(session: Any, manager: svc.Manager, day: dt.date) -> str:
        from sqlalchemy import func, select

        from provisioning.server import reconcile
        from provisioning.server.models import JournalRow

        start, end = reconcile.day_bounds(day)
        prev, nxt = day - dt.timedelta(days=1), day + dt.timedelta(days=1)
        nav = (f'<p><a href="/ui/activity?day={prev}">← {prev}</a> · <strong>{day}</strong> (Tehran) · '
               f'<a href="/ui/activity?day={nxt}">{nxt} →</a></p>')
        per_kiosk = session.execute(select(JournalRow.kiosk_id, func.count()).where(
            JournalRow.state == "CREATED", JournalRow.at >= start, JournalRow.at < end)
            .group_by(JournalRow.kiosk_id).order_by(func.count().desc()).limit(100)).all()
        table = ('<h2>Per kiosk</h2><table><tr><th>Kiosk</th><th>Transactions</th></tr>'
                 + "".join(f'<tr><td><a href="/ui/kiosks/{_e(k)}?day={day}">{_e(k)}</a></td><td>{n}</td></tr>'
                           for k, n in per_kiosk) + '</table>') if per_kiosk else '<p class="muted">No kiosk.</p>'
        return nav + '<h2>The fleet</h2>' + _hourly_chart(session, None, day) + table

    @app.get("/ui/activity", include_in_schema=False)
    def activity(request: Request) -> Response:
        return view(Role.VIEWER, "Transactions per hour",
                    lambda session, manager: activity_page(session, manager, _day_arg(request)))(request)


# --- rendering helpers ---------------------------------------------------------------------------
_TEHRAN = "Asia/Tehran"


def _tehran_today() -> dt.date:
    from zoneinfo import ZoneInfo

    return dt.datetime.now(ZoneInfo(_TEHRAN)).date()


def _parse_day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise svc.FleetError(422, "request.invalid", "a date is YYYY-MM-DD", action="ui", target=text[:20]) from None


def _day_arg(request: Request) -> dt.date:
    text = request.query_params.get("day", "")
    return _parse_day(text) if text else _tehran_today()


def _rollout_buttons(v: dict[str, Any], manager: svc.Manager) -> str:
    """Pause/resume for an operator, abort for an admin, as the rollout's state allows."""
    verbs = []
    if manager.role.rank >= Role.OPERATOR.rank:
        if v["status"] == "running":
            verbs.append("pause")
        if v["status"] in ("paused", "halted"):
            verbs.append("resume")
    if manager.role.rank >= Role.ADMIN.rank and v["status"] in ("running", "paused", "halted"):
        verbs.append("abort")
    return "".join(f'<form class="inline" method="post" action="/ui/rollouts/{v["id"]}/{verb}">'
                   f'<button type="submit" name="do" value="{verb}">{verb.title()}</button></form> ' for verb in verbs)


def _command_form(kiosk_id: str, manager: svc.Manager) -> str:
    if manager.role.rank < Role.OPERATOR.rank:
        return ""
    options = "".join(f'<option value="{_e(k)}">{_e(k)}</option>' for k in svc.COMMAND_KINDS)
    return (f'<form method="post" action="/ui/commands/{_e(quote(kiosk_id))}"><fieldset><legend>Queue a command'
            f'</legend><label>Command <select name="kind">{options}</select></label> <label>Service (for '
            'disable_service / enable_service) <input name="service" size="16"></label> <label>Expires in (hours) '
            '<input name="expires_h" value="24" size="4"></label> <button type="submit">Queue</button>'
            '</fieldset></form>')


def _commands_table(rows: list[dict[str, Any]], *, with_kiosk: bool = False) -> str:
    if not rows:
        return '<p class="muted">No commands.</p>'
    head = ('<table><tr><th>#</th>' + ('<th>Kiosk</th>' if with_kiosk else '')
            + '<th>Kind</th><th>Args</th><th>Status</th><th>Result</th><th>Updated</th><th>Expires</th></tr>')
    out = [head]
    for c in rows:
        cls = {"done": "ok", "failed": "alert", "expired": "alert"}.get(c["status"], "")
        kiosk = (f'<td><a href="/ui/kiosks/{_e(quote(c["kiosk_id"]))}">{_e(c["kiosk_id"])}</a></td>'
                 if with_kiosk else "")
        args = ", ".join(f"{k}={v}" for k, v in sorted((c.get("args") or {}).items()))
        out.append(f'<tr data-command="{c["id"]}"><td>{c["id"]}</td>{kiosk}<td>{_e(c["kind"])}</td><td>{_e(args)}</td>'
                   f'<td class="status {cls}">{_e(c["status"])}</td><td>{_e(c.get("result") or "")}</td>'
                   f'<td>{_e(c["updated_at"])}</td><td>{_e(c["expires_at"])}</td></tr>')
    return "".join(out) + "</table>"


def hourly_counts(session: Any, kiosk_id: str | None, day: dt.date) -> list[int]:
    """Transactions begun (CREATED rows) in each hour of a Tehran day, of one kiosk or the fleet."""
    from zoneinfo import ZoneInfo

    from sqlalchemy import select

    from provisioning.server import reconcile
    from provisioning.server.models import JournalRow

    start, end = reconcile.day_bounds(day)
    q = select(JournalRow.at).where(JournalRow.state == "CREATED", JournalRow.at >= start, JournalRow.at < end)
    if kiosk_id is not None:
        q = q.where(JournalRow.kiosk_id == kiosk_id)
    zone = ZoneInfo(_TEHRAN)
    counts = [0] * 24
    for at in session.scalars(q):
        counts[dt.datetime.fromtimestamp(at, zone).hour] += 1
    return counts


def _hourly_chart(session: Any, kiosk_id: str | None, day: dt.date) -> str:
    """A bar chart in server-rendered SVG (no script): one bar per hour, its count on top."""
    counts = hourly_counts(session, kiosk_id, day)
    top = max(counts) or 1
    bar_w, gap, height, base = 22, 6, 150, 130
    parts = []
    for hour, n in enumerate(counts):
        x = 30 + hour * (bar_w + gap)
        h = round(110 * n / top)
        parts.append(f'<rect class="bar" data-hour="{hour}" data-count="{n}" x="{x}" y="{base - h}" width="{bar_w}" '
                     f'height="{h}"><title>{hour:02d}:00–{hour:02d}:59 · {n} transaction(s)</title></rect>')
        if n:
            parts.append(f'<text x="{x + bar_w / 2}" y="{base - h - 3}" text-anchor="middle">{n}</text>')
        if hour % 3 == 0:
            parts.append(f'<text x="{x + bar_w / 2}" y="{base + 14}" text-anchor="middle">{hour:02d}</text>')
    width = 30 + 24 * (bar_w + gap)
    label = f"transactions per hour on {day} (Tehran){' at ' + kiosk_id if kiosk_id else ' in the fleet'}"
    return (f'<p class="muted">{_e(label)}: {sum(counts)} in all</p><svg class="chart" role="img" '
            f'aria-label="{_e(label)}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'xmlns="http://www.w3.org/2000/svg"><line x1="28" y1="{base}" x2="{width}" y2="{base}" stroke="#6b7785"/>'
            + "".join(parts) + '</svg>')


def _reconciliation_view(v: dict[str, Any]) -> str:
    f = v["fleet"]
    if not v["kiosks"]:
        return '<p class="muted">This day has not been reconciled.</p>'
    cls = "ok" if not f["differences"] else "alert"
    out = [f'<p class="{cls}" id="summary">{f["kiosks"]} kiosk(s), {f["differences"]} difference(s) at '
           f'{f["kiosks_with_differences"]} kiosk(s); kiosks {f["kiosk_rials"]:,} rials settled, back-office '
           f'{f["backoffice_rials"]:,} rials</p>',
           '<table><tr><th>Kiosk</th><th>Kiosk: tx / rials</th><th>Back-office: records / rials</th>'
           '<th>Differences</th><th>Note</th></tr>']
    for k in v["kiosks"]:
        n = len(k["differences"])
        out.append(f'<tr data-kiosk="{_e(k["kiosk_id"])}"><td><a href="#k-{_e(k["kiosk_id"])}">{_e(k["kiosk_id"])}</a>'
                   f'</td><td>{k["kiosk"]["count"]} / {k["kiosk"]["rials"]:,}</td><td>{k["backoffice"]["count"]} / '
                   f'{k["backoffice"]["rials"]:,}</td><td class="{"ok" if not n else "alert"}">{n or "none"}</td>'
                   f'<td>{_e(k["note"] or "")}</td></tr>')
    out.append("</table>")
    for k in v["kiosks"]:
        if not k["differences"]:
            continue
        out.append(f'<h2 id="k-{_e(k["kiosk_id"])}">{_e(k["kiosk_id"])}</h2><table class="differences" '
                   f'data-kiosk="{_e(k["kiosk_id"])}"><tr><th>Difference</th><th>Transaction</th><th>Kiosk</th>'
                   '<th>Back-office</th><th>Detail</th></tr>')
        for d in k["differences"]:
            kiosk_side = ", ".join(f"{a}: {b}" for a, b in (d["kiosk"] or {}).items()) or "-"
            bo_side = ", ".join(f"{a}: {b}" for a, b in (d["backoffice"] or {}).items()) or "-"
            out.append(f'<tr data-tx="{_e(d["tx_id"])}"><td class="alert">{_e(d["kind"])}</td><td>{_e(d["tx_id"])}'
                       f'</td><td>{_e(kiosk_side)}</td><td>{_e(bo_side)}</td><td>{_e(d["detail"])}</td></tr>')
        out.append("</table>")
    return "".join(out)
