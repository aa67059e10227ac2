"""The FastAPI application of the reference municipal gateway (routes under /api/v1)."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Annotated, Any, AsyncIterator, Iterator

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from backoffice import billing, settlement
from backoffice.auth import kiosk_for_token
from backoffice.db import make_engine, session_factory, upgrade
from backoffice.errors import ApiError
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

log = logging.getLogger("backoffice.api")

# Swagger UI's own files (swagger-ui-dist, Apache-2.0, see static/swagger-ui/LICENSE), served
# by the app so /docs works on a network without the internet.
STATIC_DIR = Path(__file__).resolve().parent / "static"
SWAGGER_PREFIX = "/static/swagger-ui"
# paths whose validation errors are a bad query rather than a bad body
_QUERY_PATHS = ("/fee-slips", "/journal-anchors")

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody}, 404: {"model": ErrorBody}, 409: {"model": ErrorBody}, 422: {"model": ErrorBody},
}


def _sessions(request: Request) -> sessionmaker[Session]:
    return request.app.state.sessions  # type: ignore[no-any-return]


def _session(request: Request) -> Iterator[Session]:
    with _sessions(request)() as session:
        yield session


# declared so the OpenAPI document (and /docs' Authorize button) shows how to authenticate;
# auto_error off: a missing or malformed header gets our own 401 body, not FastAPI's
_bearer = HTTPBearer(auto_error=False, description="the kiosk's token (backoffice kiosk add)")


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


KioskId = Annotated[str, Depends(_kiosk)]
Db = Annotated[Session, Depends(_session)]


def create_app(db_url: str, *, migrate: bool = True, engine: Engine | None = None) -> FastAPI:
    """The app bound to `db_url`; `migrate` runs `alembic upgrade head` first."""
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
        return JSONResponse(exc.body(), status_code=exc.status_code)

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
        kiosk: KioskId,
        db: Db,
        national_code: Annotated[str | None, Query(max_length=32)] = None,
        renovation_code: Annotated[str | None, Query(max_length=64)] = None,
        plate: Annotated[str | None, Query(max_length=64)] = None,
        business_license: Annotated[str | None, Query(max_length=64)] = None,
    ) -> OwnerSlipsOut:
        return billing.fee_slips(db, national_code=national_code, renovation_code=renovation_code,
                                 plate=plate, business_license=business_license)

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

    return app
