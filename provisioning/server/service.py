"""What the fleet server does, independent of HTTP: enrollment, signed-request checks,
manager tokens and roles, configuration layers and signed documents, heartbeats, commands,
and the audit log. The API (app.py) and the CLI (cli.py) both call these functions, so a
rule holds whichever way a manager reaches the fleet.

Every refusal is a FleetError with a stable code and one line of English for a person; the
caller records it in the audit log (audit_refusal) in its own transaction, so the refusal is
kept even though the refused work is rolled back."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import random
import re
import secrets
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from sqlalchemy import Connection, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from provisioning.common import signing
from provisioning.common.config import DOC_TYPE, SCOPES, covers, layer_problem, merge, settings_hash
from provisioning.server.db import lock_signing_key
from provisioning.server.models import (
    AuditEntry,
    Command,
    CommandStatus,
    ConfigLayer,
    Counter,
    EnrollToken,
    Kiosk,
    KioskStatus,
    ManagerToken,
    Nonce,
    Role,
    SigningKey,
    utcnow,
)

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
NONCE_PATTERN = re.compile(r"[A-Za-z0-9_-]{%d,%d}" % (signing.NONCE_MIN, signing.NONCE_MAX))
DEFAULT_INTERVAL_S = 60
DEFAULT_CONFIG_TTL = dt.timedelta(days=7)
DEFAULT_COMMAND_TTL = dt.timedelta(hours=24)
MAX_ENROLL_TTL = dt.timedelta(days=90)
MAX_RESULT_CHARS = 65536
#: commands an agent knows, and the arguments each takes
COMMAND_KINDS: dict[str, tuple[str, ...]] = {
    "restart": (), "maintenance_on": (), "maintenance_off": (),
    "disable_service": ("service",), "enable_service": ("service",), "upload_logs": (),
}
DEVICE_OK = ("ok", "ready", "idle", "online")


class FleetError(Exception):
    """A refusal: HTTP status, stable code, one line for a person; `action`/`target` name
    what was attempted, for the audit log."""

    def __init__(self, status: int, code: str, message: str, *, action: str = "", target: str = "") -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.action, self.target = action, target

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message}


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def new_secret(prefix: str = "fleet_") -> str:
    """256 random bits, base64url, after a prefix: never starts with '-' (which a command line
    would take for an option) and is easy to spot if it leaks into a file or a log."""
    return prefix + secrets.token_urlsafe(32)


# --- audit --------------------------------------------------------------------------------------
def audit(session: Session, actor: str, action: str, target: str, outcome: str = "ok", **detail: Any) -> None:
    session.add(AuditEntry(at=utcnow(), actor=actor[:100], action=action[:64], target=target[:100],
                           outcome=outcome[:64], detail=detail))


#: refusals of callers who proved nothing (no valid token, no enrolled key) within this long of
#: an identical one are counted on that entry instead of adding rows: whoever knows the URL
#: must not be able to flood the audit log either
COALESCE_WINDOW = dt.timedelta(seconds=60)


def audit_refusal(sessions: sessionmaker[Session], actor: str, exc: FleetError, **detail: Any) -> None:
    """Record a refusal in a transaction of its own (the refused one was rolled back)."""
    action, target = (exc.action or "request")[:64], (exc.target or "-")[:100]
    with sessions() as session, session.begin():
        if actor.startswith(("anonymous", "kiosk?:")):
            now = utcnow()
            same = session.scalars(select(AuditEntry).where(
                AuditEntry.actor == actor[:100], AuditEntry.action == action, AuditEntry.target == target,
                AuditEntry.outcome == exc.code[:64], AuditEntry.at >= now - COALESCE_WINDOW)
                .order_by(AuditEntry.id.desc()).limit(1)).first()
            if same is not None:
                same.detail = {**same.detail, "repeated": int(same.detail.get("repeated", 1)) + 1,
                               "last_at": signing.iso(now)}
                return
        audit(session, actor, action, target, exc.code, message=exc.message, **detail)


def audit_entries(session: Session, limit: int = 100, *, outcome: str | None = None) -> list[dict[str, Any]]:
    q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if outcome is not None:
        q = q.where(AuditEntry.outcome == outcome)
    return [{"id": a.id, "at": signing.iso(a.at), "actor": a.actor, "action": a.action, "target": a.target,
             "outcome": a.outcome, "detail": a.detail} for a in session.scalars(q)]


# --- managers -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Manager:
    name: str
    role: Role

    @property
    def actor(self) -> str:
        return f"manager:{self.name}"


#: the CLI acts with the database's own authority (whoever holds the URL holds everything)
CLI = Manager("cli", Role.ADMIN)


def manager_for_token(session: Session, token: str) -> Manager | None:
    if not token:
        return None
    row = session.scalars(select(ManagerToken).where(ManagerToken.token_sha256 == sha256(token))).one_or_none()
    if row is None or not row.enabled:
        return None
    return Manager(row.name, Role(row.role))


def require(manager: Manager, need: Role, action: str, target: str = "-") -> None:
    if manager.role.rank < need.rank:
        raise FleetError(403, "auth.forbidden",
                         f"{action} needs the {need.value} role; {manager.name!r} is {manager.role.value}",
                         action=action, target=target)


def _check_name(text: str, what: str, action: str) -> None:
    if not isinstance(text, str) or not NAME_PATTERN.fullmatch(text):
        raise FleetError(422, "request.invalid", f"{what} is 1-64 letters, digits, '.', '_' or '-'",
                         action=action, target=str(text)[:64])


def create_manager_token(session: Session, by: Manager, name: str, role: Role) -> str:
    """A new token for manager `name` (rotates an existing one); returns it (shown once)."""
    require(by, Role.ADMIN, "manager_token.create", name)
    _check_name(name, "a manager name", "manager_token.create")
    token = new_secret("fleetm_")
    row = session.get(ManagerToken, name)
    if row is None:
        session.add(ManagerToken(name=name, token_sha256=sha256(token), role=role.value, enabled=True,
                                 created_at=utcnow(), created_by=by.name))
    else:
        row.token_sha256, row.role, row.enabled = sha256(token), role.value, True
    audit(session, by.actor, "manager_token.create", name, role=role.value)
    return token


def disable_manager_token(session: Session, by: Manager, name: str) -> None:
    require(by, Role.ADMIN, "manager_token.disable", name)
    row = session.get(ManagerToken, name)
    if row is None:
        raise FleetError(404, "manager.unknown", f"no manager {name!r}", action="manager_token.disable", target=name)
    row.enabled = False
    audit(session, by.actor, "manager_token.disable", name)


# --- enrollment ---------------------------------------------------------------------------------
def create_enroll_token(session: Session, by: Manager, *, label: str, site: str | None = None,
                        needs_approval: bool = False, max_uses: int = 1,
                        ttl: dt.timedelta = dt.timedelta(days=1)) -> str:
    require(by, Role.ADMIN, "enroll_token.create", label)
    if site is not None:
        _check_name(site, "a site name", "enroll_token.create")
    if not 1 <= max_uses <= 100_000:
        raise FleetError(422, "request.invalid", "max uses is 1 to 100000", action="enroll_token.create")
    if not dt.timedelta(minutes=1) <= ttl <= MAX_ENROLL_TTL:
        raise FleetError(422, "request.invalid", "an enrollment token lives 1 minute to 90 days",
                         action="enroll_token.create")
    token = new_secret("fleete_")
    now = utcnow()
    session.add(EnrollToken(token_sha256=sha256(token), label=label[:100], site=site, needs_approval=needs_approval,
                            max_uses=max_uses, uses=0, expires_at=now + ttl, revoked=False, created_at=now,
                            created_by=by.name))
    audit(session, by.actor, "enroll_token.create", label, site=site, max_uses=max_uses,
          needs_approval=needs_approval, expires_at=signing.iso(now + ttl))
    return token


def _token_refusal(row: EnrollToken | None, now: dt.datetime) -> FleetError | None:
    def no(code: str, message: str) -> FleetError:
        return FleetError(401, code, message, action="enroll", target="-")

    if row is None:
        return no("enroll.token_invalid", "not a valid enrollment token; nothing was stored")
    if row.revoked:
        return no("enroll.token_revoked", "this enrollment token was revoked; nothing was stored")
    if row.expires_at <= now:
        return no("enroll.token_expired", "this enrollment token has expired; nothing was stored")
    if row.uses >= row.max_uses:
        return no("enroll.token_used_up", "this enrollment token has been used up; nothing was stored")
    return None


def enroll(session: Session, *, token: str, serial: str, model: str, app_version: str,
           public_key: str) -> Kiosk:
    """Enroll a kiosk: accepted, or pending when its token says so. Refused (nothing stored)
    without a valid token. The same kiosk enrolling again with the same key gets its record
    back without using the token again (a retry after a lost answer)."""
    now = utcnow()
    row = session.scalars(select(EnrollToken).where(EnrollToken.token_sha256 == sha256(token or ""))).one_or_none()
    _check_name(serial, "a serial number", "enroll")
    existing = session.get(Kiosk, serial)
    if row is not None and existing is not None and existing.public_key == public_key \
            and existing.enroll_token_id == row.id:
        return existing  # the same kiosk, key and token: a retry, the token is not used again
    refusal = _token_refusal(row, now)
    if refusal is not None:
        raise refusal
    assert row is not None
    if existing is not None and existing.status not in (KioskStatus.REVOKED, KioskStatus.REJECTED):
        raise FleetError(409, "enroll.serial_taken",
                         f"kiosk {serial!r} is enrolled with another key; a manager must revoke it first",
                         action="enroll", target=serial)
    other = session.scalars(select(Kiosk.kiosk_id).where(Kiosk.public_key == public_key)).first()
    if other is not None:
        raise FleetError(409, "enroll.key_taken", "this key belongs to another kiosk; generate a new one",
                         action="enroll", target=serial)
    used = session.execute(
        update(EnrollToken).where(EnrollToken.id == row.id, EnrollToken.uses < EnrollToken.max_uses)
        .values(uses=EnrollToken.uses + 1)).rowcount
    if used != 1:  # another kiosk took the last use meanwhile
        raise FleetError(401, "enroll.token_used_up", "this enrollment token has been used up; nothing was stored",
                         action="enroll", target=serial)
    status = KioskStatus.PENDING if row.needs_approval else KioskStatus.ACCEPTED
    fields = dict(serial=serial, model=model[:64], app_version=app_version[:32], public_key=public_key,
                  status=status.value, site=row.site, enroll_token_id=row.id, enrolled_at=now,
                  decided_at=None if row.needs_approval else now,
                  decided_by=None if row.needs_approval else f"token:{row.id}",
                  last_seen_at=None, heartbeat=None, desired_version=0, desired_hash=None,
                  reported_version=None, reported_values=None, config_state=None)
    if existing is None:
        kiosk = Kiosk(kiosk_id=serial, **fields)
        session.add(kiosk)
    else:  # a revoked or rejected kiosk re-enrolling with a new key (re-imaged)
        kiosk = existing
        fields.update(desired_version=existing.desired_version)  # versions never go back
        for k, v in fields.items():
            setattr(kiosk, k, v)
    session.flush()
    audit(session, f"kiosk:{serial}", "enroll", serial, status=status.value, token=row.id, site=row.site,
          key=signing.key_id(public_key))
    return kiosk


def _kiosk(session: Session, kiosk_id: str, action: str) -> Kiosk:
    kiosk = session.get(Kiosk, kiosk_id)
    if kiosk is None:
        raise FleetError(404, "kiosk.unknown", f"no kiosk {kiosk_id!r}", action=action, target=kiosk_id)
    return kiosk


def decide(session: Session, by: Manager, kiosk_id: str, decision: str) -> Kiosk:
    """accept / reject a pending kiosk (operator), revoke any kiosk (admin)."""
    action = f"kiosk.{decision}"
    need = Role.ADMIN if decision == "revoke" else Role.OPERATOR
    require(by, need, action, kiosk_id)
    kiosk = _kiosk(session, kiosk_id, action)
    if decision in ("accept", "reject") and kiosk.status != KioskStatus.PENDING:
        raise FleetError(409, "kiosk.not_pending", f"kiosk {kiosk_id!r} is {kiosk.status}, not pending",
                         action=action, target=kiosk_id)
    new = {"accept": KioskStatus.ACCEPTED, "reject": KioskStatus.REJECTED, "revoke": KioskStatus.REVOKED}[decision]
    kiosk.status, kiosk.decided_at, kiosk.decided_by = new.value, utcnow(), by.name
    audit(session, by.actor, action, kiosk_id)
    return kiosk


# --- signed agent requests ----------------------------------------------------------------------
@dataclass(frozen=True)
class Caller:
    """The kiosk behind a verified request: the columns the hot path needs, read with one
    Core query (no ORM object: a heartbeat is the request the fleet sends most)."""

    kiosk_id: str
    status: str
    site: str | None
    desired_version: int
    desired_hash: str | None
    config_state: str | None


_KT = Kiosk.__table__
# the hot path's statements, built once (building a select() costs more than running it here)
_SELECT_CALLER = select(_KT.c.public_key, _KT.c.status, _KT.c.site, _KT.c.desired_version, _KT.c.desired_hash,
                        _KT.c.config_state).where(_KT.c.kiosk_id == bindparam("kid"))
_LOCK_DESIRED = select(_KT.c.desired_version, _KT.c.desired_hash).where(
    _KT.c.kiosk_id == bindparam("kid")).with_for_update()
_NONCE_INSERTS: dict[str, Any] = {}


def _nonce_insert(dialect: str) -> Any:
    stmt = _NONCE_INSERTS.get(dialect)
    if stmt is None:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as upsert
        else:
            from sqlalchemy.dialects.sqlite import insert as upsert  # type: ignore[assignment]
        table = Nonce.__table__
        # rowcount is not reliable across drivers (psycopg gives -1 here); a returned row is
        stmt = _NONCE_INSERTS[dialect] = upsert(table).values(
            kiosk_id=bindparam("owner"), nonce=bindparam("nonce"), seen_at=bindparam("seen", type_=table.c.seen_at.type)
        ).on_conflict_do_nothing().returning(table.c.nonce)
    return stmt


def _signature_headers(method: str, path: str, headers: Mapping[str, str], now: float,
                       max_skew_s: int) -> tuple[str, str, str, str, Callable[[int, str, str], FleetError]]:
    """A signed request's kiosk, timestamp, nonce and signature, once all are there, the clock
    is within `max_skew_s` and the nonce is well-formed (the checks that need no database),
    and how to refuse it; FleetError 401 auth.* otherwise."""
    kiosk_id = headers.get(signing.H_KIOSK, "")
    ts, nonce, sig = (headers.get(h, "") for h in (signing.H_TIMESTAMP, signing.H_NONCE, signing.H_SIGNATURE))
    target = kiosk_id[:64] or "-"

    def no(status: int, code: str, message: str) -> FleetError:
        return FleetError(status, code, message, action=f"agent {method} {path.split('?')[0]}"[:64], target=target)

    if not (kiosk_id and ts and nonce and sig):
        raise no(401, "auth.unsigned", "the request carries no fleet signature")
    if not ts.isdigit() or abs(int(ts) - now) > max_skew_s:
        raise no(401, "auth.skew", f"the request's timestamp is more than {max_skew_s} s from the server's clock")
    if not NONCE_PATTERN.fullmatch(nonce):
        raise no(401, "auth.bad_nonce", "the nonce must be 16-64 characters of base64url")
    return kiosk_id, ts, nonce, sig, no


def check_signed_request(session: Session, *, method: str, path: str, headers: Mapping[str, str], body: bytes,
                         now: float, max_skew_s: int = signing.MAX_SKEW_S,
                         allow: tuple[str, ...] = (KioskStatus.ACCEPTED,)) -> Caller:
    """The kiosk that signed this request, once its signature, timestamp and nonce pass and
    its status is in `allow`; FleetError (401 auth.*, 403 kiosk.*) otherwise."""
    kiosk_id, ts, nonce, sig, no = _signature_headers(method, path, headers, now, max_skew_s)
    row = session.connection().execute(_SELECT_CALLER, {"kid": kiosk_id}).first()
    if row is None:
        raise no(401, "auth.unknown_kiosk", "no such kiosk is enrolled")
    try:
        signing.verify(public_key(row.public_key), sig, signing.string_to_sign(method, path, body, ts, nonce, kiosk_id))
    except signing.SignatureError:
        raise no(401, "auth.bad_signature", "the request's signature does not verify with the kiosk's key") from None
    if row.status not in allow:
        raise no(403, f"kiosk.{row.status}", f"kiosk {kiosk_id!r} is {row.status}")
    remember_nonce(session, kiosk_id, nonce, now, max_skew_s, no)
    return Caller(kiosk_id, row.status, row.site, int(row.desired_version), row.desired_hash, row.config_state)


def remember_nonce(session: Session, owner: str, nonce: str, now: float, max_skew_s: int, no: Any) -> None:
    seen = dt.datetime.fromtimestamp(now, dt.timezone.utc)
    # one statement, no savepoint: a nonce already stored (by this or another process) inserts
    # nothing, and a concurrent duplicate waits for the first and then inserts nothing
    conn = session.connection()
    stmt = _nonce_insert(conn.dialect.name)
    if conn.execute(stmt, {"owner": owner, "nonce": nonce, "seen": seen}).first() is None:
        raise no(401, "auth.replay", "this request was already received (nonce seen before)")
    if random.random() < 0.01:
        _prune_nonces(session, seen, max_skew_s)


def _prune_nonces(session: Session | Connection, now: dt.datetime, max_skew_s: int) -> None:
    """A nonce older than twice the skew can no longer pass the clock check: forget it."""
    session.execute(delete(Nonce).where(Nonce.seen_at < now - dt.timedelta(seconds=2 * max_skew_s)))


@functools.lru_cache(maxsize=65536)
def public_key(text: str) -> signing.Ed25519PublicKey:
    """A kiosk's parsed public key, by its text. Only the parsing is cached (a key is immutable):
    the kiosk's row — which key, which status — is read again on every request."""
    return signing.public_from_b64(text)


