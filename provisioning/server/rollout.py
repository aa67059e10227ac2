"""Staged rollouts of a configuration layer (issue 11, item 4).

A rollout carries a layer (fleet, site:NAME or kiosk:ID, checked like any push) and stages as
cumulative percentages of the target's accepted kiosks (e.g. 5,25,100). The kiosks are put in
a fixed pseudo-random order at creation and cut into stages. A stage's kiosks get the layer
(between their site's layer and their own); each kiosk's action is then

  done       it reports the configuration applied with the layer's values,
  failed     it reports the configuration refused,
  timed_out  it said neither within the action timeout — a silent kiosk never stalls a
             rollout, it counts as a failure.

When every action of a stage has ended, the next stage starts — only inside the maintenance
window when one is set (Tehran time, may cross midnight) and only while the rollout runs. If
more than max_failure_pct of the started kiosks failed or timed out, the rollout halts by
itself; resuming it accepts the failures so far. The last stage done, the layer becomes an ordinary layer of its target (nothing
changes on the kiosks) and the rollout completes. Pause stops new stages (the started ones
finish); resume continues (also after a halt, a manager's decision); abort takes the layer
back from the kiosks that got it, as a newer configuration version.

Stateless: every server process ticks (timeouts, stage moves) in the background, one at a
time (a PostgreSQL advisory lock), and a kiosk's heartbeat settles its own action at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.orm import Session

from provisioning.common.config import SCOPES, covers, layer_problem
from provisioning.server.models import Kiosk, KioskStatus, Role, Rollout, RolloutAction, utcnow
from provisioning.server.service import CLI, FleetError, Manager, audit, hide_secrets, push_layer, require

TEHRAN = ZoneInfo("Asia/Tehran")
LAYER_STATES = ("running", "paused", "halted")  # the layer stays on the kiosks that started
STARTED = ("active", "done", "failed", "timed_out")
_TICK_LOCK = 0x666C65657403
_WINDOW = re.compile(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)")


def parse_stages(text_or_list: Any) -> list[int]:
    values = [int(x) for x in (text_or_list.split(",") if isinstance(text_or_list, str) else text_or_list)]
    if not values or values[-1] != 100 or any(not 0 < v <= 100 for v in values) \
            or any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError("stages are growing percentages ending at 100, e.g. 5,25,100")
    return values


def in_window(window: str | None, now: dt.datetime) -> bool:
    if not window:
        return True
    m = _WINDOW.fullmatch(window)
    if not m:
        return False
    start, end = int(m[1]) * 60 + int(m[2]), int(m[3]) * 60 + int(m[4])
    local = now.astimezone(TEHRAN)
    minute = local.hour * 60 + local.minute
    return start <= minute < end if start < end else (minute >= start or minute < end)


def _no(status: int, code: str, message: str, target: str = "-", action: str = "rollout") -> FleetError:
    return FleetError(status, code, message, action=action, target=target)


def create(session: Session, by: Manager, *, scope: str, target: str, settings: Any, stages: Any,
           action_timeout_s: int = 1800, max_failure_pct: int = 10, window: str | None = None,
           now: dt.datetime | None = None) -> Rollout:
    now = now or utcnow()
    where = f"{scope}:{target}" if target else scope
    require(by, Role.ADMIN, "rollout.create", where)
    if scope not in SCOPES:
        raise _no(422, "config.bad_target", "a target is fleet, site:NAME or kiosk:ID", where, "rollout.create")
    target = "" if scope == "fleet" else target
    problem = layer_problem(settings)
    if problem:
        raise _no(422, "config.invalid", f"configuration refused: {problem}", where, "rollout.create")
    try:
        stage_list = parse_stages(stages)
    except (ValueError, TypeError) as exc:
        raise _no(422, "rollout.bad_stages", str(exc), where, "rollout.create") from None
    if window is not None and not _WINDOW.fullmatch(window):
        raise _no(422, "rollout.bad_window", "a maintenance window is HH:MM-HH:MM (Tehran time)", where,
                  "rollout.create")
    if not 10 <= action_timeout_s <= 7 * 86400 or not 0 <= max_failure_pct <= 100:
        raise _no(422, "request.invalid", "the action timeout is 10 s to 7 days, the failure threshold 0-100 %",
                  where, "rollout.create")
    q = select(Kiosk.kiosk_id).where(Kiosk.status == KioskStatus.ACCEPTED.value)
    if scope == "site":
        q = q.where(Kiosk.site == target)
    elif scope == "kiosk":
        q = q.where(Kiosk.kiosk_id == target)
    kiosks = list(session.scalars(q))
    if not kiosks:
        raise _no(409, "rollout.no_kiosks", f"no accepted kiosk in {where}", where, "rollout.create")
    r = Rollout(scope=scope, target=target, settings=settings, stages=stage_list, action_timeout_s=action_timeout_s,
                max_failure_pct=max_failure_pct, window=window, status="running", stage=-1, reason=None,
                failures_accepted=0,
                created_at=now, created_by=by.name, updated_at=now)
    session.add(r)
    session.flush()
    order = sorted(kiosks, key=lambda k: hashlib.sha256(f"{r.id}:{k}".encode()).hexdigest())
    cuts = [math.ceil(len(order) * pct / 100) for pct in stage_list]
    stage = 0
    for i, kiosk_id in enumerate(order):
        while i >= cuts[stage]:
            stage += 1
        session.add(RolloutAction(rollout_id=r.id, kiosk_id=kiosk_id, stage=stage, status="waiting"))
    session.flush()
    audit(session, by.actor, "rollout.create", where, rollout=r.id, stages=stage_list, kiosks=len(order),
          timeout_s=action_timeout_s, max_failure_pct=max_failure_pct, window=window)
    tick_one(session, r, now)
    return r


def layers_for(session: Session, kiosk_id: str) -> list[dict[str, Any]]:
    """The rollout layers this kiosk has been given (stage started, rollout not ended)."""
    return [s for s in session.scalars(
        select(Rollout.settings).join(RolloutAction, RolloutAction.rollout_id == Rollout.id).where(
            RolloutAction.kiosk_id == kiosk_id, RolloutAction.status.in_(STARTED),
            Rollout.status.in_(LAYER_STATES)).order_by(Rollout.id))]


_AT, _RT = RolloutAction.__table__, Rollout.__table__
_SELECT_GIVEN = select(_AT.c.id, _AT.c.status, _RT.c.settings).join(_RT, _AT.c.rollout_id == _RT.c.id).where(
    _AT.c.kiosk_id == bindparam("kid"), _AT.c.status.in_(STARTED), _RT.c.status.in_(LAYER_STATES)).order_by(_RT.c.id)


def observe_and_layers(session: Session, kiosk_id: str, config_state: str | None,
                       reported: dict[str, Any] | None, now: dt.datetime) -> list[dict[str, Any]]:
    """At a heartbeat, in one query: settle this kiosk's active actions from what it reported,
    and return the rollout layers it has been given (as layers_for)."""
    at = RolloutAction.__table__
    conn = session.connection()
    rows = conn.execute(_SELECT_GIVEN, {"kid": kiosk_id}).all()
    state = config_state or ""
    for row in rows:
        if row.status != "active":
            continue
        if state.startswith("refused"):
            conn.execute(update(at).where(at.c.id == row.id).values(status="failed", finished_at=now,
                                                                    detail=state[:500]))
        elif state == "applied" and covers(reported or {}, row.settings):
            conn.execute(update(at).where(at.c.id == row.id).values(status="done", finished_at=now))
    return [row.settings for row in rows]


def observe(session: Session, kiosk: Kiosk, now: dt.datetime) -> None:
    """Settle this kiosk's active actions from what its heartbeat just reported."""
    rows = session.execute(select(RolloutAction, Rollout).join(Rollout, RolloutAction.rollout_id == Rollout.id).where(
        RolloutAction.kiosk_id == kiosk.kiosk_id, RolloutAction.status == "active",
        Rollout.status.in_(LAYER_STATES))).all()
    state = kiosk.config_state or ""
    for action, r in rows:
        if state.startswith("refused"):
            action.status, action.finished_at, action.detail = "failed", now, state[:500]
        elif state == "applied" and covers(kiosk.reported_values or {}, r.settings):
            action.status, action.finished_at = "done", now


