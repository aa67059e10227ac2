"""Daily reconciliation (issue 11, item 7): for a day D (Tehran), each kiosk's transactions as
the fleet holds them in its journal (fleet_journal, uploaded by the agents and checked against
the chain) against what the back-office recorded for that kiosk — every fee payment, transit
load, QR ticket and traffic-zone permit, one by one, from its `GET /api/v1/reconciliation`
(an integration token). Every difference is listed with its transaction; the result is stored
per (day, kiosk) in fleet_reconciliations, so the dashboard and `fleet reconcile` show it.

Which day a transaction belongs to: on the kiosk, the time of its PAID row (of its CREATED row
for a value-only kind, which takes no money); at the back-office, when it stored the record.
A transaction of day D is matched against the back-office's records of D-1, D and D+1 (a post
that went out after midnight, a clock a little off), and a back-office record of D whose
transaction the fleet holds on another day is that day's business, not a difference of D.

On the kiosk a transaction is
  settled  POSTED or COMPLETED: the back-office answered its post — it must hold it
  void     DECLINED, CANCELLED, REVERSED or REFUND_PENDING (after a reversal): it must not
  open     anything else (PAID, FULFILLING, UNCERTAIN, FULFILLED, REVERSING): the kiosk is
           still settling it
A fee basket (one payment, several bills) is reconciled bill by bill (`<tx>.<i>`): a bill is
settled when its `settled` step is journaled, void when `refused` or refunded.

Differences:
  missing_at_backoffice   settled on the kiosk, no record at the back-office
  missing_on_kiosk        recorded at the back-office, the fleet holds no such transaction of
                          that kiosk (its journal may not be uploaded yet: see the note)
  amount_differs          both, different amounts
  ids_differ              both, another bill/payment id or another kind of record
  reversed_but_recorded   given back (or never charged) on the kiosk, recorded as paid at the
                          back-office
  open_on_kiosk           paid at the kiosk, not settled nor reversed, nothing at the back-office
  recorded_but_open       recorded at the back-office, the kiosk has not journaled the answer
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Text, JSON, delete, select
from sqlalchemy.orm import Session

from backoffice.models import UTCDateTime, utcnow
from provisioning.server.models import JournalRow, Kiosk, KioskStatus, Role
from provisioning.server.service import FleetError, Manager, audit, require

TZ = ZoneInfo("Asia/Tehran")
BACKOFFICE_PATH = "/api/v1/reconciliation"

#: journal kind -> the back-office record kind its post makes
RECORD_KIND = {"fee_payment": "fee_payment", "fee_basket": "fee_payment", "card_topup": "transit_load",
               "card_sale": "transit_load", "pending_load": "transit_load", "qr_ticket": "ticket",
               "traffic_permit": "traffic_permit"}
VALUE_ONLY = frozenset({"pending_load"})
SETTLED = frozenset({"POSTED", "COMPLETED"})
VOID = frozenset({"DECLINED", "CANCELLED", "REVERSED", "REFUND_PENDING"})
BILL_SETTLED = frozenset({"settled"})
BILL_VOID = frozenset({"refused", "refunding", "refunded", "refund_refused"})

_meta = MetaData()
results = Table(
    "fleet_reconciliations", _meta,
    Column("day", String(10), primary_key=True),
    Column("kiosk_id", String(64), primary_key=True),
    Column("run_at", UTCDateTime, nullable=False),
    Column("run_by", String(100), nullable=False),
    Column("kiosk_count", Integer, nullable=False),
    Column("kiosk_rials", BigInteger, nullable=False),
    Column("backoffice_count", Integer, nullable=False),
    Column("backoffice_rials", BigInteger, nullable=False),
    Column("difference_count", Integer, nullable=False),
    Column("differences", JSON, nullable=False),
    Column("note", Text, nullable=True),
)


class BackofficeUnreachable(FleetError):
    def __init__(self, message: str) -> None:
        super().__init__(502, "reconcile.backoffice", message, action="reconcile.run")


def day_bounds(day: dt.date) -> tuple[float, float]:
    """[start, end) of a Tehran day as Unix times (the journal's `at`)."""
    start = dt.datetime.combine(day, dt.time(), TZ)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), TZ)
    return start.timestamp(), end.timestamp()