def check_enroll_signature(session: Session, *, method: str, path: str, headers: Mapping[str, str], body: bytes,
                           public_key: str, now: float, max_skew_s: int = signing.MAX_SKEW_S) -> None:
    """An enrollment request is signed with the key it enrolls: proof the kiosk holds it."""
    def no(status: int, code: str, message: str) -> FleetError:
        return FleetError(status, code, message, action="enroll", target="-")

    ts, nonce, sig = (headers.get(h, "") for h in (signing.H_TIMESTAMP, signing.H_NONCE, signing.H_SIGNATURE))
    if headers.get(signing.H_KIOSK) != signing.ENROLL_ID or not (ts and nonce and sig):
        raise no(401, "auth.unsigned", "an enrollment request must be signed with the key it enrolls")
    if not ts.isdigit() or abs(int(ts) - now) > max_skew_s:
        raise no(401, "auth.skew", f"the request's timestamp is more than {max_skew_s} s from the server's clock")
    if not NONCE_PATTERN.fullmatch(nonce):
        raise no(401, "auth.bad_nonce", "the nonce must be 16-64 characters of base64url")
    try:
        signing.verify(public_key, sig, signing.string_to_sign(method, path, body, ts, nonce, signing.ENROLL_ID))
    except signing.SignatureError:
        raise no(401, "auth.bad_signature", "the enrollment is not signed by the key it carries") from None
    remember_nonce(session, "enroll:" + signing.key_id(public_key), nonce, now, max_skew_s, no)


