"""The fleet server's HTTP API.

/api/v1/enroll and /api/v1/agent/* are for agents: every request is signed with the kiosk's
Ed25519 key (provisioning.common.signing). /api/v1/* else is for managers: a bearer token
with a role (viewer < operator < admin). Every refusal is a JSON body {"error", "message"}
and an entry in the audit log. The app keeps no state of its own between requests (the
database holds everything), so several processes may serve one PostgreSQL database."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Annotated, Any, AsyncIterator, Callable, Iterator

from fastapi import Body, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from provisioning.common import signing
from provisioning.server import journal, rollout
from provisioning.server.dashboard import add_dashboard
from provisioning.server import service as svc
from provisioning.server.db import is_sqlite, make_engine, session_factory, upgrade
from provisioning.server import models as svc_models
from provisioning.server.models import KioskStatus, Role

log = logging.getLogger("fleet.api")

MAX_BODY = 256 * 1024


@dataclass(frozen=True)
class Settings:
    interval_s: int = svc.DEFAULT_INTERVAL_S
    config_ttl: dt.timedelta = svc.DEFAULT_CONFIG_TTL
    max_skew_s: int = signing.MAX_SKEW_S
    rollout_tick_s: float = 5.0  # how often this process times out actions and moves rollouts on
    backoffice_url: str | None = None  # the back-office daily reconciliation asks (fleet serve --backoffice)
    backoffice_token: str | None = None  # its integration token ($FLEET_BACKOFFICE_TOKEN)


class EnrollIn(BaseModel):
    token: str = Field(max_length=256)
    serial: str = Field(max_length=64)
    model: str = Field(max_length=64)
    app_version: str = Field(max_length=32)
    public_key: str = Field(max_length=64)


class FeedbackIn(BaseModel):
    status: str = Field(max_length=16)
    result: str | None = Field(default=None, max_length=svc.MAX_RESULT_CHARS)


class EnrollTokenIn(BaseModel):
    label: str = Field(min_length=1, max_length=100)
    site: str | None = None
    needs_approval: bool = False
    max_uses: int = 1
    ttl_s: int = 86400


class ManagerTokenIn(BaseModel):
    name: str
    role: Role


class CommandIn(BaseModel):
    kind: str = Field(max_length=32)
    args: dict[str, str] = {}
    ttl_s: int = int(svc.DEFAULT_COMMAND_TTL.total_seconds())


class RolloutIn(BaseModel):
    target: str = Field(max_length=80)
    settings: dict[str, Any]
    stages: list[int] = [10, 50, 100]
    action_timeout_s: int = 1800
    max_failure_pct: int = 10
    window: str | None = None


def _sessions(request: Request) -> sessionmaker[Session]:
    return request.app.state.sessions  # type: ignore[no-any-return]


def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


_bearer = HTTPBearer(auto_error=False, description="a manager's token (fleet token create)")


def _manager(request: Request,
             credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> svc.Manager:
    manager = None
    if credentials is not None:
        with _transaction(request) as session:
            manager = svc.manager_for_token(session, credentials.credentials.strip())
    if manager is None:
        raise svc.FleetError(401, "auth.unauthorized", "a valid manager token is needed",
                             action=f"manager {request.method} {request.url.path}"[:64])
    request.state.actor = manager.actor
    return manager


ManagerDep = Annotated[svc.Manager, Depends(_manager)]


def _tx(request: Request, work: Callable[[Session], Any]) -> Any:
    """work(session) in one transaction, committed before the answer is sent (a dependency
    with yield may close after the response, and a client must never read "done" before the
    commit)."""
    with _transaction(request) as session:
        return work(session)


async def _tick_rollouts(app: FastAPI) -> None:
    """In the background: time out silent kiosks and move rollouts on, though no kiosk calls."""
    def tick() -> None:
        with app.state.write_turn, app.state.sessions() as session, session.begin():
            rollout.tick(session)

    while True:
        await asyncio.sleep(app.state.settings.rollout_tick_s)
        try:
            await run_in_threadpool(tick)
        except Exception:  # a database hiccup: the next tick tries again
            log.exception("rollout tick failed")


def _audit_refusal(request: Request, actor: str, exc: svc.FleetError, **detail: Any) -> None:
    with request.app.state.write_turn:
        svc.audit_refusal(_sessions(request), actor, exc, **detail)


@contextlib.contextmanager
def _transaction(request: Request) -> Iterator[Session]:
    """A session in one transaction. On SQLite the app's threads take turns in Python first:
    every SQLite transaction here begins IMMEDIATE (one writer at a time), and threads left to
    SQLite's busy handler wait in sleeps of up to 100 ms — measured: p99 ~900 ms and a tenth of
    the throughput at eight concurrent heartbeats."""
    with request.app.state.write_turn, _sessions(request)() as session, session.begin():
        yield session


async def _signed_path(request: Request) -> tuple[str, bytes]:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise svc.FleetError(413, "request.too_large", "the request body is too large")
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return path, body


@dataclass(frozen=True)
class SignedCall:
    """A request as the agent signed it: method, path with query, the signature headers, body."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