def tick(session: Session, now: dt.datetime | None = None) -> None:
    """Time out silent kiosks and move every running rollout on (one process at a time)."""
    now = now or utcnow()
    if session.get_bind().dialect.name == "postgresql":
        if not session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _TICK_LOCK}).scalar():
            return  # another server process is ticking right now
    for r in session.scalars(select(Rollout).where(Rollout.status == "running").order_by(Rollout.id)):
        tick_one(session, r, now)


def tick_one(session: Session, r: Rollout, now: dt.datetime) -> None:
    actor = f"rollout:{r.id}"
    where = f"{r.scope}:{r.target}" if r.target else r.scope
    while r.status == "running":
        actions = list(session.scalars(select(RolloutAction).where(RolloutAction.rollout_id == r.id)))
        deadline = dt.timedelta(seconds=r.action_timeout_s)
        for a in actions:
            if a.status == "active" and a.started_at is not None and a.started_at + deadline <= now:
                a.status, a.finished_at, a.detail = "timed_out", now, f"no answer within {r.action_timeout_s} s"
        if any(a.status == "active" for a in actions):
            return
        started = [a for a in actions if a.status in STARTED]
        failures = sum(a.status in ("failed", "timed_out") for a in started)
        if started and (failures - r.failures_accepted) * 100 > r.max_failure_pct * len(started):
            r.status, r.updated_at = "halted", now
            r.reason = f"{failures} of {len(started)} kiosks failed or timed out (threshold {r.max_failure_pct} %)"
            audit(session, actor, "rollout.halt", where, "rollout.halted", rollout=r.id, reason=r.reason)
            return
        if r.stage >= len(r.stages) - 1:
            push_layer(session, Manager(actor, Role.ADMIN), r.scope, r.target, r.settings)
            r.status, r.updated_at = "completed", now
            audit(session, actor, "rollout.complete", where, rollout=r.id, failures=failures)
            return
        if not in_window(r.window, now):
            return
        r.stage += 1
        r.updated_at = now
        count = 0
        for a in actions:
            if a.stage == r.stage and a.status == "waiting":
                a.status, a.started_at = "active", now
                count += 1
        audit(session, actor, "rollout.stage", where, rollout=r.id, stage=r.stage, kiosks=count)
        session.flush()