# --- configuration ------------------------------------------------------------------------------
def _bump(session: Session, name: str = "config") -> int:
    session.execute(update(Counter).where(Counter.name == name).values(value=Counter.value + 1))
    return int(session.scalars(select(Counter.value).where(Counter.name == name)).one())


def push_layer(session: Session, by: Manager, scope: str, target: str, settings: Any) -> int:
    """Store a new revision of the layer (scope, target); returns its revision number."""
    action = "config.push"
    where = f"{scope}:{target}" if target else scope
    require(by, Role.ADMIN, action, where)
    if scope not in SCOPES:
        raise FleetError(422, "config.bad_target", "a target is fleet, site:NAME or kiosk:ID",
                         action=action, target=where)
    if scope == "fleet":
        target = ""
    else:
        _check_name(target, f"a {scope} name", action)
    if scope == "kiosk":
        _kiosk(session, target, action)
    problem = layer_problem(settings)
    if problem:
        raise FleetError(422, "config.invalid", f"configuration refused: {problem}", action=action, target=where)
    revision = _bump(session)
    session.add(ConfigLayer(scope=scope, target=target, revision=revision, settings=settings,
                            created_at=utcnow(), created_by=by.name))
    audit(session, by.actor, action, where, revision=revision, keys=sorted(settings))
    return revision


