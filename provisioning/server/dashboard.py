"""The managers' web dashboard (issue 11, item 8): server-rendered HTML under /ui, no script,
no CDN, nothing fetched from outside the server.

Sign-in is with a manager token (the same ones as the API), kept in an HttpOnly,
SameSite=Strict cookie scoped to /ui; every page checks it and the role, exactly as the API
does (the same service functions), and every refusal is audited. A form POST is accepted only
from this server's own pages (its Origin must be this server), besides the SameSite cookie.
"""

from __future__ import annotations

import html
import json
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

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
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _page(title: str, body: str, manager: svc.Manager | None = None, status: int = 200) -> HTMLResponse:
    nav = ""
    if manager is not None:
        nav = ('<a href="/ui/">Kiosks</a><a href="/ui/rollouts">Rollouts</a>'
               + ('<a href="/ui/audit">Audit</a>' if manager.role == Role.ADMIN else "")
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
        out = ['<table><tr><th>#</th><th>Target</th><th>Status</th><th>Stage</th><th>Kiosks</th><th>Why</th></tr>']
        for v in rows:
            counts = ", ".join(f"{k} {n}" for k, n in sorted(v["actions"].items()))
            out.append(f'<tr><td>{v["id"]}</td><td>{_e(v["target"])}</td><td>{_e(v["status"])}</td>'
                       f'<td>{v["stage"] + 1}/{len(v["stages"])}</td><td>{_e(counts)}</td>'
                       f'<td>{_e(v["reason"] or "")}</td></tr>')
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
                     '<h2>Commands</h2><table><tr><th>#</th><th>Kind</th><th>Status</th><th>Updated</th></tr>'
                     + "".join(f'<tr><td>{c2["id"]}</td><td>{_e(c2["kind"])}</td><td>{_e(c2["status"])}</td>'
                               f'<td>{_e(c2["updated_at"])}</td></tr>' for c2 in cmds) + '</table>',
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