def tehran_day(value: float | dt.datetime) -> dt.date:
    when = dt.datetime.fromtimestamp(value, dt.timezone.utc) if isinstance(value, (int, float)) else value
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(TZ).date()


# --- the back-office side ------------------------------------------------------------------------
def fetch_backoffice(url: str, token: str, day: dt.date, kiosk_id: str | None = None, *,
                     timeout: float = 30.0) -> list[dict[str, Any]]:
    """The back-office's records of `day` (every kiosk's, or `kiosk_id`'s) over HTTP, with an
    integration token (`backoffice token add NAME --role integration`)."""
    import requests

    params = {"date": day.isoformat(), **({"kiosk_id": kiosk_id} if kiosk_id else {})}
    try:
        resp = requests.get(url.rstrip("/") + BACKOFFICE_PATH, params=params, timeout=timeout,
                            headers={"Authorization": f"Bearer {token}"})
    except requests.RequestException as exc:
        raise BackofficeUnreachable(f"the back-office at {url} cannot be reached: {type(exc).__name__}") from None
    if resp.status_code == 401:
        raise BackofficeUnreachable("the back-office refused the token (an integration token is needed)")
    if resp.status_code != 200:
        raise BackofficeUnreachable(f"the back-office answered {resp.status_code} to {BACKOFFICE_PATH}")
    try:
        records = resp.json()["records"]
        assert isinstance(records, list)
    except (ValueError, KeyError, TypeError, AssertionError):
        raise BackofficeUnreachable("the back-office's answer is not a list of records") from None
    return records


def fetch_window(url: str, token: str, day: dt.date, kiosk_id: str | None = None) -> dict[dt.date, list[dict[str, Any]]]:
    """The records of the day before, the day and the day after."""
    return {d: fetch_backoffice(url, token, d, kiosk_id) for d in (day - dt.timedelta(days=1), day,
                                                                      day + dt.timedelta(days=1))}


# --- the kiosk side ------------------------------------------------------------------------------
@dataclass
class KioskTx:
    tx_id: str
    kind: str
    amount_rials: int
    state: str = "CREATED"
    day_at: float = 0.0  # PAID (CREATED for value-only kinds)
    data: dict[str, Any] = field(default_factory=dict)  # the CREATED row's data
    bill_steps: dict[int, str] = field(default_factory=dict)  # fee basket: bill index -> last step


def _load_json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _kiosk_txs(session: Session, kiosk_ids: Iterable[str] | None, day: dt.date) -> dict[str, dict[str, KioskTx]]:
    """{kiosk: {tx_id: KioskTx}} of the transactions of reconciled kinds that belong to `day`."""
    start, end = day_bounds(day)
    j = JournalRow
    q = select(j.kiosk_id, j.tx_id).where(
        j.at >= start, j.at < end, j.kind.in_(tuple(RECORD_KIND)),
        ((j.state == "PAID") & j.kind.notin_(tuple(VALUE_ONLY))) | ((j.state == "CREATED") & j.kind.in_(tuple(VALUE_ONLY))))
    if kiosk_ids is not None:
        q = q.where(j.kiosk_id.in_(list(kiosk_ids)))
    wanted: dict[str, list[str]] = defaultdict(list)
    for kid, tx_id in session.execute(q):
        wanted[kid].append(tx_id)
    out: dict[str, dict[str, KioskTx]] = {}
    for kid, ids in wanted.items():
        txs: dict[str, KioskTx] = {}
        for i in range(0, len(ids), 500):
            for row in session.scalars(select(j).where(j.kiosk_id == kid, j.tx_id.in_(ids[i:i + 500]))
                                       .order_by(j.seq)):
                tx = txs.setdefault(row.tx_id, KioskTx(row.tx_id, row.kind, int(row.amount_rials)))
                data = _load_json(row.data)
                tx.state = row.state
                if row.state == "CREATED":
                    tx.data = data
                    if row.kind in VALUE_ONLY:
                        tx.day_at = row.at
                elif row.state == "PAID":
                    tx.day_at = row.at
                elif row.state == "FULFILLING" and isinstance(data.get("bill"), int) and isinstance(data.get("step"), str):
                    tx.bill_steps[data["bill"]] = data["step"]
        out[kid] = txs
    return out