def effective_settings(session: Session, kiosk: Kiosk) -> tuple[dict[str, Any], dict[str, int]]:
    """The merged fleet → site → kiosk settings of `kiosk`, and the revision of each layer."""
    from provisioning.server import rollout

    return _merged(session, kiosk.kiosk_id, kiosk.site, rollout.layers_for(session, kiosk.kiosk_id))


_LT = ConfigLayer.__table__
_SELECT_LAYERS = select(_LT.c.scope, _LT.c.revision, _LT.c.settings).where(or_(
    and_(_LT.c.scope == "fleet", _LT.c.target == ""),
    and_(_LT.c.scope == "site", _LT.c.target == bindparam("site"), bindparam("site") != ""),
    and_(_LT.c.scope == "kiosk", _LT.c.target == bindparam("kid"))))


def _merged(session: Session, kiosk_id: str, site: str | None,
            rolled: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, int]]:
    # one query for the three layers (every revision of them; pushes are rare, so few rows)
    return _merge_rows(session.connection().execute(_SELECT_LAYERS, {"kid": kiosk_id, "site": site or ""}), rolled)


def _merge_rows(layers: Any, rolled: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, int]]:
    """The merged settings from the rows (scope, revision, settings) of a kiosk's fleet, site
    and kiosk layers (every revision: the newest of each counts) and its rollout layers."""
    newest: dict[str, tuple[int, Any]] = {}
    for scope, revision, settings in layers:
        if scope not in newest or revision > newest[scope][0]:
            newest[scope] = (revision, settings)
    # fleet, site, the rollouts this kiosk has been given, then its own layer
    before = [newest[s][1] for s in ("fleet", "site") if s in newest]
    after = [newest["kiosk"][1]] if "kiosk" in newest else []
    revisions = {s: newest[s][0] for s in SCOPES if s in newest}
    if rolled:
        revisions["rollouts"] = len(rolled)
    return merge(before + rolled + after), revisions


def desired(session: Session, kiosk: Kiosk) -> tuple[int, dict[str, Any]]:
    """(version, settings) the kiosk should run. The version is the kiosk's own counter, one
    up whenever its merged settings change (under its row lock), so it only ever grows. It is
    per kiosk, not fleet-wide: a heartbeat locks only its own row, never a shared one."""
    settings, _ = effective_settings(session, kiosk)
    if not settings and kiosk.desired_hash is None:
        return 0, {}  # never configured by the fleet
    # once configured, no settings is a configuration too: the kiosk must hand its keys back
    digest = settings_hash(settings)
    if digest != kiosk.desired_hash:
        # lock the row and look again: two server processes must not both bump it, nor write
        # their numbers back in the wrong order (a version going down reads as a rollback)
        session.flush()
        session.refresh(kiosk, with_for_update=True)
        if digest != kiosk.desired_hash:
            kiosk.desired_version, kiosk.desired_hash = kiosk.desired_version + 1, digest
    return kiosk.desired_version, settings