async def _signed_call(request: Request) -> SignedCall:
    path, body = await _signed_path(request)
    headers = {k: request.headers.get(k, "") for k in
               (signing.H_KIOSK, signing.H_TIMESTAMP, signing.H_NONCE, signing.H_SIGNATURE)}
    request.state.actor = f"kiosk?:{headers[signing.H_KIOSK][:64]}"
    return SignedCall(request.method, path, headers, body)


Signed = Annotated[SignedCall, Depends(_signed_call)]


def _agent_tx(request: Request, call: SignedCall, work: Callable[[Session, svc.Caller], Any], *,
              allow: tuple[str, ...] = (KioskStatus.ACCEPTED,)) -> Any:
    """Check the signature, clock and nonce, then work(session, kiosk), in ONE transaction: a
    heartbeat is one commit (and a refused request stores no nonce)."""
    settings = _settings(request)
    with _transaction(request) as session:
        kiosk = svc.check_signed_request(session, method=call.method, path=call.path, headers=call.headers,
                                         body=call.body, now=time.time(), max_skew_s=settings.max_skew_s,
                                         allow=allow)
        request.state.actor = f"kiosk:{kiosk.kiosk_id}"
        return work(session, kiosk)


def _json_body(body: bytes, action: str) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise svc.FleetError(422, "request.invalid", "the body is not JSON", action=action) from None
    if not isinstance(value, dict):
        raise svc.FleetError(422, "request.invalid", "the body must be a JSON object", action=action)
    return value