def _known_tx_ids(session: Session, kiosk_id: str, tx_ids: list[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(tx_ids), 500):
        found.update(session.scalars(select(JournalRow.tx_id).where(
            JournalRow.kiosk_id == kiosk_id, JournalRow.tx_id.in_(tx_ids[i:i + 500]), JournalRow.state == "CREATED")))
    return found


@dataclass
class Expected:
    """One back-office record a kiosk transaction should (or should not) have."""

    tx_id: str  # the back-office's transaction id (a basket's bill: <tx>.<i>)
    journal_tx: str
    record_kind: str
    amount_rials: int
    status: str  # settled | void | open
    state: str  # the kiosk's own word for it (last state, or a basket bill's step)
    ids: dict[str, str]


def _status(state: str) -> str:
    return "settled" if state in SETTLED else "void" if state in VOID else "open"


def _expected(tx: KioskTx) -> list[Expected]:
    kind = RECORD_KIND[tx.kind]
    if tx.kind != "fee_basket":
        ids = {k: str(tx.data[k]) for k in ("bill_id", "payment_id") if kind == "fee_payment" and k in tx.data}
        return [Expected(tx.tx_id, tx.tx_id, kind, tx.amount_rials, _status(tx.state), tx.state, ids)]
    items = tx.data.get("items") if isinstance(tx.data.get("items"), list) else []
    out = []
    for i, item in enumerate(items):
        item = item if isinstance(item, dict) else {}
        step = tx.bill_steps.get(i, "")
        status = ("void" if tx.state in {"DECLINED", "CANCELLED", "REVERSED"} or (tx.state == "REFUND_PENDING" and not step)
                  else "settled" if step in BILL_SETTLED else "void" if step in BILL_VOID else "open")
        out.append(Expected(f"{tx.tx_id}.{i}", tx.tx_id, kind, int(item.get("amount_rials") or 0), status,
                            f"{tx.state}/{step or 'not posted'}",
                            {k: str(item[k]) for k in ("bill_id", "payment_id") if k in item}))
    return out


def _record_view(r: Mapping[str, Any]) -> dict[str, Any]:
    return {k: r.get(k) for k in ("kind", "amount_rials", "recorded_at", "tracking_code", "bill_id", "payment_id",
                                  "load_kind", "card_serial", "ticket_id", "permit_id") if r.get(k) is not None}


def _diff(kind: str, e: Expected | None, r: Mapping[str, Any] | None, text: str) -> dict[str, Any]:
    return {"kind": kind, "tx_id": e.tx_id if e else str(r["transaction_id"]) if r else "",
            "kiosk": None if e is None else {"journal_tx": e.journal_tx, "state": e.state, "amount_rials": e.amount_rials,
                                             **e.ids},
            "backoffice": None if r is None else _record_view(r), "detail": text}


def compare_kiosk(expected: list[Expected], records: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The differences between a kiosk's expected records and the back-office's ({tx_id: record})."""
    diffs = []
    for e in expected:
        r = records.get(e.tx_id)
        if r is None:
            if e.status == "settled":
                diffs.append(_diff("missing_at_backoffice", e, None, f"settled on the kiosk ({e.state}), "
                                   "no record at the back-office"))
            elif e.status == "open":
                diffs.append(_diff("open_on_kiosk", e, None, f"paid at the kiosk and still open ({e.state}); "
                                   "not at the back-office yet"))
            continue
        if e.status == "void":
            diffs.append(_diff("reversed_but_recorded", e, r, f"{e.state} on the kiosk, recorded as paid at the "
                               "back-office"))
            continue
        if e.status == "open":
            diffs.append(_diff("recorded_but_open", e, r, f"recorded at the back-office; the kiosk has not "
                               f"journaled the answer ({e.state})"))
        if r.get("kind") != e.record_kind:
            diffs.append(_diff("ids_differ", e, r, f"the kiosk's {e.record_kind} is a {r.get('kind')} at the back-office"))
        elif any(str(r.get(k)) != v for k, v in e.ids.items()):
            diffs.append(_diff("ids_differ", e, r, "bill/payment ids differ: kiosk " + ", ".join(
                f"{k} {v}" for k, v in e.ids.items()) + ", back-office " + ", ".join(
                f"{k} {r.get(k)}" for k in e.ids)))
        if int(r.get("amount_rials") or 0) != e.amount_rials:
            diffs.append(_diff("amount_differs", e, r, f"{e.amount_rials} rials on the kiosk, "
                               f"{r.get('amount_rials')} at the back-office"))
    return diffs


def _note(session: Session, kiosk: Kiosk | None, kiosk_id: str, day: dt.date) -> str | None:
    from provisioning.server.journal import head

    seq, _ = head(session, kiosk_id)
    if kiosk is None:
        return "not a kiosk of this fleet"
    reported = (kiosk.heartbeat or {}).get("journal_head") if isinstance(kiosk.heartbeat, dict) else None
    if isinstance(reported, list) and reported and isinstance(reported[0], int) and reported[0] > seq:
        return f"journal upload behind: the fleet holds rows up to {seq}, the kiosk reports {reported[0]}"
    last_at = session.scalar(select(JournalRow.at).where(JournalRow.kiosk_id == kiosk_id)
                             .order_by(JournalRow.seq.desc()).limit(1))
    if last_at is None or last_at < day_bounds(day)[1]:
        return f"the fleet holds this kiosk's rows up to {seq}; none after the day yet"
    return None


def reconcile(session: Session, by: Manager, day: dt.date, backoffice: Mapping[dt.date, list[dict[str, Any]]],
              kiosk_id: str | None = None) -> dict[str, Any]:
    """Compare and store the result of `day` (every kiosk's, or `kiosk_id`'s); `backoffice`
    is fetch_window's answer. Returns the fleet's view (fleet_view)."""
    key = day.isoformat()
    require(by, Role.OPERATOR, "reconcile.run", kiosk_id or key)
    if day > dt.datetime.now(TZ).date():
        raise FleetError(409, "reconcile.future", f"{key} has not begun in Tehran yet", action="reconcile.run",
                         target=key)
    by_kiosk: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)  # every day of the window
    of_day: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d, records in backoffice.items():
        for r in records:
            if not isinstance(r, dict) or not isinstance(r.get("kiosk_id"), str) or not r.get("transaction_id"):
                continue
            if kiosk_id is not None and r["kiosk_id"] != kiosk_id:
                continue
            by_kiosk[r["kiosk_id"]][str(r["transaction_id"])] = r
            if d == day:
                of_day[r["kiosk_id"]].append(r)
    fleet_kiosks = {k.kiosk_id: k for k in session.scalars(select(Kiosk))}
    txs = _kiosk_txs(session, None if kiosk_id is None else [kiosk_id], day)
    if kiosk_id is not None:
        ids = {kiosk_id}
    else:
        ids = ({k for k, v in fleet_kiosks.items() if v.status == KioskStatus.ACCEPTED} | set(txs) | set(of_day))
    now = utcnow()
    rows = []
    for kid in sorted(ids):
        expected = [e for tx in txs.get(kid, {}).values() for e in _expected(tx)]
        records = by_kiosk.get(kid, {})
        diffs = compare_kiosk(expected, records)
        claimed = {e.tx_id for e in expected}
        strays = [r for r in of_day.get(kid, []) if str(r["transaction_id"]) not in claimed]
        known = _known_tx_ids(session, kid, sorted({str(r["transaction_id"]).split(".")[0] if "." in
                                                    str(r["transaction_id"]) else str(r["transaction_id"])
                                                    for r in strays} | {str(r["transaction_id"]) for r in strays}))
        for r in strays:
            tx = str(r["transaction_id"])
            if tx in known or tx.rsplit(".", 1)[0] in known:
                continue  # the fleet holds it on another day: that day's reconciliation
            diffs.append(_diff("missing_on_kiosk", None, r, "recorded at the back-office; the fleet holds no such "
                               "transaction of this kiosk"))
        diffs.sort(key=lambda d: (d["tx_id"], d["kind"]))
        settled = [e for e in expected if e.status == "settled"]
        rows.append({"day": key, "kiosk_id": kid, "run_at": now, "run_by": by.actor,
                     "kiosk_count": len(settled), "kiosk_rials": sum(e.amount_rials for e in settled),
                     "backoffice_count": len(of_day.get(kid, [])),
                     "backoffice_rials": sum(int(r.get("amount_rials") or 0) for r in of_day.get(kid, [])),
                     "difference_count": len(diffs), "differences": diffs,
                     "note": _note(session, fleet_kiosks.get(kid), kid, day)})
    stale = delete(results).where(results.c.day == key)
    if kiosk_id is not None:
        stale = stale.where(results.c.kiosk_id == kiosk_id)
    session.execute(stale)
    if rows:
        session.execute(results.insert(), rows)
    audit(session, by.actor, "reconcile.run", kiosk_id or key, day=key, kiosks=len(rows),
          differences=sum(r["difference_count"] for r in rows))
    return fleet_view(session, day, kiosk_id)


def _row_view(row: Any) -> dict[str, Any]:
    return {"kiosk_id": row.kiosk_id, "run_at": row.run_at.strftime("%Y-%m-%dT%H:%M:%SZ"), "run_by": row.run_by,
            "kiosk": {"count": row.kiosk_count, "rials": row.kiosk_rials},
            "backoffice": {"count": row.backoffice_count, "rials": row.backoffice_rials},
            "differences": list(row.differences), "note": row.note}


def fleet_view(session: Session, day: dt.date, kiosk_id: str | None = None) -> dict[str, Any]:
    """The stored result of `day`: per kiosk, and the fleet's totals."""
    q = select(results).where(results.c.day == day.isoformat()).order_by(results.c.kiosk_id)
    if kiosk_id is not None:
        q = q.where(results.c.kiosk_id == kiosk_id)
    kiosks = [_row_view(r) for r in session.execute(q)]
    return {"date": day.isoformat(), "timezone": "Asia/Tehran", "kiosks": kiosks,
            "fleet": {"kiosks": len(kiosks),
                      "kiosks_with_differences": sum(1 for k in kiosks if k["differences"]),
                      "differences": sum(len(k["differences"]) for k in kiosks),
                      "kiosk_rials": sum(k["kiosk"]["rials"] for k in kiosks),
                      "backoffice_rials": sum(k["backoffice"]["rials"] for k in kiosks)}}


def days_run(session: Session, limit: int = 60) -> list[dict[str, Any]]:
    """The days reconciled, newest first, with their kiosks and differences."""
    from sqlalchemy import func

    q = (select(results.c.day, func.count(), func.sum(results.c.difference_count), func.max(results.c.run_at))
         .group_by(results.c.day).order_by(results.c.day.desc()).limit(limit))
    return [{"date": d, "kiosks": int(n), "differences": int(diffs or 0),
             "run_at": at.strftime("%Y-%m-%dT%H:%M:%SZ") if at else None} for d, n, diffs, at in session.execute(q)]


def text_report(view: Mapping[str, Any]) -> str:
    f = view["fleet"]
    lines = [f"reconciliation {view['date']} (Tehran): {f['kiosks']} kiosk(s), {f['differences']} difference(s); "
             f"kiosks {f['kiosk_rials']} rials settled, back-office {f['backoffice_rials']} rials"]
    for k in view["kiosks"]:
        state = "ok" if not k["differences"] else f"{len(k['differences'])} difference(s)"
        lines.append(f"  {k['kiosk_id']}: {state}; kiosk {k['kiosk']['count']} tx {k['kiosk']['rials']} rials, "
                     f"back-office {k['backoffice']['count']} record(s) {k['backoffice']['rials']} rials"
                     + (f" — {k['note']}" if k["note"] else ""))
        for d in k["differences"]:
            lines.append(f"    {d['kind']:<22} {d['tx_id']}: {d['detail']}")
    return "\n".join(lines)


# --- an auditor's check of a receipt against the signed daily statement ---------------------------
class ReceiptMismatch(ValueError):
    """The receipt's journal row does not lead to the head the statement signed."""


def check_receipt(statement_doc: Any, fleet_public_key: str, *, kiosk_id: str, seq: int, hash_prefix: str,
                  rows: list[list[Any]]) -> str:
    """Check a receipt's journal row (its `journal_seq` and the `journal_hash` it prints: the
    PAID row's hash, 16 hex digits or more) against a signed statement of journal heads.

    `rows` are the kiosk's journal rows from `seq` to the statement's head for that kiosk, as
    stored (seq, tx_id, state, at, kind, amount_rials, data, prev_hash, hash) — from the fleet
    (`GET /api/v1/kiosks/{id}/journal?from_seq=…&to_seq=…`) or from the kiosk itself: whoever
    hands them over cannot forge them, since each row's hash is recomputed and the last must be
    the signed head. Returns one line saying what holds; raises signing.SignatureError (the
    statement is not the fleet's) or ReceiptMismatch."""
    from kiosk.journal.chain import entry_hash
    from provisioning.common import signing
    from provisioning.server.journal import STATEMENT_TYPE

    signed = signing.verify_document(statement_doc, fleet_public_key, doc_type=STATEMENT_TYPE,
                                     now=signing.parse_iso(statement_doc["signed"]["issued_at"])).signed
    prefix = hash_prefix.strip().lower()
    if len(prefix) < 16 or any(c not in "0123456789abcdef" for c in prefix):
        raise ReceiptMismatch("a receipt's journal hash is at least 16 hex digits")
    head = signed.get("heads", {}).get(kiosk_id)
    if not isinstance(head, dict):
        raise ReceiptMismatch(f"the statement of {signed.get('date')} holds no journal of {kiosk_id}")
    if seq > int(head["seq"]):
        raise ReceiptMismatch(f"row {seq} is after the statement's head ({head['seq']}): check it against a later "
                              "day's statement")
    if not rows or rows[0][0] != seq or rows[-1][0] != head["seq"]:
        raise ReceiptMismatch(f"the rows must run from {seq} to the head {head['seq']}")
    prev = None
    for row in rows:
        if not isinstance(row, (list, tuple)) or len(row) != 9:
            raise ReceiptMismatch("a row is 9 columns (seq, tx_id, state, at, kind, amount_rials, data, prev, hash)")
        r_seq, tx_id, state, at, kind, amount, data, r_prev, digest = row
        if prev is not None and (r_seq != prev[0] + 1 or r_prev != prev[1]):
            raise ReceiptMismatch(f"row {r_seq} does not follow row {prev[0]}")
        if entry_hash(r_prev, tx_id, state, float(at), kind, int(amount), data) != digest:
            raise ReceiptMismatch(f"row {r_seq} does not match its hash")
        prev = (r_seq, digest)
    if not rows[0][8].startswith(prefix):
        raise ReceiptMismatch(f"row {seq}'s hash is {rows[0][8][:16]}…, the receipt says {prefix[:16]}…")
    if rows[-1][8] != head["hash"]:
        raise ReceiptMismatch(f"the rows end at another hash than the head the statement of {signed['date']} signed")
    return (f"receipt row {seq} ({rows[0][1]} {rows[0][2]}) of {kiosk_id} is in the chain the statement of "
            f"{signed['date']} signed (head {head['seq']})")


def journal_rows(session: Session, kiosk_id: str, from_seq: int, to_seq: int, limit: int = 100_000) -> list[list[Any]]:
    """A kiosk's rows from_seq..to_seq as the fleet holds them (the columns check_receipt takes)."""
    j = JournalRow
    return [[r.seq, r.tx_id, r.state, r.at, r.kind, r.amount_rials, r.data, r.prev_hash, r.hash]
            for r in session.scalars(select(j).where(j.kiosk_id == kiosk_id, j.seq >= from_seq, j.seq <= to_seq)
                                     .order_by(j.seq).limit(limit))]