def signing_key(session: Session) -> signing.Ed25519PrivateKey:
    """The fleet's document key, created once (under a lock) and shared by every process."""
    row = session.get(SigningKey, "fleet")
    if row is None:
        lock_signing_key(session)
        row = session.get(SigningKey, "fleet")
        if row is None:
            key = signing.new_private_key()
            row = SigningKey(name="fleet", private_b64=signing.b64e(signing.private_raw(key)),
                             public_b64=signing.public_b64(key), created_at=utcnow())
            session.add(row)
            session.flush()
    return signing.private_from_raw(signing.b64d(row.private_b64))


def config_document(session: Session, kiosk: Kiosk, key: signing.Ed25519PrivateKey,
                    ttl: dt.timedelta = DEFAULT_CONFIG_TTL) -> dict[str, Any] | None:
    version, settings = desired(session, kiosk)
    if version == 0:
        return None
    now = utcnow()
    _, revisions = effective_settings(session, kiosk)
    return signing.sign_document(key, {
        "_type": DOC_TYPE, "spec": 1, "kiosk_id": kiosk.kiosk_id, "version": version,
        "issued_at": signing.iso(now), "expires": signing.iso(now + ttl), "layers": revisions,
        "settings": settings})


def delta(desired_settings: Mapping[str, Any], reported: Mapping[str, Any] | None) -> dict[str, Any]:
    """The desired keys whose reported value differs (AWS IoT's shadow delta)."""
    reported = reported or {}
    return {k: v for k, v in desired_settings.items() if k not in reported or not covers(reported[k], v)}


# --- heartbeats ---------------------------------------------------------------------------------
HEARTBEAT_FIELDS = ("app_version", "config_version", "config_state", "devices", "services", "open_transactions",
                    "refunds_pending", "last_tx_at", "data_lock", "journal_head")


_CT = Command.__table__
_SELECT_PENDING = select(_CT).where(_CT.c.kiosk_id == bindparam("kid"), _CT.c.status.in_(
    (CommandStatus.QUEUED.value, CommandStatus.RECEIVED.value))).order_by(_CT.c.id)

# What a heartbeat reads, in ONE statement (it is the request a fleet sends most, and on
# PostgreSQL each statement is a round trip): the kiosk's row, the rollout actions it has been
# given with their layers, every revision of its fleet, site and kiosk layers (pushes are rare,
# so few rows), its journal head, and how many commands wait for it (usually none: they are
# read only then). The lists come back as JSON arrays.
_HB_READS = """
    (SELECT {agg} FROM (SELECT {arr}(a.id, a.status, {js}(r.settings)) AS x
        FROM fleet_rollout_actions a JOIN fleet_rollouts r ON r.id = a.rollout_id
        WHERE a.kiosk_id = :kid AND a.status IN ({started}) AND r.status IN ({layer_states})
        ORDER BY r.id) AS given_rows) AS given,
    (SELECT {agg} FROM (SELECT {arr}(l.scope, l.revision, {js}(l.settings)) AS x FROM fleet_config_layers l
        WHERE (l.scope = 'fleet' AND l.target = '') OR (l.scope = 'site' AND l.target = k.site)
           OR (l.scope = 'kiosk' AND l.target = :kid)) AS layer_rows) AS layers,
    (SELECT {arr}(j.seq, j.hash) FROM fleet_journal j WHERE j.kiosk_id = :kid ORDER BY j.seq DESC LIMIT 1) AS head,
    (SELECT count(*) FROM fleet_commands c WHERE c.kiosk_id = :kid AND c.status IN ('queued', 'received'))
        AS pending"""
_HB_KIOSK = "k.public_key, k.status, k.site, k.desired_version, k.desired_hash, k.config_state"
_HB_SET = ("last_seen_at = :seen, heartbeat = {hb}, reported_version = :rv, reported_values = {rvals}, "
           "config_state = :state, app_version = COALESCE(:app, app_version)")
_HB_PARAMS = (bindparam("seen", type_=Kiosk.__table__.c.last_seen_at.type),)
_HB_STATEMENTS: dict[str, Any] = {}


def _hb_statements(dialect: str) -> Any:
    """(read, write) for SQLite; (everything, None) for PostgreSQL, where the nonce insert and
    the kiosk's update ride in the read as data-modifying CTEs (one round trip). They are
    rolled back with the transaction when the request is refused afterwards (signature,
    status, replay), so a refused request stores nothing."""
    from sqlalchemy import text

    from provisioning.server.rollout import LAYER_STATES, STARTED

    if dialect in _HB_STATEMENTS:
        return _HB_STATEMENTS[dialect]
    words = {"started": ", ".join(f"'{w}'" for w in STARTED), "layer_states": ", ".join(f"'{w}'" for w in LAYER_STATES)}
    if dialect == "postgresql":
        reads = _HB_READS.format(agg="json_agg(x)", arr="json_build_array", js="", **words)
        both = text(f"""
            WITH n AS (INSERT INTO fleet_nonces (kiosk_id, nonce, seen_at) VALUES (:kid, :nonce, :seen)
                       ON CONFLICT DO NOTHING RETURNING 1),
                 u AS (UPDATE fleet_kiosks SET {_HB_SET.format(hb="CAST(:hb AS json)",
                                                                 rvals="CAST(:rvals AS json)")}
                       WHERE kiosk_id = :kid AND status = 'accepted' AND EXISTS (SELECT 1 FROM n) RETURNING 1)
            SELECT {_HB_KIOSK}, EXISTS (SELECT 1 FROM n) AS fresh, {reads}
            FROM fleet_kiosks k WHERE k.kiosk_id = :kid""").bindparams(*_HB_PARAMS)
        # run as the driver's own SQL (exec_driver_sql): SQLAlchemy's compiled-statement layer
        # cost more CPU than the rest of the statement's client side (measured 256 → 190 µs);
        # its error handling (a dropped connection invalidates the pool) stays
        pair = (re.sub(r"(?<!:):(\w+)", r"%(\1)s", str(both.text)), None)
    else:
        reads = _HB_READS.format(agg="json_group_array(json(x))", arr="json_array", js="json", **words)
        read = text(f"SELECT {_HB_KIOSK}, 1 AS fresh, {reads} FROM fleet_kiosks k WHERE k.kiosk_id = :kid")
        write = text(f"UPDATE fleet_kiosks SET {_HB_SET.format(hb=':hb', rvals=':rvals')} "
                     "WHERE kiosk_id = :kid").bindparams(*_HB_PARAMS)
        pair = (read, write)
    _HB_STATEMENTS[dialect] = pair
    return pair


