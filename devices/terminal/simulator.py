"""A nexo-speaking payment terminal on a loopback HTTP port, with a durable sales ledger and
fault modes (decline, timeout, lost response, busy, malformed) for tests and the demo.

Wire: POST / with a SaleToPOIRequest JSON → SaleToPOIResponse JSON. Control: POST /sim/mode
{"mode": "..."}, GET /sim/ledger. The ledger is written (SQLite, synchronous=FULL) before the
answer is sent, so a simulator restarted on the same state_path remembers every sale.
Only masked card numbers are ever stored. See docs/payment-terminal.md.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import threading
from dataclasses import asdict, dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from devices.terminal import nexo

log = logging.getLogger("devices.terminal.sim")

MODES = ("approve", "decline", "timeout", "lost-response", "busy", "malformed")
DEMO_MASKED_PAN = "603799******1234"  # Bank Melli BIN, demo card; the full number never exists here
DECLINE_THOUSANDS = 13  # amounts whose thousands end in 13 (e.g. 113,000 rials) are declined


def declines_by_amount(amount_rials: int) -> bool:
    """The demo 'declined card': any amount ending in 13 thousand rials (…13,000)."""
    return amount_rials % 1000 == 0 and (amount_rials // 1000) % 100 == DECLINE_THOUSANDS


class SimulatorModeError(ValueError):
    """An unknown simulator mode was asked for."""


@dataclass(frozen=True)
class _InFlight:
    reference: str
    service_id: str
    abort: threading.Event


class _Ledger:
    """Sales keyed by reference, in SQLite (a file when state_path is given)."""

    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL" if path else "PRAGMA journal_mode=MEMORY")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS sales (reference TEXT PRIMARY KEY, poi_transaction_id TEXT UNIQUE,"
            " amount_rials INTEGER, status TEXT, masked_pan TEXT, rrn TEXT, stan TEXT, approval_code TEXT,"
            " error_condition TEXT, sale_timestamp TEXT, poi_timestamp TEXT, service_id TEXT, sale_id TEXT)"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS service_ids (sale_id TEXT, service_id TEXT, reference TEXT,"
                         " PRIMARY KEY (sale_id, service_id))")
        self._db.execute("CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER)")

    _COLS = ("reference", "poi_transaction_id", "amount_rials", "status", "masked_pan", "rrn", "stan",
             "approval_code", "error_condition", "sale_timestamp", "poi_timestamp", "service_id", "sale_id")

    def next_counter(self, name: str) -> int:
        with self._lock:
            self._db.execute("INSERT INTO counters VALUES (?, 1) ON CONFLICT(name) DO UPDATE SET value = value + 1", (name,))
            return int(self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()[0])

    def put(self, sale: nexo.Sale) -> None:
        row = asdict(sale)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                f"INSERT OR REPLACE INTO sales ({', '.join(self._COLS)}) VALUES ({', '.join('?' * len(self._COLS))})",
                [row[c] for c in self._COLS],
            )
            if sale.service_id:
                self._db.execute("INSERT OR REPLACE INTO service_ids VALUES (?, ?, ?)",
                                 (sale.sale_id, sale.service_id, sale.reference))
            self._db.execute("COMMIT")

    def _one(self, where: str, args: tuple[Any, ...]) -> nexo.Sale | None:
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(self._COLS)} FROM sales WHERE {where}", args).fetchone()
        return nexo.Sale(**dict(zip(self._COLS, row))) if row else None

    def by_reference(self, reference: str) -> nexo.Sale | None:
        return self._one("reference = ?", (reference,))

    def by_poi_transaction(self, poi_transaction_id: str) -> nexo.Sale | None:
        return self._one("poi_transaction_id = ?", (poi_transaction_id,))

    def by_service_id(self, sale_id: str, service_id: str) -> nexo.Sale | None:
        with self._lock:
            row = self._db.execute("SELECT reference FROM service_ids WHERE sale_id = ? AND service_id = ?",
                                   (sale_id, service_id)).fetchone()
        return self.by_reference(row[0]) if row else None

    def all(self) -> list[nexo.Sale]:
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(self._COLS)} FROM sales ORDER BY rowid").fetchall()
        return [nexo.Sale(**dict(zip(self._COLS, r))) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class NexoTerminalSimulator:
    """A payment terminal behind the real nexo JSON wire on 127.0.0.1."""

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
    ) -> None:
        self.host, self.port = host, port
        self.poi_id = poi_id
        #: what the next sales report as MaskedPan; a test sets a full number to play a
        #: terminal that leaks one, which the kiosk must store masked and still record
        self.masked_pan = DEMO_MASKED_PAN
        self.latency_s = latency_s
        self.hang_s = hang_s  # how long "timeout" mode holds a request before giving up
        self.state_path = state_path
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
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"nexo-sim-{self.port}", daemon=True)
        self._thread.start()
        log.info("nexo simulator listening on %s", self.url)
        return self.url

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

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
             "rrn": s.rrn, "stan": s.stan, "error_condition": s.error_condition}
            for s in self.ledger_store.all()
        ]

    def net_charged(self, reference: str) -> int:
        """What the card holder is out of pocket for this sale: approved minus reversed."""
        sale = self.ledger_store.by_reference(reference)
        return sale.amount_rials if sale and sale.status == "approved" else 0

    # --- request handling (called on server threads) -----------------------------------------
    def handle(self, raw: bytes) -> dict[str, Any] | bytes | None:
        """The answer to one POST: a JSON message, raw bytes (malformed mode), or None (drop)."""
        try:
            req = nexo.parse_request(raw)
        except nexo.NexoParseError as exc:
            log.warning("simulator got a malformed request: %s", exc)
            return {"SaleToPOIResponse": {"error": nexo.MESSAGE_FORMAT}}
        self.requests_seen.append(req.body_name)
        h = req.header
        if h.poi_id != self.poi_id:
            return nexo.response_message(h, req.body_name.replace("Request", "Response"), nexo.failure_body(nexo.NOT_ALLOWED))
        try:
            if h.category == nexo.Category.PAYMENT:
                return self._payment(req)
            if h.category == nexo.Category.REVERSAL:
                return self._reversal(req)
            if h.category == nexo.Category.TRANSACTION_STATUS:
                return self._status(req)
            if h.category == nexo.Category.ABORT:
                return self._abort(req)
            return nexo.response_message(h, "DiagnosisResponse", nexo.diagnosis_response_body("OK", self.identity))
        except nexo.NexoParseError as exc:
            log.warning("simulator rejected %s: %s", req.body_name, exc)
            return nexo.response_message(h, req.body_name.replace("Request", "Response"), nexo.failure_body(nexo.MESSAGE_FORMAT))

    def _payment(self, req: nexo.ParsedRequest) -> dict[str, Any] | bytes | None:
        h = req.header
        reference = nexo.request_reference(req.body, "PaymentRequest")
        sale_ts = _str_at(req.body, "SaleData", "SaleTransactionID", "TimeStamp")
        amount = nexo.request_amount(req.body)
        mode = self._take_mode()
        if mode == "malformed":
            return b'{"SaleToPOIResponse": {"MessageHeader": '  # cut mid-object: invalid JSON
        if mode == "busy":
            return nexo.response_message(h, "PaymentResponse", nexo.failure_body(nexo.BUSY, reference))
        existing = self.ledger_store.by_reference(reference)
        if existing is not None and existing.status != "declined":
            # a reference is one sale: never charge it twice
            return nexo.response_message(h, "PaymentResponse", nexo.failure_body(nexo.NOT_ALLOWED, reference))
        flight = _InFlight(reference, h.service_id, threading.Event())
        with self._inflight_lock:
            self._inflight[(h.sale_id, h.service_id)] = flight
        try:
            wait = self.hang_s if mode == "timeout" else self.latency_s
            if wait > 0 and self._wait(flight.abort, wait):
                return nexo.response_message(h, "PaymentResponse", nexo.failure_body(nexo.ABORTED, reference))
            if mode == "timeout":
                return None  # the terminal gave up without completing the sale; nothing recorded
            declined = mode == "decline" or declines_by_amount(amount)
            poi_ts = nexo.now_iso()
            seq = self.ledger_store.next_counter("poi_tx")
            sale = nexo.Sale(
                reference=reference,
                poi_transaction_id=f"{self.poi_id}-{seq:08d}",
                amount_rials=amount,
                status="declined" if declined else "approved",
                masked_pan=self.masked_pan,
                rrn="" if declined else f"{secrets.randbelow(10**12):012d}",
                stan="" if declined else f"{self.ledger_store.next_counter('stan') % 1_000_000:06d}",
                approval_code="" if declined else f"{secrets.randbelow(10**6):06d}",
                error_condition=nexo.REFUSAL if declined else "",
                sale_timestamp=sale_ts or nexo.now_iso(),
                poi_timestamp=poi_ts,
                service_id=h.service_id,
                sale_id=h.sale_id,
            )
            self.ledger_store.put(sale)  # durable before the answer leaves
            log.info("sim sale %s %s %d rials", reference, sale.status, amount)
            if self.hold_approved and not declined:
                self._hold(flight.abort)
            if mode == "lost-response":
                return None
            return nexo.response_message(h, "PaymentResponse", nexo.payment_response_body(sale))
        finally:
            with self._inflight_lock:
                self._inflight.pop((h.sale_id, h.service_id), None)

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

    def _find(self, sale_id: str, service_id: str, reference: str) -> tuple[nexo.Sale | None, bool]:
        """(sale, in_progress) by ServiceID first, else by SaleTransactionID (our extension)."""
        with self._inflight_lock:
            flights = list(self._inflight.items())
        for (sid, svc), f in flights:
            if sid == sale_id and ((service_id and svc == service_id) or (reference and f.reference == reference)):
                return None, True
        sale = self.ledger_store.by_service_id(sale_id, service_id) if service_id else None
        if sale is None and reference:
            sale = self.ledger_store.by_reference(reference)
        return sale, False

    def _status(self, req: nexo.ParsedRequest) -> dict[str, Any]:
        sale_id, service_id, reference = nexo.message_reference(req.body, "TransactionStatusRequest")
        sale, in_progress = self._find(sale_id or req.header.sale_id, service_id, reference)
        body = nexo.status_response_body(req.header, sale, nexo.IN_PROGRESS if in_progress else "")
        return nexo.response_message(req.header, "TransactionStatusResponse", body)

    def _abort(self, req: nexo.ParsedRequest) -> bytes:
        sale_id, service_id, reference = nexo.message_reference(req.body, "AbortRequest")
        sale_id = sale_id or req.header.sale_id
        with self._inflight_lock:
            for (sid, svc), f in self._inflight.items():
                if sid == sale_id and ((service_id and svc == service_id) or (reference and f.reference == reference)):
                    f.abort.set()
        return b""  # nexo defines no AbortResponse; the HTTP 200 is the whole answer

    def _reversal(self, req: nexo.ParsedRequest) -> dict[str, Any]:
        h = req.header
        poi = nexo._obj(nexo._obj(req.body, "OriginalPOITransaction", "ReversalRequest"), "POITransactionID", "ReversalRequest")
        poi_tx = nexo._str(poi, "TransactionID", "ReversalRequest.OriginalPOITransaction")
        amount = nexo._amount(req.body, "ReversedAmount", "ReversalRequest")
        sale = self.ledger_store.by_poi_transaction(poi_tx)
        if sale is None:
            return nexo.response_message(h, "ReversalResponse", nexo.failure_body(nexo.NOT_FOUND))
        if sale.status == "declined" or amount != sale.amount_rials:
            # nothing was charged, or a partial reversal (not offered by this terminal)
            return nexo.response_message(h, "ReversalResponse", nexo.failure_body(nexo.NOT_ALLOWED))
        if sale.status == "approved":
            sale = replace(sale, status="reversed")
            self.ledger_store.put(sale)
            log.info("sim sale %s reversed", sale.reference)
        return nexo.response_message(h, "ReversalResponse", nexo.reversal_response_body(sale))


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
