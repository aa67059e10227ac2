"""A nexo-speaking payment terminal on a loopback port (HTTP, or HTTPS with a generated
certificate), with a durable ledger and fault modes (decline, timeout, lost response, busy,
malformed) for tests and the demo.

It is as strict as the Terminal API documents (TerminalAPI-v1.json and Adyen's published
behaviour; each rule below names its source, and docs/payment-terminal.md lists them):
  - a request the schema refuses (a required field missing, a TimeStamp that is not a
    date-time, a ReversalReason outside its enum, an amount over 99999999.999999, an unknown
    POIID) is answered with an EventNotification Reject, not a response;
  - a ServiceID is unique per terminal for 48 hours: a SaleID+ServiceID pair used again
    within that time is rejected (Adyen: "Must be unique within the last 48 hours for the
    terminal (POIID) being used"; what the terminal answers is not published — Reject is
    our reading);
  - one payment at a time: a PaymentRequest while another is in progress is answered
    Failure/Busy (ErrorCondition Busy; the answer itself is not published);
  - TransactionStatus finds a transaction by its message reference (SaleID, ServiceID,
    MessageCategory Payment or Reversal, default Payment), "the most recent transaction
    matching the parameters", and repeats the answer once given: a payment reversed later
    still reads as the original approval; the reversal's own status is asked with
    MessageCategory Reversal and the reversal's ServiceID. Only with `reference_lookup` (a
    terminal that documents it) may a MessageReference name a sale by SaleTransactionID, and
    then only within the asker's SaleID;
  - a reversal names the original sale by its POITransactionID and that transaction's
    TimeStamp; another timestamp does not name it (NotFound);
  - a ReversalRequest with a ReversedAmount below what is left of the sale is a partial
    referenced refund (Adyen Terminal API, "referenced refunds": a ReversalRequest with
    ReversedAmount for a partial refund): the sale keeps the total given back so far, each
    refund is answered under its own ServiceID (so TransactionStatus, category Reversal,
    finds each one), and a refund of more than is left is refused (NotAllowed, our reading).

Wire: POST / (or /nexo) with a SaleToPOIRequest JSON → SaleToPOIResponse JSON. Control: POST
/sim/mode {"mode": "..."}, GET /sim/ledger. The ledger is written (SQLite, synchronous=FULL)
before the answer is sent, so a simulator restarted on the same state_path remembers every
sale and every answer. Only masked card numbers are ever stored.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import ssl
import threading
import time
from dataclasses import asdict, dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from devices.contracts import PoiTransaction
from devices.terminal import nexo

log = logging.getLogger("devices.terminal.sim")

MODES = ("approve", "decline", "timeout", "lost-response", "busy", "malformed")
DEMO_MASKED_PAN = "603799******1234"  # Bank Melli BIN, demo card; the full number never exists here
DECLINE_THOUSANDS = 13  # amounts whose thousands end in 13 (e.g. 113,000 rials) are declined
SERVICE_ID_REUSE_S = 48 * 3600  # Adyen: a ServiceID is unique per terminal for 48 hours


def declines_by_amount(amount_rials: int) -> bool:
    """The demo 'declined card': any amount ending in 13 thousand rials (…13,000)."""
    return amount_rials % 1000 == 0 and (amount_rials // 1000) % 100 == DECLINE_THOUSANDS


class SimulatorModeError(ValueError):
    """An unknown simulator mode was asked for."""


@dataclass(frozen=True)
class _InFlight:
    reference: str
    service_id: str
    sale_id: str
    abort: threading.Event
    category: str = "Payment"


class _Ledger:
    """Sales keyed by the terminal's POITransactionID; every answer given to a Payment or a
    Reversal, keyed by its message reference; every ServiceID seen — in SQLite (a file when
    state_path is given)."""

    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL" if path else "PRAGMA journal_mode=MEMORY")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS sales (poi_transaction_id TEXT PRIMARY KEY, reference TEXT,"
            " amount_rials INTEGER, status TEXT, masked_pan TEXT, rrn TEXT, stan TEXT, approval_code TEXT,"
            " error_condition TEXT, sale_timestamp TEXT, poi_timestamp TEXT, service_id TEXT, sale_id TEXT,"
            " reversed_rials INTEGER NOT NULL DEFAULT 0)"
        )
        if "reversed_rials" not in {r[1] for r in self._db.execute("PRAGMA table_info(sales)")}:
            # a ledger written before partial refunds were offered
            self._db.execute("ALTER TABLE sales ADD COLUMN reversed_rials INTEGER NOT NULL DEFAULT 0")
        # the answer given to each Payment / Reversal, as TransactionStatus repeats it
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS answers (sale_id TEXT, service_id TEXT, category TEXT, reference TEXT,"
            " at REAL, body_name TEXT, body TEXT, PRIMARY KEY (sale_id, service_id))")
        self._db.execute("CREATE TABLE IF NOT EXISTS service_ids (sale_id TEXT, service_id TEXT, at REAL,"
                         " PRIMARY KEY (sale_id, service_id))")
        self._db.execute("CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER)")

    _COLS = ("reference", "poi_transaction_id", "amount_rials", "status", "masked_pan", "rrn", "stan",
             "approval_code", "error_condition", "sale_timestamp", "poi_timestamp", "service_id", "sale_id",
             "reversed_rials")

    def next_counter(self, name: str) -> int:
        with self._lock:
            self._db.execute("INSERT INTO counters VALUES (?, 1) ON CONFLICT(name) DO UPDATE SET value = value + 1", (name,))
            return int(self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()[0])

    def claim_service_id(self, sale_id: str, service_id: str, now: float) -> bool:
        """Record a request's ServiceID; False when this SaleID used it within 48 hours."""
        with self._lock:
            row = self._db.execute("SELECT at FROM service_ids WHERE sale_id = ? AND service_id = ?",
                                   (sale_id, service_id)).fetchone()
            if row is not None and now - row[0] < SERVICE_ID_REUSE_S:
                return False
            self._db.execute("INSERT OR REPLACE INTO service_ids VALUES (?, ?, ?)", (sale_id, service_id, now))
            return True

    def put(self, sale: nexo.Sale, answer: tuple[str, str, str, str, dict[str, Any]] | None = None) -> None:
        """Store a sale, and (category, sale_id, service_id, body_name, body) of the answer
        given — in one commit, before that answer leaves."""
        row = asdict(sale)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                f"INSERT OR REPLACE INTO sales ({', '.join(self._COLS)}) VALUES ({', '.join('?' * len(self._COLS))})",
                [row[c] for c in self._COLS],
            )
            if answer is not None:
                category, sale_id, service_id, body_name, body = answer
                self._db.execute("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?)",
                                 (sale_id, service_id, category, sale.reference, time.time(), body_name,
                                  json.dumps(body, ensure_ascii=False)))
            self._db.execute("COMMIT")

    def put_answer(self, category: str, sale_id: str, service_id: str, reference: str, body_name: str,
                   body: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (sale_id, service_id, category, reference, time.time(), body_name,
                              json.dumps(body, ensure_ascii=False)))

    def answer(self, sale_id: str, category: str, service_id: str = "", reference: str = ""
               ) -> tuple[str, str, dict[str, Any]] | None:
        """(ServiceID, body name, body) of the most recent answer matching the reference."""
        sql = "SELECT service_id, body_name, body FROM answers WHERE sale_id = ? AND category = ?"
        args: list[Any] = [sale_id, category]
        if service_id:
            sql += " AND service_id = ?"
            args.append(service_id)
        if reference:
            sql += " AND reference = ?"
            args.append(reference)
        with self._lock:
            row = self._db.execute(sql + " ORDER BY at DESC, rowid DESC LIMIT 1", args).fetchone()
        return (row[0], row[1], json.loads(row[2])) if row else None

    def _one(self, where: str, args: tuple[Any, ...]) -> nexo.Sale | None:
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(self._COLS)} FROM sales WHERE {where}", args).fetchone()
        return nexo.Sale(**dict(zip(self._COLS, row))) if row else None

    def by_poi_transaction(self, poi_transaction_id: str) -> nexo.Sale | None:
        return self._one("poi_transaction_id = ?", (poi_transaction_id,))

    def by_reference(self, reference: str) -> list[nexo.Sale]:
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(self._COLS)} FROM sales WHERE reference = ? ORDER BY rowid",
                                    (reference,)).fetchall()
        return [nexo.Sale(**dict(zip(self._COLS, r))) for r in rows]

    def all(self) -> list[nexo.Sale]:
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(self._COLS)} FROM sales ORDER BY rowid").fetchall()
        return [nexo.Sale(**dict(zip(self._COLS, r))) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class NexoTerminalSimulator:
    """A payment terminal behind the real nexo JSON wire on 127.0.0.1. `tls`: a server
    certificate (devices.terminal.tls.generate_self_signed) to serve HTTPS, as real terminals
    do; without it the simulator serves plain HTTP for development."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        mode: str = "approve",
        state_path: Path | None = None,
        latency_s: float = 0.0,
        poi_id: str = "SIM-POI-1",
        hang_s: float = 30.0,
        tls: Any = None,
        reference_lookup: bool = False,
        reversal_latency_s: float = 0.0,
        reversal_unseen_s: float = 0.0,
    ) -> None:
        self.host, self.port = host, port
        self.poi_id = poi_id
        #: what the next sales report as MaskedPan; a test sets a full number to play a
        #: terminal that leaks one, which the kiosk must store masked and still record
        self.masked_pan = DEMO_MASKED_PAN
        self.latency_s = latency_s
        self.hang_s = hang_s  # how long "timeout" mode holds a request before giving up
        self.state_path = state_path
        self.tls = tls
        self.reference_lookup = reference_lookup
        #: how long a reversal (or partial refund) takes once the terminal has it: status
        #: answers InProgress for it meanwhile, as for a payment still running
        self.reversal_latency_s = reversal_latency_s
        #: how long a reversal waits before the terminal sees it at all (held in a network
        #: queue): status answers NotFound meanwhile, then the reversal is done as usual
        self.reversal_unseen_s = reversal_unseen_s
        #: how long a payment request waits before the terminal sees it at all (held in a
        #: network queue): meanwhile status answers NotFound and an abort finds nothing to stop
        self.payment_unseen_s = 0.0
        # a sale's refund bookkeeping (read what is left, give back, write) is one step
        self._reversal_lock = threading.Lock()
        #: what the RRN/STAN look like; "adyen" plays a terminal whose acquirer sends its own
        #: reference and no STAN
        self.acquirer = "shaparak"
        self._mode = "approve"
        self._once: str | None = None
        self._mode_lock = threading.Lock()
        self.set_mode(mode)
        self._inflight: dict[tuple[str, str], _InFlight] = {}
        self._inflight_lock = threading.Lock()
        self._stopping = threading.Event()
        self._ledger: _Ledger | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.requests_seen: list[str] = []  # body names in arrival order ("PaymentRequest", "AbortRequest", …)
        self.rejected: list[str] = []  # why each rejected request was rejected, in order
        # hold_approved: an approved sale is recorded, then its answer is held until
        # release_held() or an Abort for it — a test can act "while the terminal approves"
        self.hold_approved = False
        self.held = threading.Event()  # set while an approved answer is held
        self._release = threading.Event()
        self.identity = {"model": "NexoSim 1", "serial": f"SN-{poi_id}", "vendor": "CityKiosk", "firmware": "1.0"}

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> str:
        self._ledger = _Ledger(self.state_path)
        self._stopping.clear()
        sim = self

        class Handler(_Handler):
            simulator = sim

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        if self.tls is not None:
            from devices.terminal.tls import server_context

            context: ssl.SSLContext = server_context(self.tls.cert_path, self.tls.key_path)
            # the handshake runs in the request's own thread: a client that connects and never
            # speaks must not stall the accept loop
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True,
                                                      do_handshake_on_connect=False)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"nexo-sim-{self.port}", daemon=True)
        self._thread.start()
        log.info("nexo simulator listening on %s", self.url)
        return self.url

    @property
    def url(self) -> str:
        return f"{'https' if self.tls is not None else 'http'}://{self.host}:{self.port}/nexo"

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers held by "timeout" mode or latency
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    def __enter__(self) -> NexoTerminalSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- modes ------------------------------------------------------------------------------
    def set_mode(self, mode: str) -> None:
        """`approve`, `decline`, `timeout`, `lost-response`, `busy`, `malformed`, or `once-<mode>`
        (applies to the next Payment request only, then falls back to the standing mode)."""
        base = mode.removeprefix("once-")
        if base not in MODES:
            raise SimulatorModeError(f"unknown simulator mode {mode!r}; known: {', '.join(MODES)} (or once-<mode>)")
        with self._mode_lock:
            if mode.startswith("once-"):
                self._once = base
            else:
                self._mode, self._once = base, None

    @property
    def mode(self) -> str:
        return f"once-{self._once}" if self._once else self._mode

    def _take_mode(self) -> str:
        with self._mode_lock:
            if self._once:
                mode, self._once = self._once, None
                return mode
            return self._mode

    # --- ledger -----------------------------------------------------------------------------
    @property
    def ledger_store(self) -> _Ledger:
        if self._ledger is None:
            raise RuntimeError("simulator is not started")
        return self._ledger

    def ledger(self) -> list[dict[str, Any]]:
        return [
            {"reference": s.reference, "poi_id": self.poi_id, "poi_transaction_id": s.poi_transaction_id,
             "amount_rials": s.amount_rials, "status": s.status, "masked_pan": s.masked_pan,
             "rrn": s.rrn, "stan": s.stan, "error_condition": s.error_condition,
             "reversed_rials": s.reversed_rials}
            for s in self.ledger_store.all()
        ]

    def net_charged(self, reference: str) -> int:
        """What the card holder is out of pocket for this reference: approved minus reversed
        (a partial refund gives back part of an approved sale)."""
        return sum(s.amount_rials - s.reversed_rials for s in self.ledger_store.by_reference(reference)
                   if s.status == "approved")

    # --- request handling (called on server threads) -----------------------------------------
    def handle(self, raw: bytes) -> dict[str, Any] | bytes | None:
        """The answer to one POST: a JSON message, raw bytes (malformed mode, an abort's empty
        body), or None (drop the connection without an answer)."""
        try:
            req = nexo.parse_request(raw)
        except nexo.InvalidRequest as exc:
            return self._reject(str(exc), exc.header, raw)
        self.requests_seen.append(req.body_name)
        h = req.header
        if h.poi_id != self.poi_id:
            return self._reject(f"POIID {h.poi_id} is not this terminal", h, raw)
        if not self.ledger_store.claim_service_id(h.sale_id, h.service_id, time.time()):
            return self._reject(f"ServiceID {h.service_id} was used within the last 48 hours", h, raw)
        if h.category == nexo.Category.PAYMENT:
            return self._payment(req)
        if h.category == nexo.Category.REVERSAL:
            return self._reversal(req)
        if h.category == nexo.Category.TRANSACTION_STATUS:
            return self._status(req)
        if h.category == nexo.Category.ABORT:
            return self._abort(req)
        return nexo.response_message(h, "DiagnosisResponse", nexo.diagnosis_response_body("OK", self.identity))

    def _reject(self, why: str, header: nexo.Header | None, raw: bytes) -> dict[str, Any]:
        log.warning("simulator rejected a request: %s", why)
        self.rejected.append(why)
        return nexo.reject_event(self.poi_id, header.sale_id if header else "", header.service_id if header else "",
                                 why, raw)

    def _payment(self, req: nexo.ParsedRequest) -> dict[str, Any] | bytes | None:
        h = req.header
        if self.payment_unseen_s > 0:
            self._stopping.wait(self.payment_unseen_s)
        sale_tx = nexo.request_sale(req.body, "PaymentRequest")
        reference = sale_tx.transaction_id
        currency, amount = nexo.request_amount(req.body)
        mode = self._take_mode()
        if mode == "malformed":
            return b'{"SaleToPOIResponse": {"MessageHeader": '  # cut mid-object: invalid JSON
        if currency != nexo.CURRENCY:
            return nexo.response_message(h, "PaymentResponse", nexo.failure_body(nexo.PAYMENT_RESTRICTION, reference))
        flight = _InFlight(reference, h.service_id, h.sale_id, threading.Event())
        with self._inflight_lock:
            busy = mode == "busy" or any(f.category == "Payment" for f in self._inflight.values())
            if not busy:
                self._inflight[(h.sale_id, h.service_id)] = flight
        if busy:
            # one payment at a time: the terminal's card reader and PIN pad are taken
            return nexo.response_message(h, "PaymentResponse", nexo.failure_body(nexo.BUSY, reference))
        try:
            wait = self.hang_s if mode == "timeout" else self.latency_s
            if wait > 0 and self._wait(flight.abort, wait):
                return self._answer_payment(h, self._failed_sale(h, sale_tx, amount, nexo.ABORTED), mode)
            if mode == "timeout":
                return None  # the terminal gave up without completing the sale; nothing recorded
            declined = mode == "decline" or declines_by_amount(amount)
            if declined:
                return self._answer_payment(h, self._failed_sale(h, sale_tx, amount, nexo.REFUSAL), mode)
            seq = self.ledger_store.next_counter("poi_tx")
            sale = nexo.Sale(
                reference=reference,
                poi_transaction_id=f"{self.poi_id}-{seq:08d}",
                amount_rials=amount,
                status="approved",
                masked_pan=self.masked_pan,
                rrn=self._rrn(),
                stan=f"{self.ledger_store.next_counter('stan') % 1_000_000:06d}" if self.acquirer == "shaparak" else "",
                approval_code=f"{secrets.randbelow(10**6):06d}",
                sale_timestamp=sale_tx.timestamp,
                poi_timestamp=nexo.now_iso(),
                service_id=h.service_id,
                sale_id=h.sale_id,
            )
            return self._answer_payment(h, sale, mode, flight.abort)
        finally:
            with self._inflight_lock:
                self._inflight.pop((h.sale_id, h.service_id), None)

    def _rrn(self) -> str:
        if self.acquirer == "shaparak":
            return f"{secrets.randbelow(10**12):012d}"
        return secrets.token_hex(8).upper()  # an acquirer reference that is not digits only

    def _failed_sale(self, h: nexo.Header, sale_tx: PoiTransaction, amount: int, condition: str) -> nexo.Sale:
        seq = self.ledger_store.next_counter("poi_tx")
        return nexo.Sale(reference=sale_tx.transaction_id, poi_transaction_id=f"{self.poi_id}-{seq:08d}",
                         amount_rials=amount, status="declined", error_condition=condition,
                         sale_timestamp=sale_tx.timestamp, poi_timestamp=nexo.now_iso(),
                         service_id=h.service_id, sale_id=h.sale_id)

    def _answer_payment(self, h: nexo.Header, sale: nexo.Sale, mode: str,
                        abort: threading.Event | None = None) -> dict[str, Any] | None:
        body = nexo.payment_response_body(sale)
        # durable before the answer leaves: the sale and the answer status will repeat
        self.ledger_store.put(sale, ("Payment", h.sale_id, h.service_id, "PaymentResponse", body))
        log.info("sim sale %s %s %d rials", sale.reference, sale.status, sale.amount_rials)
        if sale.status == "approved" and self.hold_approved and abort is not None:
            self._hold(abort)
        if mode == "lost-response":
            return None
        return nexo.response_message(h, "PaymentResponse", body)

    def release_held(self) -> None:
        """Let a held approved answer go (see hold_approved)."""
        self._release.set()

    def _hold(self, abort: threading.Event) -> None:
        self._release.clear()
        self.held.set()
        try:
            # an Abort that arrives now is too late to stop the sale: the approval is answered
            while not (self._release.is_set() or abort.is_set() or self._stopping.is_set()):
                self._release.wait(0.02)
        finally:
            self.held.clear()

    def _wait(self, abort: threading.Event, seconds: float) -> bool:
        """Sleep up to `seconds`; True when aborted (or the simulator is stopping)."""
        step = 0.02
        waited = 0.0
        while waited < seconds:
            if abort.wait(min(step, seconds - waited)) or self._stopping.is_set():
                return True
            waited += step
        return False

    def _status(self, req: nexo.ParsedRequest) -> dict[str, Any]:
        h = req.header
        category, sale_id, service_id, reference = nexo.parse_message_reference(req.body)
        sale_id = sale_id or h.sale_id
        if not self.reference_lookup:
            reference = ""  # a terminal without the extension ignores it
        elif reference and sale_id != h.sale_id:
            # the extension finds a sale by our reference only within the asker's own SaleID
            return nexo.response_message(h, "TransactionStatusResponse",
                                         nexo.status_response_body(h, {"MessageCategory": category, "SaleID": sale_id}, None))
        ref_json = {"MessageCategory": category, "SaleID": sale_id, **({"ServiceID": service_id} if service_id else {})}
        with self._inflight_lock:
            running = [f for f in self._inflight.values() if f.sale_id == sale_id and f.category == category
                       and (f.service_id == service_id or (not service_id and (not reference or f.reference == reference)))]
        if running:
            body = nexo.status_response_body(h, ref_json, None, nexo.IN_PROGRESS)
            body["Response"]["AdditionalResponse"] = "message=Uncompleted%20transaction"
            return nexo.response_message(h, "TransactionStatusResponse", body)
        # "the most recent transaction matching the parameters": with no ServiceID, the
        # SaleID's last Payment (or Reversal)
        found = self.ledger_store.answer(sale_id, category, service_id, reference) \
            if category in ("Payment", "Reversal") else None
        repeated = None
        if found is not None:
            svc, body_name, body = found
            repeated = (nexo.Category(category), svc, body_name, body)
        return nexo.response_message(h, "TransactionStatusResponse", nexo.status_response_body(h, ref_json, repeated))

    def _abort(self, req: nexo.ParsedRequest) -> bytes:
        category, sale_id, service_id, _ = nexo.parse_message_reference(req.body)
        sale_id = sale_id or req.header.sale_id
        with self._inflight_lock:
            for f in self._inflight.values():
                if category == "Payment" and f.sale_id == sale_id and f.service_id == service_id:
                    f.abort.set()
        return b""  # "A successful AbortRequest returns ... 200 OK ... and no body"

    def _reversal(self, req: nexo.ParsedRequest) -> dict[str, Any]:
        h = req.header
        original, amount = nexo.request_original(req.body)
        reference = ""
        if isinstance(req.body.get("SaleData"), dict):
            reference = nexo.request_sale(req.body, "ReversalRequest").transaction_id
        if self.reversal_unseen_s > 0:
            self._stopping.wait(self.reversal_unseen_s)  # not yet at the terminal: status NotFound
        flight = _InFlight(reference, h.service_id, h.sale_id, threading.Event(), "Reversal")
        with self._inflight_lock:
            self._inflight[(h.sale_id, h.service_id)] = flight
        try:
            # "TransactionStatus of a transaction still running: InProgress" holds for a
            # reversal the terminal is working on as for a payment (docs/payment-terminal.md)
            if self.reversal_latency_s > 0:
                self._stopping.wait(self.reversal_latency_s)
            with self._reversal_lock:
                return self._reverse_sale(h, original, amount, reference)
        finally:
            with self._inflight_lock:
                self._inflight.pop((h.sale_id, h.service_id), None)

    def _reverse_sale(self, h: nexo.Header, original: PoiTransaction, amount: int | None,
                      reference: str) -> dict[str, Any]:
        sale = self.ledger_store.by_poi_transaction(original.transaction_id)
        if sale is None or sale.poi_timestamp != original.timestamp:
            # the original is named by its POITransactionID *and* that transaction's TimeStamp
            body = nexo.failure_body(nexo.NOT_FOUND)
        elif sale.status != "approved" or (amount is not None and not 0 < amount <= sale.amount_rials - sale.reversed_rials):
            # nothing was charged, already reversed, or more than what is left of the sale
            body = nexo.failure_body(nexo.NOT_ALLOWED)
        else:
            # a ReversalRequest with ReversedAmount below what is left is a partial referenced
            # refund (Adyen Terminal API); without ReversedAmount, or for all that is left, the
            # sale is reversed
            given = sale.amount_rials - sale.reversed_rials if amount is None else amount
            total = sale.reversed_rials + given
            sale = replace(sale, reversed_rials=total, status="reversed" if total == sale.amount_rials else "approved")
            seq = self.ledger_store.next_counter("poi_tx")
            body = nexo.reversal_response_body(sale, PoiTransaction(f"{self.poi_id}-{seq:08d}", nexo.now_iso()), given)
            self.ledger_store.put(sale, ("Reversal", h.sale_id, h.service_id, "ReversalResponse", body))
            log.info("sim sale %s: %d rials given back (%s)", sale.reference, given, sale.status)
            return nexo.response_message(h, "ReversalResponse", body)
        self.ledger_store.put_answer("Reversal", h.sale_id, h.service_id, reference or (sale.reference if sale else ""),
                                     "ReversalResponse", body)
        return nexo.response_message(h, "ReversalResponse", body)


def _str_at(d: dict[str, Any], *path: str) -> str:
    for key in path[:-1]:
        d = d.get(key) if isinstance(d.get(key), dict) else {}
    v = d.get(path[-1])
    return v if isinstance(v, str) else ""


class _Handler(BaseHTTPRequestHandler):
    simulator: NexoTerminalSimulator
    server_version = "NexoSim/1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.address_string(), *args)

    def _reply(self, status: int, payload: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        if self.path == "/sim/ledger":
            self._reply(200, json.dumps(self.simulator.ledger(), ensure_ascii=False).encode())
        elif self.path == "/sim/mode":
            self._reply(200, json.dumps({"mode": self.simulator.mode}).encode())
        else:
            self._reply(404, b'{"error": "not found"}')

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        raw = self._body()
        if self.path == "/sim/mode":
            try:
                mode = json.loads(raw)["mode"]
                self.simulator.set_mode(str(mode))
            except (ValueError, KeyError, TypeError) as exc:
                self._reply(400, json.dumps({"error": str(exc)}).encode())
                return
            self._reply(200, json.dumps({"mode": self.simulator.mode}).encode())
            return
        if self.path not in ("/", "/nexo"):
            self._reply(404, b'{"error": "not found"}')
            return
        answer = self.simulator.handle(raw)
        if answer is None:
            self.close_connection = True  # drop: the client sees the connection end, no answer
            return
        self._reply(200, answer if isinstance(answer, bytes) else json.dumps(answer, ensure_ascii=False).encode())