def _json_cell(value: Any) -> Any:
    """A JSON aggregate as the driver gives it: parsed (psycopg) or text (SQLite)."""
    if value is None or isinstance(value, (list, dict)):
        return value
    return json_loads(value)


try:  # orjson parses and writes JSON several times faster; the standard library otherwise
    import orjson as _orjson

    def json_loads(data: str | bytes) -> Any:
        return _orjson.loads(data)

    def json_dumps(value: Any) -> str:
        return _orjson.dumps(value).decode()
except ImportError:  # pragma: no cover - depends on the installation
    import json as _json

    def json_loads(data: str | bytes) -> Any:
        return _json.loads(data)

    def json_dumps(value: Any) -> str:
        return _json.dumps(value, separators=(",", ":"))


def signed_heartbeat(conn: Connection, *, method: str, path: str, headers: Mapping[str, str], body: bytes,
                     report: Mapping[str, Any], now: float, interval_s: int,
                     max_skew_s: int = signing.MAX_SKEW_S) -> tuple[str, dict[str, Any]]:
    """A signed heartbeat, checked exactly as check_signed_request checks any agent request
    (clock, nonce shape, kiosk, signature, status, nonce not seen before) and then stored,
    in `conn`'s transaction, in few statements: (kiosk id, the answer). Core on a bare
    connection: an ORM session (joined to the same transaction) is only written through in
    the rare cases that add a row (an audit entry, a journal problem).

    The kiosk's report is stored (last seen, heartbeat, reported configuration), its rollout
    actions are settled, and the answer gives the interval, its desired configuration version,
    the journal head held and its commands."""
    kiosk_id, ts, nonce, sig, no = _signature_headers(method, path, headers, now, max_skew_s)

    moment = dt.datetime.fromtimestamp(now, dt.timezone.utc)
    version = report.get("config_version")
    values = report.get("config_values")
    state = report.get("config_state")
    state = state[:200] if isinstance(state, str) else None
    reported = values if isinstance(values, dict) else None
    app_version = report.get("app_version")
    change = {"kid": kiosk_id, "nonce": nonce, "seen": moment,
              "hb": json_dumps({k: report.get(k) for k in HEARTBEAT_FIELDS}),
              "rv": version if isinstance(version, int) and not isinstance(version, bool) else None,
              "rvals": None if reported is None else json_dumps(reported), "state": state,
              "app": app_version[:32] if isinstance(app_version, str) else None}

    session = Session(bind=conn)  # joins conn's transaction; never commits or ends it
    read, write = _hb_statements(conn.dialect.name)
    if write is None:  # PostgreSQL: the whole heartbeat in one statement; the column is naive UTC
        row = conn.exec_driver_sql(read, {**change, "seen": moment.replace(tzinfo=None)}).first()
    else:
        row = conn.execute(read, {"kid": kiosk_id}).first()
    if row is None:
        raise no(401, "auth.unknown_kiosk", "no such kiosk is enrolled")
    try:
        signing.verify(public_key(row.public_key), sig,
                       signing.string_to_sign(method, path, body, ts, nonce, kiosk_id))
    except signing.SignatureError:
        raise no(401, "auth.bad_signature", "the request's signature does not verify with the kiosk's key") from None
    if row.status != KioskStatus.ACCEPTED:
        raise no(403, f"kiosk.{row.status}", f"kiosk {kiosk_id!r} is {row.status}")
    if write is None:
        if not row.fresh:  # the nonce was there already: nothing was inserted nor updated
            raise no(401, "auth.replay", "this request was already received (nonce seen before)")
    else:  # SQLite: the nonce, then the update (the session is left alone: it costs a transaction's bookkeeping)
        if conn.execute(_nonce_insert(conn.dialect.name), {"owner": kiosk_id, "nonce": nonce, "seen": moment}
                        ).first() is None:
            raise no(401, "auth.replay", "this request was already received (nonce seen before)")
        conn.execute(write, change)
    if random.random() < 0.01:
        _prune_nonces(conn, moment, max_skew_s)

    if state and state.startswith("refused") and state != row.config_state:
        # the agent refused a configuration document: a security event the managers must see
        audit(session, f"kiosk:{kiosk_id}", "config.refused_by_kiosk", kiosk_id,
              state.split(":")[1].strip() if ":" in state else "config.refused", state=state)
    given = _json_cell(row.given) or []
    _settle_actions(conn, given, state, reported, moment)
    layers = [(scope, int(revision), settings) for scope, revision, settings in _json_cell(row.layers) or []]
    settings, _ = _merge_rows(layers, [g[2] for g in given])
    want = int(row.desired_version)
    if settings or row.desired_hash is not None:
        digest = settings_hash(settings)
        if digest != row.desired_hash:
            want = _bump_desired(conn, kiosk_id, digest)

    from provisioning.server import journal

    head = _json_cell(row.head)
    held = (int(head[0]), str(head[1])) if head else (0, journal.GENESIS_HASH)
    journal.check_reported_head(session, kiosk_id, report.get("journal_head"), held)
    pending = _pending_commands(conn, kiosk_id, moment) if row.pending else []
    if session.new:  # an audit entry or a journal problem
        session.flush()
    return kiosk_id, {"interval_s": interval_s, "desired_config_version": want, "journal_head_seq": held[0],
                      "commands": pending}