def _get(session: Session, rollout_id: int, action: str) -> Rollout:
    r = session.get(Rollout, rollout_id)
    if r is None:
        raise _no(404, "rollout.unknown", f"no rollout {rollout_id}", str(rollout_id), action)
    return r


def control(session: Session, by: Manager, rollout_id: int, verb: str, now: dt.datetime | None = None) -> Rollout:
    """pause / resume (operator), abort (admin)."""
    now = now or utcnow()
    action = f"rollout.{verb}"
    require(by, Role.ADMIN if verb == "abort" else Role.OPERATOR, action, str(rollout_id))
    r = _get(session, rollout_id, action)
    allowed = {"pause": ("running",), "resume": ("paused", "halted"), "abort": LAYER_STATES}[verb]
    if r.status not in allowed:
        raise _no(409, "rollout.bad_state", f"rollout {rollout_id} is {r.status}; it cannot {verb}",
                  str(rollout_id), action)
    if verb == "resume" and r.status == "halted":  # the manager accepts the failures so far
        r.failures_accepted = int(session.scalar(select(func.count()).select_from(RolloutAction).where(
            RolloutAction.rollout_id == r.id, RolloutAction.status.in_(("failed", "timed_out")))) or 0)
        r.reason = None
    r.status = {"pause": "paused", "resume": "running", "abort": "aborted"}[verb]
    r.updated_at = now
    audit(session, by.actor, action, str(rollout_id))
    if r.status == "running":
        tick_one(session, r, now)
    return r


def view(session: Session, r: Rollout) -> dict[str, Any]:
    counts: dict[str, int] = {}
    per_stage: dict[int, dict[str, int]] = {}
    for a in session.scalars(select(RolloutAction).where(RolloutAction.rollout_id == r.id)):
        counts[a.status] = counts.get(a.status, 0) + 1
        per_stage.setdefault(a.stage, {}).setdefault(a.status, 0)
        per_stage[a.stage][a.status] += 1
    return {"id": r.id, "target": f"{r.scope}:{r.target}" if r.target else r.scope, "status": r.status,
            "stage": r.stage, "stages": r.stages, "window": r.window, "action_timeout_s": r.action_timeout_s,
            "max_failure_pct": r.max_failure_pct, "reason": r.reason, "actions": counts,
            "per_stage": [per_stage.get(i, {}) for i in range(len(r.stages))], "settings": hide_secrets(r.settings)}


def list_views(session: Session) -> list[dict[str, Any]]:
    return [view(session, r) for r in session.scalars(select(Rollout).order_by(Rollout.id))]


def show(session: Session, rollout_id: int) -> dict[str, Any]:
    out = view(session, _get(session, rollout_id, "rollout.show"))
    out["kiosks"] = [{"kiosk_id": a.kiosk_id, "stage": a.stage, "status": a.status, "detail": a.detail}
                     for a in session.scalars(select(RolloutAction).where(RolloutAction.rollout_id == rollout_id)
                                              .order_by(RolloutAction.stage, RolloutAction.kiosk_id))]
    return out


__all__ = ["CLI", "create", "control", "tick", "tick_one", "observe", "layers_for", "view", "show", "list_views",
           "parse_stages", "in_window"]