def create_app(db_url: str, *, migrate: bool = True, engine: Engine | None = None,
               settings: Settings | None = None) -> FastAPI:
    if migrate:
        upgrade(db_url)
    engine = engine or make_engine(db_url)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ticker = asyncio.create_task(_tick_rollouts(app))
        try:
            yield
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            engine.dispose()

    app = FastAPI(title="City Kiosk fleet server", version="1", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.engine = engine
    app.state.sessions = session_factory(engine)
    app.state.settings = settings or Settings()
    app.state.write_turn = threading.Lock() if is_sqlite(db_url) else contextlib.nullcontext()

    @app.exception_handler(svc.FleetError)
    async def _refused(request: Request, exc: svc.FleetError) -> JSONResponse:
        actor = getattr(request.state, "actor", None) or f"anonymous:{request.client.host if request.client else '?'}"
        await run_in_threadpool(_audit_refusal, request, actor, exc, path=request.url.path,
                                method=request.method)
        log.info("refused %s %s: %s", request.method, request.url.path, exc.code)
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [{k: v for k, v in err.items() if k in ("loc", "msg", "type")} for err in exc.errors()]
        refusal = svc.FleetError(422, "request.invalid", "the request does not have the expected shape",
                                 action=f"{request.method} {request.url.path}"[:64])
        actor = getattr(request.state, "actor", None) or "anonymous"
        await run_in_threadpool(_audit_refusal, request, actor, refusal)
        return JSONResponse({**refusal.body(), "detail": json.loads(json.dumps(detail, default=str))},
                            status_code=422)

    @app.get("/healthz")
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/api/v1/ping")
    def ping() -> dict[str, bool]:
        """Unauthenticated and does nothing: the baseline the heartbeat bench compares with."""
        return {"ok": True}

    _agent_routes(app)
    _manager_routes(app)
    _reconcile_routes(app)
    add_dashboard(app, _transaction, _audit_refusal)
    return app


def _agent_routes(app: FastAPI) -> None:
    @app.post("/api/v1/enroll", status_code=201)
    async def enroll(request: Request) -> JSONResponse:
        path, body = await _signed_path(request)
        request.state.actor = "anonymous:enroll"
        try:
            data = EnrollIn.model_validate_json(body or b"{}")
        except ValueError:
            raise svc.FleetError(422, "request.invalid", "an enrollment needs token, serial, model, app_version "
                                 "and public_key", action="enroll") from None
        try:
            signing.public_from_b64(data.public_key)
        except signing.SignatureError as exc:
            raise svc.FleetError(422, "enroll.bad_key", f"public_key: {exc}", action="enroll") from None
        headers = {k: request.headers.get(k, "") for k in
                   (signing.H_KIOSK, signing.H_TIMESTAMP, signing.H_NONCE, signing.H_SIGNATURE)}
        settings = _settings(request)

        def work() -> dict[str, Any]:
            with _transaction(request) as session:
                svc.check_enroll_signature(session, method=request.method, path=path, headers=headers, body=body,
                                           public_key=data.public_key, now=time.time(),
                                           max_skew_s=settings.max_skew_s)
                kiosk = svc.enroll(session, token=data.token, serial=data.serial, model=data.model,
                                   app_version=data.app_version, public_key=data.public_key)
                key = svc.signing_key(session)
                return {"kiosk_id": kiosk.kiosk_id, "status": kiosk.status, "site": kiosk.site,
                        "fleet_public_key": signing.public_b64(key), "interval_s": settings.interval_s}

        return JSONResponse(await run_in_threadpool(work), status_code=201)

    @app.get("/api/v1/agent/status")
    def agent_status(call: Signed, request: Request) -> dict[str, Any]:
        return _agent_tx(request, call, lambda db, kiosk: {  # type: ignore[no-any-return]
            "kiosk_id": kiosk.kiosk_id, "status": kiosk.status, "site": kiosk.site}, allow=tuple(KioskStatus))

    @app.post("/api/v1/agent/heartbeat")
    async def agent_heartbeat(request: Request) -> Response:
        """The request a fleet sends most (bench/bench_fleet_heartbeat.py): checked and stored in
        one transaction of a few statements on a bare connection (svc.signed_heartbeat), in one
        hop to a worker thread, answered as JSON bytes."""
        call = await _signed_call(request)
        try:
            report = svc.json_loads(call.body or b"{}")
        except ValueError:
            raise svc.FleetError(422, "request.invalid", "the body is not JSON", action="heartbeat") from None
        if not isinstance(report, dict):
            raise svc.FleetError(422, "request.invalid", "the body must be a JSON object", action="heartbeat")
        settings = _settings(request)

        def work() -> tuple[str, dict[str, Any]]:
            with request.app.state.write_turn, request.app.state.engine.begin() as conn:
                return svc.signed_heartbeat(
                    conn, method=call.method, path=call.path, headers=call.headers, body=call.body, report=report,
                    now=time.time(), interval_s=settings.interval_s, max_skew_s=settings.max_skew_s)

        kiosk_id, answer = await run_in_threadpool(work)
        request.state.actor = f"kiosk:{kiosk_id}"
        return Response(svc.json_dumps(answer), media_type="application/json")

    @app.get("/api/v1/agent/config")
    def agent_config(call: Signed, request: Request) -> Response:
        ttl = _settings(request).config_ttl
        doc = _agent_tx(request, call, lambda db, caller: svc.config_document(
            db, db.get(svc.Kiosk, caller.kiosk_id), svc.signing_key(db), ttl))
        if doc is None:
            return Response(status_code=204)
        return JSONResponse(doc)

    @app.post("/api/v1/agent/journal")
    def agent_journal(call: Signed, request: Request) -> dict[str, Any]:
        body = _json_body(call.body, "journal.upload")
        try:
            return _agent_tx(request, call,  # type: ignore[no-any-return]
                             lambda db, kiosk: journal.upload(db, kiosk.kiosk_id, body.get("rows")))
        except journal.JournalRefused as exc:
            with request.app.state.write_turn:
                journal.record_problem(_sessions(request), exc)
            raise

    @app.post("/api/v1/agent/commands/{command_id}/feedback")
    def agent_feedback(command_id: int, call: Signed, request: Request) -> dict[str, Any]:
        try:
            data = FeedbackIn.model_validate_json(call.body or b"{}")
        except ValueError:
            raise svc.FleetError(422, "request.invalid", "feedback is {status, result}",
                                 action="command.feedback", target=call.headers[signing.H_KIOSK][:64]) from None
        return _agent_tx(request, call, lambda db, kiosk: svc.command_view(  # type: ignore[no-any-return]
            svc.command_feedback(db, kiosk, command_id, data.status, data.result)))


def _manager_routes(app: FastAPI) -> None:
    @app.get("/api/v1/kiosks")
    def kiosks(manager: ManagerDep, request: Request) -> list[dict[str, Any]]:
        svc.require(manager, Role.VIEWER, "kiosk.list")
        return _tx(request, lambda db: svc.list_kiosks(db, _settings(request).interval_s))  # type: ignore[no-any-return]

    @app.get("/api/v1/kiosks/{kiosk_id}")
    def kiosk(kiosk_id: str, manager: ManagerDep, request: Request) -> dict[str, Any]:
        svc.require(manager, Role.VIEWER, "kiosk.show", kiosk_id)
        return _tx(request, lambda db: svc.get_kiosk(db, kiosk_id, _settings(request).interval_s))  # type: ignore[no-any-return]

    def _decider(decision: str) -> Callable[..., dict[str, Any]]:
        def decide(kiosk_id: str, manager: ManagerDep, request: Request) -> dict[str, Any]:
            def work(db: Session) -> dict[str, Any]:
                kiosk = svc.decide(db, manager, kiosk_id, decision)
                return {"kiosk_id": kiosk.kiosk_id, "status": kiosk.status}

            return _tx(request, work)  # type: ignore[no-any-return]

        return decide

    for decision in ("accept", "reject", "revoke"):
        app.post(f"/api/v1/kiosks/{{kiosk_id}}/{decision}", name=f"kiosk_{decision}")(_decider(decision))

    @app.post("/api/v1/enroll-tokens", status_code=201)
    def enroll_token(body: EnrollTokenIn, manager: ManagerDep, request: Request) -> dict[str, Any]:
        token = _tx(request, lambda db: svc.create_enroll_token(
            db, manager, label=body.label, site=body.site, needs_approval=body.needs_approval,
            max_uses=body.max_uses, ttl=dt.timedelta(seconds=body.ttl_s)))
        return {"token": token}

    @app.post("/api/v1/manager-tokens", status_code=201)
    def manager_token(body: ManagerTokenIn, manager: ManagerDep, request: Request) -> dict[str, Any]:
        token = _tx(request, lambda db: svc.create_manager_token(db, manager, body.name, body.role))
        return {"name": body.name, "role": body.role.value, "token": token}

    @app.post("/api/v1/config/{scope}")
    @app.post("/api/v1/config/{scope}/{target}")
    def push_config(scope: str, manager: ManagerDep, request: Request,
                    settings: Annotated[dict[str, Any], Body()], target: str = "") -> dict[str, Any]:
        revision = _tx(request, lambda db: svc.push_layer(db, manager, scope, target, settings))
        return {"scope": scope, "target": target, "revision": revision}

    @app.post("/api/v1/kiosks/{kiosk_id}/commands", status_code=201)
    def command(kiosk_id: str, body: CommandIn, manager: ManagerDep, request: Request) -> dict[str, Any]:
        return _tx(request, lambda db: svc.command_view(svc.queue_command(  # type: ignore[no-any-return]
            db, manager, kiosk_id, body.kind, body.args, dt.timedelta(seconds=body.ttl_s))))

    @app.get("/api/v1/kiosks/{kiosk_id}/commands")
    def commands(kiosk_id: str, manager: ManagerDep, request: Request) -> list[dict[str, Any]]:
        svc.require(manager, Role.VIEWER, "command.list", kiosk_id)
        return _tx(request, lambda db: svc.list_commands(db, kiosk_id))  # type: ignore[no-any-return]

    @app.get("/api/v1/audit")
    def audit(manager: ManagerDep, request: Request, limit: int = 100,
              outcome: str | None = None) -> list[dict[str, Any]]:
        svc.require(manager, Role.ADMIN, "audit.read")
        return _tx(request, lambda db: svc.audit_entries(db, min(max(limit, 1), 1000), outcome=outcome))  # type: ignore[no-any-return]

    @app.post("/api/v1/rollouts", status_code=201)
    def rollout_create(body: RolloutIn, manager: ManagerDep, request: Request) -> dict[str, Any]:
        scope, _, target = body.target.partition(":")
        return _tx(request, lambda db: rollout.view(db, rollout.create(  # type: ignore[no-any-return]
            db, manager, scope=scope, target=target, settings=body.settings, stages=body.stages,
            action_timeout_s=body.action_timeout_s, max_failure_pct=body.max_failure_pct, window=body.window)))

    @app.get("/api/v1/rollouts")
    def rollouts(manager: ManagerDep, request: Request) -> list[dict[str, Any]]:
        svc.require(manager, Role.VIEWER, "rollout.list")
        return _tx(request, rollout.list_views)  # type: ignore[no-any-return]

    @app.get("/api/v1/rollouts/{rollout_id}")
    def rollout_show(rollout_id: int, manager: ManagerDep, request: Request) -> dict[str, Any]:
        svc.require(manager, Role.VIEWER, "rollout.show", str(rollout_id))
        return _tx(request, lambda db: rollout.show(db, rollout_id))  # type: ignore[no-any-return]

    def _rollout_verb(verb: str) -> Callable[..., dict[str, Any]]:
        def control(rollout_id: int, manager: ManagerDep, request: Request) -> dict[str, Any]:
            return _tx(request, lambda db: rollout.view(  # type: ignore[no-any-return]
                db, rollout.control(db, manager, rollout_id, verb)))

        return control

    for verb in ("pause", "resume", "abort"):
        app.post(f"/api/v1/rollouts/{{rollout_id}}/{verb}", name=f"rollout_{verb}")(_rollout_verb(verb))

    @app.post("/api/v1/statements/{day}")
    def statement_issue(day: dt.date, manager: ManagerDep, request: Request) -> dict[str, Any]:
        return _tx(request, lambda db: journal.statement(db, manager, day))  # type: ignore[no-any-return]

    @app.get("/api/v1/statements/{day}")
    def statement_get(day: dt.date, manager: ManagerDep, request: Request) -> dict[str, Any]:
        svc.require(manager, Role.VIEWER, "statement.show", day.isoformat())

        def work(db: Session) -> dict[str, Any]:
            held = db.get(svc_models.Statement, day.isoformat())
            if held is None:
                raise svc.FleetError(404, "statement.unknown", f"no statement for {day} yet",
                                     action="statement.show", target=day.isoformat())
            return dict(held.document)

        return _tx(request, work)  # type: ignore[no-any-return]

    @app.get("/api/v1/fleet-key")
    def fleet_key(manager: ManagerDep, request: Request) -> dict[str, str]:
        svc.require(manager, Role.VIEWER, "fleet_key.show")
        return {"public_key": _tx(request, lambda db: signing.public_b64(svc.signing_key(db)))}


def _reconcile_routes(app: FastAPI) -> None:
    """Daily reconciliation against the back-office (provisioning.server.reconcile) and the
    journal rows an auditor checks a receipt with against a signed statement."""
    from provisioning.server import reconcile

    @app.get("/api/v1/reconciliations")
    def reconciliations(manager: ManagerDep, request: Request) -> list[dict[str, Any]]:
        svc.require(manager, Role.VIEWER, "reconcile.list")
        return _tx(request, reconcile.days_run)  # type: ignore[no-any-return]

    @app.get("/api/v1/reconciliations/{day}")
    def reconciliation(day: dt.date, manager: ManagerDep, request: Request,
                       kiosk_id: str | None = None) -> dict[str, Any]:
        svc.require(manager, Role.VIEWER, "reconcile.show", day.isoformat())
        return _tx(request, lambda db: reconcile.fleet_view(db, day, kiosk_id))  # type: ignore[no-any-return]

    @app.post("/api/v1/reconciliations/{day}")
    def reconciliation_run(day: dt.date, manager: ManagerDep, request: Request,
                           kiosk_id: str | None = None) -> dict[str, Any]:
        return run_reconciliation(request, manager, day, kiosk_id)

    @app.get("/api/v1/kiosks/{kiosk_id}/journal")
    def journal_rows(kiosk_id: str, manager: ManagerDep, request: Request, from_seq: int = 1,
                     to_seq: int | None = None) -> dict[str, Any]:
        svc.require(manager, Role.VIEWER, "journal.read", kiosk_id)
        last = from_seq + 4999 if to_seq is None else min(to_seq, from_seq + 4999)
        return {"kiosk_id": kiosk_id, "rows": _tx(request, lambda db: reconcile.journal_rows(db, kiosk_id, from_seq, last))}


def run_reconciliation(request: Request, manager: svc.Manager, day: dt.date, kiosk_id: str | None) -> dict[str, Any]:
    """Ask the configured back-office (outside any transaction), then compare and store."""
    from provisioning.server import reconcile

    svc.require(manager, Role.OPERATOR, "reconcile.run", kiosk_id or day.isoformat())
    settings = _settings(request)
    if not settings.backoffice_url or not settings.backoffice_token:
        raise svc.FleetError(409, "reconcile.not_configured", "this server has no back-office to reconcile with "
                             "(fleet serve --backoffice URL, with $FLEET_BACKOFFICE_TOKEN)", action="reconcile.run")
    records = reconcile.fetch_window(settings.backoffice_url, settings.backoffice_token, day, kiosk_id)
    return _tx(request, lambda db: reconcile.reconcile(db, manager, day, records, kiosk_id))  # type: ignore[no-any-return]