def _settle_actions(conn: Any, given: list[list[Any]], state: str | None, reported: dict[str, Any] | None,
                    now: dt.datetime) -> None:
    """Settle the kiosk's active rollout actions from what it reported (rollout.observe's rule):
    refused → failed, applied with the layer's values → done."""
    from provisioning.server.models import RolloutAction

    at = RolloutAction.__table__
    state = state or ""
    for action_id, status, layer in given:
        if status != "active":
            continue
        if state.startswith("refused"):
            conn.execute(update(at).where(at.c.id == action_id).values(status="failed", finished_at=now,
                                                                       detail=state[:500]))
        elif state == "applied" and covers(reported or {}, layer):
            conn.execute(update(at).where(at.c.id == action_id).values(status="done", finished_at=now))


_BUMP_DESIRED = update(_KT).where(_KT.c.kiosk_id == bindparam("kid"), or_(
    _KT.c.desired_hash.is_(None), _KT.c.desired_hash != bindparam("digest"))).values(
    desired_version=_KT.c.desired_version + 1, desired_hash=bindparam("digest")).returning(_KT.c.desired_version)
_SELECT_DESIRED = select(_KT.c.desired_version).where(_KT.c.kiosk_id == bindparam("kid"))


def _bump_desired(conn: Any, kiosk_id: str, digest: str) -> int:
    """The kiosk's merged settings changed: its version goes one up, once. The UPDATE takes the
    row lock and looks again (two server processes must not both bump it, nor write their
    numbers back in the wrong order: a version going down reads as a rollback)."""
    bumped = conn.execute(_BUMP_DESIRED, {"kid": kiosk_id, "digest": digest}).first()
    if bumped is not None:
        return int(bumped[0])
    return int(conn.execute(_SELECT_DESIRED, {"kid": kiosk_id}).scalar_one())


def _pending_commands(conn: Any, kiosk_id: str, now: dt.datetime) -> list[dict[str, Any]]:
    """Queued or received commands (those found expired are marked so on the way)."""
    pending, expired = [], []
    for c in conn.execute(_SELECT_PENDING, {"kid": kiosk_id}):
        (expired if c.expires_at <= now else pending).append(c)
    if expired:
        conn.execute(update(_CT).where(_CT.c.id.in_([c.id for c in expired]))
                     .values(status=CommandStatus.EXPIRED.value, updated_at=now))
    return [command_view(c) for c in pending]


def presence(kiosk: Kiosk, interval_s: int, now: dt.datetime | None = None) -> str:
    """online, offline (two intervals without a heartbeat) or never (seen)."""
    if kiosk.last_seen_at is None:
        return "never"
    now = now or utcnow()
    return "offline" if (now - kiosk.last_seen_at).total_seconds() > 2 * interval_s else "online"


def alerts(kiosk: Kiosk, interval_s: int, now: dt.datetime | None = None) -> list[str]:
    out = []
    if kiosk.status == KioskStatus.PENDING:
        out.append("enrollment pending approval")
    if kiosk.status != KioskStatus.ACCEPTED:
        return out
    if presence(kiosk, interval_s, now) == "offline":
        out.append("offline")
    hb = kiosk.heartbeat or {}
    devices = hb.get("devices") if isinstance(hb.get("devices"), dict) else {}
    for name, status in sorted(devices.items()):
        if str(status) not in DEVICE_OK and str(status) != "unknown":
            out.append(f"device {name}: {status}")
    if isinstance(hb.get("refunds_pending"), int) and hb["refunds_pending"] > 0:
        out.append(f"{hb['refunds_pending']} refund(s) pending for an operator")
    if kiosk.config_state and kiosk.config_state.startswith("refused"):
        out.append(f"configuration {kiosk.config_state}")
    return out


_SECRET_WORDS = {"hash", "pin", "token", "secret", "password"}


def hide_secrets(value: Any) -> Any:
    """Settings as shown to managers: a value under a key naming a hash, PIN, token or key (the
    maintenance PIN's scrypt hash) is shown as hidden; comparing and signing use the real one."""
    if isinstance(value, dict):
        return {k: ("(hidden)" if isinstance(k, str) and _SECRET_WORDS & set(k.lower().split("_"))
                    else hide_secrets(v)) for k, v in value.items()}
    return value


def kiosk_view(session: Session, kiosk: Kiosk, interval_s: int, *, detail: bool = False) -> dict[str, Any]:
    from provisioning.server import journal

    version, settings = desired(session, kiosk) if kiosk.status == KioskStatus.ACCEPTED else (0, {})
    troubles = journal.problem_count(session, kiosk.kiosk_id)
    out: dict[str, Any] = {
        "kiosk_id": kiosk.kiosk_id, "serial": kiosk.serial, "model": kiosk.model, "app_version": kiosk.app_version,
        "status": kiosk.status, "site": kiosk.site, "presence": presence(kiosk, interval_s),
        "last_seen_at": signing.iso(kiosk.last_seen_at) if kiosk.last_seen_at else None,
        "config": {"desired_version": version, "reported_version": kiosk.reported_version,
                   "state": kiosk.config_state, "in_sync": version == (kiosk.reported_version or 0)
                   and not delta(settings, kiosk.reported_values)},
        "alerts": alerts(kiosk, interval_s) + ([f"journal: {troubles} problem(s) found in uploads"]
                                               if troubles else []),
    }
    if detail:
        out["config"].update(desired=hide_secrets(settings), reported=hide_secrets(kiosk.reported_values),
                             delta=hide_secrets(delta(settings, kiosk.reported_values)))
        out["heartbeat"] = kiosk.heartbeat
        out["key_id"] = signing.key_id(kiosk.public_key)
        head_seq, head_hash = journal.head(session, kiosk.kiosk_id)
        out["journal"] = {"head_seq": head_seq, "head_hash": head_hash,
                          "problems": journal.problems(session, kiosk.kiosk_id)}
    return out


