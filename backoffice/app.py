"""The FastAPI application of the reference municipal gateway (routes under /api/v1)."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from pathlib import Path
from typing import Annotated, Any, AsyncIterator, Iterator

from fastapi import Depends, FastAPI, Header, Path as PathParam, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from backoffice import billing, municipal, permits, reconciliation, settlement, tickets, transit
from backoffice.auth import kiosk_for_token, service_for_token
from backoffice.db import make_engine, session_factory, upgrade
from backoffice.errors import ApiError
from backoffice.models import ServiceRole
from backoffice.municipal import LookupLimits
from backoffice.municipal_schemas import (
    CertificateIn,
    CertificateOut,
    LookupIn,
    LookupOut,
    PermitCheckOut,
    PermitIn,
    PermitOut,
    PermitQuoteOut,
)
from backoffice.schemas import (
    MAX_JOURNAL_SEQ,
    BillOut,
    ErrorBody,
    HealthOut,
    JournalAnchorsOut,
    OwnerSlipsOut,
    PaymentIn,
    SettlementOut,
)
from backoffice.transit_schemas import (
    CARD_SERIAL_PATTERN,
    CardAccountOut,
    DailyTotalsOut,
    LoadIn,
    LoadOut,
    PendingActionIn,
    PendingActionOut,
    PendingLoadIn,
    PendingLoadOut,
    RedeemIn,
    RedemptionOut,
    SettleIn,
    TicketIn,
    TicketOut,
)

log = logging.getLogger("backoffice.api")

# Swagger UI's own files (swagger-ui-dist, Apache-2.0, see static/swagger-ui/LICENSE), served
# by the app so /docs works on a network without the internet.
STATIC_DIR = Path(__file__).resolve().parent / "static"
SWAGGER_PREFIX = "/static/swagger-ui"
# paths whose validation errors are a bad query rather than a bad body
_QUERY_PATHS = ("/fee-slips", "/journal-anchors", "/daily-totals", "/traffic-permits/quote", "/traffic-permits/check",
                "/reconciliation")

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody}, 404: {"model": ErrorBody}, 409: {"model": ErrorBody}, 422: {"model": ErrorBody},
}
_LIMITED_ERRORS: dict[int | str, dict[str, Any]] = {**_ERRORS, 429: {"model": ErrorBody}}


def _sessions(request: Request) -> sessionmaker[Session]:
    return request.app.state.sessions  # type: ignore[no-any-return]


def _session(request: Request) -> Iterator[Session]:
    with _sessions(request)() as session:
        yield session


# declared so the OpenAPI document (and /docs' Authorize button) shows how to authenticate;
# auto_error off: a missing or malformed header gets our own 401 body, not FastAPI's
_bearer = HTTPBearer(auto_error=False, description="the kiosk's token (backoffice kiosk add); an integration's "
                     "or a gate's token (backoffice token add) for their own calls")


def _kiosk(request: Request,
           credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    """The calling kiosk from `Authorization: Bearer <token>`; 401 otherwise."""
    if credentials is None:
        raise ApiError(401, "auth.unauthorized")
    with _sessions(request)() as session:
        kiosk_id = kiosk_for_token(session, credentials.credentials.strip())
    if kiosk_id is None:
        raise ApiError(401, "auth.unauthorized")
    return kiosk_id


def _service(role: ServiceRole) -> Any:
    def holder(request: Request,
               credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
        """The calling integration or gate (by `role`) from its bearer token; 401 otherwise."""
        if credentials is None:
            raise ApiError(401, "auth.unauthorized")
        with _sessions(request)() as session:
            name = service_for_token(session, credentials.credentials.strip(), role)
        if name is None:
            raise ApiError(401, "auth.unauthorized")
        return name

    return holder


def _kiosk_or_integration(request: Request,
                          credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
                          ) -> tuple[str, str]:
    """("kiosk", id) or ("integration", name): daily totals are a kiosk's own, or everyone's."""
    if credentials is None:
        raise ApiError(401, "auth.unauthorized")
    token = credentials.credentials.strip()
    with _sessions(request)() as session:
        kiosk_id = kiosk_for_token(session, token)
        if kiosk_id is not None:
            return "kiosk", kiosk_id
        name = service_for_token(session, token, ServiceRole.INTEGRATION)
    if name is None:
        raise ApiError(401, "auth.unauthorized")
    return "integration", name


KioskId = Annotated[str, Depends(_kiosk)]
IntegrationName = Annotated[str, Depends(_service(ServiceRole.INTEGRATION))]
GateName = Annotated[str, Depends(_service(ServiceRole.GATE))]
CameraName = Annotated[str, Depends(_service(ServiceRole.CAMERA))]
Caller = Annotated[tuple[str, str], Depends(_kiosk_or_integration)]
Serial = Annotated[str, PathParam(pattern=CARD_SERIAL_PATTERN)]
Db = Annotated[Session, Depends(_session)]


def create_app(db_url: str, *, migrate: bool = True, engine: Engine | None = None,
               lookup_limits: LookupLimits | None = None) -> FastAPI:
    """The app bound to `db_url`; `migrate` runs `alembic upgrade head` first.
    `lookup_limits`: default from the environment (LookupLimits.from_env)."""
    if migrate:
        upgrade(db_url)
    engine = engine or make_engine(db_url)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    # docs_url/redoc_url off: FastAPI's own pages load their scripts from a CDN
    app = FastAPI(title="City Kiosk reference back-office", version="1",
                  description="Municipal gateway: bills, fee slips, payments.", lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.state.engine = engine
    app.state.sessions = session_factory(engine)
    app.state.lookup_limits = lookup_limits or LookupLimits.from_env()
    app.state.secret_cache = {}
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} — API",
            swagger_js_url=f"{root}{SWAGGER_PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{SWAGGER_PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{root}{SWAGGER_PREFIX}/favicon-32x32.png",
            # no online validator badge: it would call an outside service
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        code = "query.invalid" if request.url.path.endswith(_QUERY_PATHS) else "request.invalid"
        # drop the offending input from the echo: it could be a card number
        detail = [{k: v for k, v in err.items() if k not in ("input", "ctx", "url")} for err in exc.errors()]
        return JSONResponse({"error": code, "detail": jsonable_encoder(detail)}, status_code=422)

    @app.get("/healthz", response_model=HealthOut)
    def healthz() -> HealthOut:
        return HealthOut(ok=True)

    @app.get("/api/v1/bills/{bill_id}/{payment_id}", response_model=BillOut, responses=_ERRORS)
    def get_bill(bill_id: str, payment_id: str, kiosk: KioskId, db: Db) -> BillOut:
        return billing.lookup_bill(db, bill_id, payment_id)

    @app.get("/api/v1/fee-slips", response_model=OwnerSlipsOut, responses=_ERRORS)
    def get_fee_slips(
        request: Request,
        kiosk: KioskId,
        national_code: Annotated[str | None, Query(max_length=32)] = None,
        renovation_code: Annotated[str | None, Query(max_length=64)] = None,
        plate: Annotated[str | None, Query(max_length=64)] = None,
        business_license: Annotated[str | None, Query(max_length=64)] = None,
    ) -> OwnerSlipsOut:
        def query(session: Session) -> OwnerSlipsOut:
            return billing.fee_slips(session, national_code=national_code, renovation_code=renovation_code,
                                     plate=plate, business_license=business_license)

        who = municipal.legacy_identifier(national_code, plate, business_license)
        if who is None:  # malformed: billing answers the 422
            with _sessions(request)() as session:
                return query(session)
        return municipal.legacy_lookup(_sessions(request), _limits(request), _secret(request), kiosk, *who, query)

    @app.post("/api/v1/payments", status_code=201, response_model=SettlementOut, responses=_ERRORS)
    def post_payment(
        body: PaymentIn,
        request: Request,
        kiosk: KioskId,
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> Response:
        status, text = settlement.post_payment(_sessions(request), kiosk, idempotency_key or "", body)
        # the stored text, byte for byte: a replay must be the identical first response
        return Response(content=text, status_code=status, media_type="application/json")

    @app.get("/api/v1/payments/{transaction_id}", response_model=SettlementOut, responses=_ERRORS)
    def get_payment(transaction_id: str, kiosk: KioskId, db: Db) -> SettlementOut:
        return settlement.payment_status(db, kiosk, transaction_id)

    @app.get("/api/v1/journal-anchors", response_model=JournalAnchorsOut, responses=_ERRORS)
    def get_journal_anchors(
        kiosk: KioskId,
        db: Db,
        after_seq: Annotated[int, Query(ge=0, le=MAX_JOURNAL_SEQ)] = 0,
        limit: Annotated[int, Query(ge=1, le=settlement.MAX_ANCHORS_PAGE)] = settlement.MAX_ANCHORS_PAGE,
    ) -> JournalAnchorsOut:
        return settlement.journal_anchors(db, kiosk, after_seq, limit)

    @app.get("/api/v1/reconciliation", response_model=reconciliation.DayRecordsOut, responses=_ERRORS)
    def get_reconciliation(caller: Caller, db: Db, date: Annotated[dt.date, Query()],
                           kiosk_id: Annotated[str | None, Query(max_length=64)] = None
                           ) -> reconciliation.DayRecordsOut:
        """Each fee payment, transit load, ticket and permit stored on `date` (Tehran): a
        kiosk gets its own only; an integration (the fleet's reconciliation) every kiosk's, or
        `kiosk_id`'s."""
        role, who = caller
        return reconciliation.day_records(db, date, who if role == "kiosk" else kiosk_id)

    _transit_routes(app)
    _municipal_routes(app)
    return app


def _limits(request: Request) -> LookupLimits:
    return request.app.state.lookup_limits  # type: ignore[no-any-return]


def _secret(request: Request) -> bytes:
    return municipal.audit_secret(_sessions(request), request.app.state.secret_cache)


def _municipal_routes(app: FastAPI) -> None:
    """Issue 9: look-ups by fee type (limited, audited), certificates, traffic-zone permits."""

    @app.post("/api/v1/lookups", response_model=LookupOut, responses=_LIMITED_ERRORS)
    def post_lookup(body: LookupIn, request: Request, kiosk: KioskId) -> LookupOut:
        # a POST so identifiers stay out of URLs (and out of any proxy's access log)
        return municipal.lookup(_sessions(request), _limits(request), _secret(request), kiosk, body)

    @app.post("/api/v1/certificates", status_code=201, response_model=CertificateOut, responses=_LIMITED_ERRORS)
    def post_certificate(body: CertificateIn, request: Request, kiosk: KioskId,
                         idempotency_key: Annotated[str | None, Header()] = None) -> Response:
        return _json(*municipal.request_certificate(_sessions(request), _limits(request), _secret(request), kiosk,
                                                    idempotency_key, body))

    @app.get("/api/v1/certificates/{certificate_id}", response_model=CertificateOut, responses=_ERRORS)
    def get_certificate(certificate_id: str, kiosk: KioskId, db: Db) -> CertificateOut:
        return municipal.certificate_status(db, certificate_id)

    @app.get("/api/v1/traffic-permits/quote", response_model=PermitQuoteOut, responses=_ERRORS)
    def get_permit_quote(kiosk: KioskId, db: Db, plate: Annotated[str, Query(max_length=64)],
                         date: Annotated[dt.date, Query()]) -> PermitQuoteOut:
        return permits.quote(db, plate, date)

    @app.get("/api/v1/traffic-permits/check", response_model=PermitCheckOut, responses=_ERRORS)
    def get_permit_check(camera: CameraName, db: Db, plate: Annotated[str, Query(max_length=64)],
                         date: Annotated[dt.date | None, Query()] = None) -> PermitCheckOut:
        return permits.check(db, plate, date)

    @app.post("/api/v1/traffic-permits", status_code=201, response_model=PermitOut, responses=_ERRORS)
    def post_permit(body: PermitIn, request: Request, kiosk: KioskId,
                    idempotency_key: Annotated[str | None, Header()] = None) -> Response:
        return _json(*permits.post_permit(_sessions(request), kiosk, idempotency_key, body))

    @app.get("/api/v1/traffic-permits/{transaction_id}", response_model=PermitOut, responses=_ERRORS)
    def get_permit(transaction_id: str, kiosk: KioskId, db: Db) -> PermitOut:
        return permits.permit_status(db, kiosk, transaction_id)


def _json(status: int, text: str) -> Response:
    # the stored text, byte for byte: a replay must be the identical first response
    return Response(content=text, status_code=status, media_type="application/json")


def _transit_routes(app: FastAPI) -> None:
    """Issue 8: card accounts, loads, pending loads and actions, QR tickets, daily totals."""

    @app.post("/api/v1/transit/loads", status_code=201, response_model=LoadOut, responses=_ERRORS)
    def post_load(body: LoadIn, request: Request, kiosk: KioskId,
                  idempotency_key: Annotated[str | None, Header()] = None) -> Response:
        return _json(*transit.post_load(_sessions(request), kiosk, idempotency_key, body))

    @app.get("/api/v1/transit/loads/{transaction_id}", response_model=LoadOut, responses=_ERRORS)
    def get_load(transaction_id: str, kiosk: KioskId, db: Db) -> LoadOut:
        return transit.load_status(db, kiosk, transaction_id)

    @app.get("/api/v1/transit/cards/{serial}", response_model=CardAccountOut, responses=_ERRORS)
    def get_card(serial: Serial, kiosk: KioskId, db: Db) -> CardAccountOut:
        return transit.card_account(db, serial)

    @app.post("/api/v1/transit/pending-loads", status_code=201, response_model=PendingLoadOut, responses=_ERRORS)
    def post_pending_load(body: PendingLoadIn, request: Request, client: IntegrationName) -> JSONResponse:
        status, out = transit.post_pending_load(_sessions(request), client, body)
        return JSONResponse(out.model_dump(mode="json"), status_code=status)

    @app.post("/api/v1/transit/pending-actions", status_code=201, response_model=PendingActionOut,
              responses=_ERRORS)
    def post_pending_action(body: PendingActionIn, request: Request, kiosk: KioskId,
                            idempotency_key: Annotated[str | None, Header()] = None) -> Response:
        return _json(*transit.post_pending_action(_sessions(request), kiosk, idempotency_key, body))

    @app.post("/api/v1/transit/pending-actions/{transaction_id}/settle", response_model=PendingActionOut,
              responses=_ERRORS)
    def settle_pending_action(transaction_id: str, body: SettleIn, request: Request,
                              kiosk: KioskId) -> PendingActionOut:
        return transit.settle_pending_action(_sessions(request), kiosk, transaction_id, body)

    @app.get("/api/v1/transit/daily-totals", response_model=DailyTotalsOut, responses=_ERRORS)
    def get_daily_totals(caller: Caller, db: Db, date: Annotated[dt.date, Query()]) -> DailyTotalsOut:
        role, who = caller
        return transit.daily_totals(db, date, who if role == "kiosk" else None)

    @app.post("/api/v1/tickets", status_code=201, response_model=TicketOut, responses=_ERRORS)
    def post_ticket(body: TicketIn, request: Request, kiosk: KioskId,
                    idempotency_key: Annotated[str | None, Header()] = None) -> Response:
        return _json(*tickets.post_ticket(_sessions(request), kiosk, idempotency_key, body))

    @app.get("/api/v1/tickets/{ticket_id}", response_model=TicketOut, responses=_ERRORS)
    def get_ticket(ticket_id: str, kiosk: KioskId, db: Db) -> TicketOut:
        return tickets.ticket_status(db, kiosk, ticket_id)

    @app.post("/api/v1/tickets/{ticket_id}/redeem", status_code=201, response_model=RedemptionOut,
              responses=_ERRORS)
    def redeem_ticket(ticket_id: str, body: RedeemIn, request: Request, gate: GateName,
                      idempotency_key: Annotated[str | None, Header()] = None) -> JSONResponse:
        status, out = tickets.redeem(_sessions(request), gate, idempotency_key, ticket_id, body)
        return JSONResponse(out.model_dump(mode="json"), status_code=status)