def list_kiosks(session: Session, interval_s: int) -> list[dict[str, Any]]:
    return [kiosk_view(session, k, interval_s) for k in session.scalars(select(Kiosk).order_by(Kiosk.kiosk_id))]


def get_kiosk(session: Session, kiosk_id: str, interval_s: int) -> dict[str, Any]:
    return kiosk_view(session, _kiosk(session, kiosk_id, "kiosk.show"), interval_s, detail=True)


# --- commands -----------------------------------------------------------------------------------
def command_view(c: Command) -> dict[str, Any]:
    return {"id": c.id, "kiosk_id": c.kiosk_id, "kind": c.kind, "args": c.args, "status": c.status,
            "created_at": signing.iso(c.created_at), "expires_at": signing.iso(c.expires_at),
            "updated_at": signing.iso(c.updated_at), "result": c.result}


def queue_command(session: Session, by: Manager, kiosk_id: str, kind: str, args: Mapping[str, Any] | None = None,
                  ttl: dt.timedelta = DEFAULT_COMMAND_TTL) -> Command:
    action = f"command.{kind}"[:64]
    require(by, Role.OPERATOR, action, kiosk_id)
    kiosk = _kiosk(session, kiosk_id, action)
    if kind not in COMMAND_KINDS:
        raise FleetError(422, "command.unknown", f"unknown command {kind!r}; known: {', '.join(COMMAND_KINDS)}",
                         action="command", target=kiosk_id)
    args = dict(args or {})
    wanted = COMMAND_KINDS[kind]
    if sorted(args) != sorted(wanted) or not all(isinstance(v, str) and NAME_PATTERN.fullmatch(v)
                                                 for v in args.values()):
        raise FleetError(422, "command.bad_args", f"{kind} takes {', '.join(wanted) or 'no arguments'}",
                         action=action, target=kiosk_id)
    if kiosk.status != KioskStatus.ACCEPTED:
        raise FleetError(409, "kiosk.not_accepted", f"kiosk {kiosk_id!r} is {kiosk.status}",
                         action=action, target=kiosk_id)
    if not dt.timedelta(seconds=10) <= ttl <= dt.timedelta(days=30):
        raise FleetError(422, "request.invalid", "a command expires 10 s to 30 days after it is queued",
                         action=action, target=kiosk_id)
    now = utcnow()
    cmd = Command(kiosk_id=kiosk_id, kind=kind, args=args, status=CommandStatus.QUEUED.value, created_at=now,
                  expires_at=now + ttl, updated_at=now, created_by=by.name, result=None)
    session.add(cmd)
    session.flush()
    audit(session, by.actor, action, kiosk_id, command=cmd.id, args=args)
    return cmd


def _expire(session: Session, kiosk_id: str, now: dt.datetime) -> None:
    session.execute(update(Command).where(
        Command.kiosk_id == kiosk_id,
        Command.status.in_((CommandStatus.QUEUED.value, CommandStatus.RECEIVED.value)),
        Command.expires_at <= now).values(status=CommandStatus.EXPIRED.value, updated_at=now))


def pending_commands(session: Session, kiosk_id: str, now: dt.datetime) -> list[Command]:
    """Queued or received, not expired (those found expired are marked so on the way)."""
    out = []
    for cmd in session.scalars(select(Command).where(
            Command.kiosk_id == kiosk_id,
            Command.status.in_((CommandStatus.QUEUED.value, CommandStatus.RECEIVED.value))).order_by(Command.id)):
        if cmd.expires_at <= now:
            cmd.status, cmd.updated_at = CommandStatus.EXPIRED.value, now
        else:
            out.append(cmd)
    return out


def list_commands(session: Session, kiosk_id: str) -> list[dict[str, Any]]:
    _expire(session, kiosk_id, utcnow())
    return [command_view(c) for c in session.scalars(select(Command).where(Command.kiosk_id == kiosk_id)
                                                     .order_by(Command.id))]


_NEXT = {CommandStatus.QUEUED: (CommandStatus.RECEIVED, CommandStatus.DONE, CommandStatus.FAILED),
         CommandStatus.RECEIVED: (CommandStatus.DONE, CommandStatus.FAILED)}


def command_feedback(session: Session, kiosk: Kiosk | Caller, command_id: int, status: str,
                     result: str | None) -> Command:
    """The agent's word on its command: received, then done or failed (hawkBit's feedback)."""
    action = "command.feedback"
    now = utcnow()
    _expire(session, kiosk.kiosk_id, now)
    cmd = session.get(Command, command_id)
    if cmd is None or cmd.kiosk_id != kiosk.kiosk_id:
        # another kiosk's command is answered as if it did not exist
        raise FleetError(404, "command.unknown", f"kiosk {kiosk.kiosk_id!r} has no command {command_id}",
                         action=action, target=kiosk.kiosk_id)
    try:
        new = CommandStatus(status)
    except ValueError:
        raise FleetError(422, "request.invalid", "feedback is received, done or failed",
                         action=action, target=kiosk.kiosk_id) from None
    current = CommandStatus(cmd.status)
    if current == CommandStatus.EXPIRED:
        raise FleetError(409, "command.expired", f"command {command_id} expired before it was done",
                         action=action, target=kiosk.kiosk_id)
    if current == new:
        return cmd  # a repeated report (the answer to the first was lost)
    if new not in _NEXT.get(current, ()):
        raise FleetError(409, "command.bad_transition", f"command {command_id} is {current.value}, "
                         f"it cannot become {new.value}", action=action, target=kiosk.kiosk_id)
    cmd.status, cmd.updated_at = new.value, now
    if result is not None:
        cmd.result = str(result)[:MAX_RESULT_CHARS]
    audit(session, f"kiosk:{kiosk.kiosk_id}", action, kiosk.kiosk_id, command=command_id, status=new.value)
    return cmd


def count(session: Session, model: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)
