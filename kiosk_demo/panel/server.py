"""The device simulator panel: a small web page on loopback that drives the demo environment's
simulators while a kiosk runs against them — virtual transit cards in and out of the PN532's
field, a fee slip's barcode through the serial scanner, the printer's paper, cover and
online state, the payment terminal's answer and latency — and shows what the printer
emulator printed, each job decoded from its ESC/POS bytes to a PNG.

Stdlib only (http.server): the page, its CSS and JS are files of this package, so it works
with no internet. Served on 127.0.0.1 only. Every POST must carry the header
`X-Kiosk-Panel: 1` and a JSON body (a cross-site form cannot send either), and every request
must name the panel's own Host (a DNS-rebinding page cannot). A mistake is a 4xx with a JSON
error: {"error": key, "message_fa", "message_en", "detail"}."""

from __future__ import annotations

import contextlib
import hashlib
import io
import ipaddress
import json
import logging
import re
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Callable, ClassVar, Iterator
from urllib.parse import parse_qs, urlsplit

from devices.dispenser.simulator import fresh_uid
from devices.mifare_classic_virtual import VirtualCard
from devices.printer.decoder import decode_escpos
from devices.terminal.simulator import MODES, SimulatorModeError
from devices.transit_card.demo import DEMO_CARD_UID, demo_card, describe_virtual_card
from kiosk.errors import KioskError

log = logging.getLogger("kiosk.demo.panel")

#: the header every state-changing request must carry (the page's script sends it)
GUARD_HEADER = "X-Kiosk-Panel"
MAX_BODY = 16 * 1024
MAX_LATENCY_S = 120.0
#: what may be "scanned": printable ASCII, as a serial scanner in keyboard-less mode sends it
_SCAN_TEXT = re.compile(r"[\x20-\x7e]{1,128}")
_UID = re.compile(r"(?:[0-9a-f]{8}|[0-9a-f]{14})")
STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "panel.css": "text/css; charset=utf-8",
    "panel.js": "text/javascript; charset=utf-8",
}
FONT_FILES = ("Vazirmatn-Regular.ttf", "Vazirmatn-Bold.ttf")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


# --- errors --------------------------------------------------------------------------------

class PanelError(KioskError):
    status: ClassVar[int] = 400
    key = "panel.bad_request"
    fa = "درخواست نادرست است: {why}"
    en = "Bad request: {why}"

    def __init__(self, why: str) -> None:
        super().__init__(why, why=why)


class PanelNotFound(PanelError):
    status = 404
    key = "panel.not_found"
    fa = "چنین چیزی در پنل نیست: {why}"
    en = "Not found: {why}"


class PanelForbidden(PanelError):
    status = 403
    key = "panel.forbidden"
    fa = "این درخواست از صفحهٔ پنل نیامده است: {why}"
    en = "Refused, this request did not come from the panel page: {why}"


class PanelMethodNotAllowed(PanelError):
    status = 405
    key = "panel.method_not_allowed"
    fa = "این روش درخواست پذیرفته نیست: {why}"
    en = "Method not allowed: {why}"


class PanelTooLarge(PanelError):
    status = 413
    key = "panel.too_large"
    fa = "درخواست بیش از اندازه بزرگ است: {why}"
    en = "Request too large: {why}"


class PanelUnsupportedType(PanelError):
    status = 415
    key = "panel.unsupported_type"
    fa = "بدنهٔ درخواست باید JSON باشد: {why}"
    en = "The request body must be JSON: {why}"


class PanelUnavailable(PanelError):
    status = 409
    key = "panel.unavailable"
    fa = "این کار اکنون شدنی نیست: {why}"
    en = "Not possible now: {why}"


# --- the model: what the panel reads and changes ----------------------------------------------

@dataclass
class _Printed:
    png: bytes
    meta: dict[str, Any]


class Panel:
    """The actions, over one DemoEnvironment (duck-typed: card_reader, scanner, printer,
    terminal, backoffice_db_url). Thread-safe: the HTTP server calls it from many threads."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self._printed: dict[int, _Printed] = {}
        self._printed_lock = threading.Lock()
        self._engine: Any = None
        self._engine_lock = threading.Lock()

    def close(self) -> None:
        with self._engine_lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    # cards ---------------------------------------------------------------------------------
    def cards(self) -> dict[str, Any]:
        reader = self.env.card_reader
        in_field = reader.card.uid_hex if reader.card is not None else None
        rows = []
        for card in list(reader.cards.values()):
            row = describe_virtual_card(card)
            row.update(uid_bytes=len(card.uid), in_field=card.uid_hex == in_field,
                       demo=card.uid_hex == DEMO_CARD_UID, blank="error" in row)
            rows.append(row)
        rows.sort(key=lambda r: (not r["demo"], str(r["uid"])))
        return {"in_field": in_field, "cards": rows}

    def place_card(self, body: dict[str, Any]) -> dict[str, Any]:
        uid = _string(body, "uid").lower()
        if not _UID.fullmatch(uid):
            raise PanelError("uid must be 4 or 7 bytes in hex (8 or 14 hex digits)")
        reader = self.env.card_reader
        try:
            reader.place_uid(uid)
        except KeyError:
            if uid != DEMO_CARD_UID:
                raise PanelNotFound(f"no virtual card with uid {uid}") from None
            reader.place(demo_card())  # the demo card is always at hand, even in a fresh data dir
        log.info("panel: card %s placed on the reader", uid)
        return self.cards()

    def remove_card(self, body: dict[str, Any]) -> dict[str, Any]:
        self.env.card_reader.remove()
        log.info("panel: card taken off the reader")
        return self.cards()

    def new_card(self, body: dict[str, Any]) -> dict[str, Any]:
        length = body.get("uid_bytes", 4)
        if length not in (4, 7) or isinstance(length, bool):
            raise PanelError("uid_bytes must be 4 or 7")
        reader = self.env.card_reader
        card = VirtualCard.blank(fresh_uid(length, frozenset(reader.cards)))
        reader.place(card)  # kept in the reader's cards file from now on, as the demo card is
        log.info("panel: new blank card %s (%d-byte UID)", card.uid_hex, length)
        return {**self.cards(), "uid": card.uid_hex}

    def tear_next_write(self, body: dict[str, Any]) -> dict[str, Any]:
        """{"at_op": n, "after_bytes": k}: the card leaves the field during the n-th block write
        from now, that block keeping its first k new bytes (a citizen pulling the card away
        mid-write; put it back with place)."""
        unknown = set(body) - {"at_op", "after_bytes"}
        at_op, after = body.get("at_op", 1), body.get("after_bytes", 0)
        if unknown or not _whole(at_op, 1, 64) or not _whole(after, 0, 16):
            raise PanelError("at_op must be 1-64 and after_bytes 0-16")
        reader = self.env.card_reader
        if reader.card is None:
            raise PanelUnavailable("no card on the reader to pull away")
        reader.tear_next_write(at_op=at_op, after_bytes=after)
        log.info("panel: card %s leaves at block write %d", reader.card.uid_hex, at_op)
        return {**self.cards(), "tear": {"uid": reader.card.uid_hex, "at_op": at_op, "after_bytes": after}}

    # fee slips and the scanner -------------------------------------------------------------
    def _db(self) -> Any:
        with self._engine_lock:
            if self._engine is None:
                from backoffice.db import make_engine

                self._engine = make_engine(self.env.backoffice_db_url)
            return self._engine

    def slips(self, query: dict[str, list[str]]) -> dict[str, Any]:
        """The back-office's unpaid bills (the seeded owners' fee slips first), read from its
        database: not through the kiosk's API, so listing them spends none of the kiosk's
        look-up allowance and leaves no look-up audit rows."""
        limit = _int_param(query, "limit", 40, 1, 500)
        from sqlalchemy import select
        from sqlalchemy.orm import Session

        from backoffice.models import Bill, BillStatus, Owner

        stmt = (select(Bill, Owner.name_fa).outerjoin(Owner, Bill.owner_id == Owner.id)
                .where(Bill.status == BillStatus.UNPAID).order_by(Bill.id).limit(limit))
        with Session(self._db()) as session:
            rows = session.execute(stmt).all()
        return {"slips": [{
            "bill_id": bill.bill_id, "payment_id": bill.payment_id,
            "barcode": barcode_of(bill.bill_id, bill.payment_id),
            "amount_rials": bill.amount_rials, "description_fa": bill.description_fa,
            "payer_name": owner_name or bill.payer_name,
            "kind": str(bill.slip_kind) if bill.slip_kind else "utility",
            "period": bill.period_label or "",
            "due_date": bill.due_date.isoformat() if bill.due_date else None,
        } for bill, owner_name in rows]}

    def scan(self, body: dict[str, Any]) -> dict[str, Any]:
        """Hold a code under the scanner: {"code": text} or {"bill_id", "payment_id"} (the
        slip's 26-digit barcode is built from them)."""
        if "code" in body:
            code = _string(body, "code")
        else:
            bill_id, payment_id = _string(body, "bill_id"), _string(body, "payment_id")
            if not (bill_id.isascii() and bill_id.isdigit() and payment_id.isascii() and payment_id.isdigit()
                    and len(bill_id) <= 13 and len(payment_id) <= 13):
                raise PanelError("bill_id and payment_id are up to 13 digits each")
            code = barcode_of(bill_id, payment_id)
        if not _SCAN_TEXT.fullmatch(code):
            raise PanelError("code must be 1-128 printable ASCII characters")
        try:
            self.env.scanner.send(code)
        except (RuntimeError, OSError) as exc:  # unplugged
            raise PanelUnavailable(f"the scanner cannot send: {exc}") from exc
        log.info("panel: %d characters scanned", len(code))
        return {"scanned": code}

    # the printer ---------------------------------------------------------------------------
    def printer(self) -> dict[str, Any]:
        model = self.env.printer._model  # the emulator's mechanism (it has no public getter)
        with model.lock:
            state = {"paper": model.paper, "cover_open": model.cover_open, "online": model.online,
                     "jobs": len(model.jobs)}
        return state

    def set_printer(self, body: dict[str, Any]) -> dict[str, Any]:
        unknown = set(body) - {"paper", "cover_open", "online"}
        if unknown or not body:
            raise PanelError("give one or more of paper (ok|low|out), cover_open, online (true|false)")
        paper = body.get("paper")
        if "paper" in body and paper not in ("ok", "low", "out"):
            raise PanelError("paper must be ok, low or out")
        for flag in ("cover_open", "online"):
            if flag in body and not isinstance(body[flag], bool):
                raise PanelError(f"{flag} must be true or false")
        printer = self.env.printer
        if paper is not None:
            printer.set_paper(paper)
        if "cover_open" in body:
            printer.set_cover_open(body["cover_open"])
        if "online" in body:
            printer.set_online(body["online"])
        log.info("panel: printer set %s", body)
        return self.printer()

    def printed(self) -> dict[str, Any]:
        """Every job the printer emulator received, newest first, decoded once each."""
        jobs = self.env.printer.jobs
        width = self.env.printer._model.width_dots
        out = []
        for n in range(len(jobs) - 1, -1, -1):
            item = self._decoded(n, jobs[n], width)
            out.append({**item.meta, "n": n, "url": f"/api/printed/{n}.png"})
        return {"printed": out}

    def printed_png(self, n: int) -> bytes:
        jobs = self.env.printer.jobs
        if not 0 <= n < len(jobs):
            raise PanelNotFound(f"no printed document {n}")
        return self._decoded(n, jobs[n], self.env.printer._model.width_dots).png

    def _decoded(self, n: int, job: bytes, width: int) -> _Printed:
        with self._printed_lock:
            item = self._printed.get(n)
            if item is not None:
                return item
            paper = decode_escpos(job, width_dots=width, strict=False)
            buf = io.BytesIO()
            paper.image.save(buf, format="PNG")
            png = buf.getvalue()
            item = _Printed(png, {
                "bytes": len(job), "width": paper.image.width, "height": paper.image.height,
                "qr_codes": len(paper.qr_codes), "barcodes": len(paper.barcodes), "cuts": paper.cuts,
                "unhandled": len(paper.unhandled), "etag": hashlib.sha256(png).hexdigest()[:16],
            })
            self._printed[n] = item
            return item

    # the terminal --------------------------------------------------------------------------
    def terminal(self) -> dict[str, Any]:
        sim = self.env.terminal
        mode = sim.mode  # "once-decline" while a one-off answer waits for the next payment
        once = mode.removeprefix("once-") if mode.startswith("once-") else None
        standing = sim._mode if once else mode  # the simulator has no getter for it under a once-
        return {"mode": mode, "standing": standing, "next": once or standing, "once": once is not None,
                "latency_s": sim.latency_s, "modes": list(MODES)}

    def set_terminal(self, body: dict[str, Any]) -> dict[str, Any]:
        """{"answer": mode, "once": bool} and/or {"latency_s": seconds}: `once` answers only the
        next payment so, then the standing answer again."""
        unknown = set(body) - {"answer", "once", "latency_s"}
        if unknown or not ({"answer", "latency_s"} & set(body)):
            raise PanelError("give answer (with once true|false) and/or latency_s")
        mode = None
        if "answer" in body:
            answer = _string(body, "answer")
            once = body.get("once", False)
            if not isinstance(once, bool):
                raise PanelError("once must be true or false")
            if answer not in MODES:
                raise PanelError(f"answer must be one of {', '.join(MODES)}")
            mode = f"once-{answer}" if once else answer
        elif "once" in body:
            raise PanelError("once goes with answer")
        latency = None
        if "latency_s" in body:
            latency = body["latency_s"]
            if isinstance(latency, bool) or not isinstance(latency, (int, float)) \
                    or not 0 <= latency <= MAX_LATENCY_S:
                raise PanelError(f"latency_s must be a number of seconds from 0 to {MAX_LATENCY_S:g}")
        sim = self.env.terminal
        if mode is not None:
            try:
                sim.set_mode(mode)
            except SimulatorModeError as exc:  # pragma: no cover - checked above
                raise PanelError(str(exc)) from exc
        if latency is not None:
            sim.latency_s = float(latency)
        log.info("panel: terminal set %s", body)
        return self.terminal()

    # everything at once --------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"cards": self.cards(), "printer": self.printer(), "terminal": self.terminal()}


def barcode_of(bill_id: str, payment_id: str) -> str:
    """The 26-digit barcode printed on a fee slip: bill id and payment id, 13 digits each."""
    return bill_id.zfill(13) + payment_id.zfill(13)


def _string(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise PanelError(f"{name} must be a non-empty string")
    return value.strip()


def _whole(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _int_param(query: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    if name not in query:
        return default
    text = query[name][-1]
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        raise PanelError(f"{name} must be a whole number from {low} to {high}")
    return int(text)


# --- HTTP ----------------------------------------------------------------------------------

_PNG_PATH = re.compile(r"/api/printed/(\d{1,6})\.png")


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    server_version = "CityKioskPanel/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("panel %s %s", self.address_string(), fmt % args)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("GET", head=True)

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _other(self) -> None:
        self._dispatch(self.command)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _other

    # -------------------------------------------------------------------------------------
    def _dispatch(self, method: str, head: bool = False) -> None:
        try:
            self._check_host()
            url = urlsplit(self.path)
            path = url.path
            if method == "GET":
                self._get(path, parse_qs(url.query), head)
            elif method == "POST":
                self._post(path)
            else:
                raise PanelMethodNotAllowed(f"{method} {path}")
        except PanelError as exc:
            # a refused request's body may be unread: this connection cannot carry another
            self._send_json(exc.status, exc.to_dict(), head=head, close=True)
        except Exception as exc:  # noqa: BLE001 - one request's failure, answered and logged
            log.exception("panel: %s %s failed", method, self.path)
            err = KioskError(f"{type(exc).__name__}: {exc}")
            self._send_json(500, err.to_dict(), head=head, close=True)

    def _check_host(self) -> None:
        host = (self.headers.get("Host") or "").lower()
        if host not in self.server.allowed_hosts:
            raise PanelForbidden(f"Host {host!r} is not this panel")

    def _get(self, path: str, query: dict[str, list[str]], head: bool) -> None:
        panel = self.server.panel
        if path in ("/", "/index.html"):
            return self._send_static("index.html", head)
        if path == "/favicon.ico":  # browsers ask for one; the panel has none to show
            return self._send(204, b"", "image/x-icon", head=True, cache=True)
        if path.startswith("/static/"):
            name = path.removeprefix("/static/")
            if name in STATIC_FILES:
                return self._send_static(name, head)
            if name in FONT_FILES:
                data = resources.files("kiosk").joinpath("assets", "fonts", name).read_bytes()
                return self._send(200, data, "font/ttf", head=head, cache=True)
            raise PanelNotFound(path)
        match = _PNG_PATH.fullmatch(path)
        if match:
            return self._send(200, panel.printed_png(int(match.group(1))), "image/png", head=head, cache=True)
        getters: dict[str, Callable[[], dict[str, Any]]] = {
            "/api/state": panel.state, "/api/cards": panel.cards, "/api/printer": panel.printer,
            "/api/terminal": panel.terminal, "/api/printed": panel.printed,
            "/api/slips": lambda: panel.slips(query),
        }
        if path in getters:
            return self._send_json(200, getters[path](), head=head)
        if path in _POSTS:
            raise PanelMethodNotAllowed(f"GET {path}: use POST")
        raise PanelNotFound(path)

    def _post(self, path: str) -> None:
        action = _POSTS.get(path)
        if action is None:
            if path in _GET_ONLY or path.startswith("/static/") or path in ("/", "/index.html"):
                raise PanelMethodNotAllowed(f"POST {path}: use GET")
            raise PanelNotFound(path)
        if self.headers.get(GUARD_HEADER) != "1":
            raise PanelForbidden(f"the {GUARD_HEADER} header is missing")
        origin = self.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc.lower() not in self.server.allowed_hosts:
            raise PanelForbidden(f"Origin {origin!r} is not this panel")
        body = self._json_body()
        self._send_json(200, action(self.server.panel, body))

    def _json_body(self) -> dict[str, Any]:
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            if self.headers.get("Transfer-Encoding"):
                raise PanelError("send a Content-Length, not a chunked body")
            length = 0
        elif not length_text.isdigit():
            raise PanelError("bad Content-Length")
        else:
            length = int(length_text)
        if length > MAX_BODY:
            raise PanelTooLarge(f"{length} bytes; at most {MAX_BODY}")
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        if ctype != "application/json":
            raise PanelUnsupportedType(f"Content-Type {ctype or 'missing'}")
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PanelError(f"not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise PanelError("the body must be a JSON object")
        return body

    def _send_static(self, name: str, head: bool) -> None:
        data = resources.files(__package__).joinpath("static", name).read_bytes()
        self._send(200, data, STATIC_FILES[name], head=head)

    def _send_json(self, status: int, body: dict[str, Any], *, head: bool = False, close: bool = False) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self._send(status, data, "application/json; charset=utf-8", head=head, close=close)

    def _send(self, status: int, data: bytes, ctype: str, *, head: bool = False, cache: bool = False,
              close: bool = False) -> None:
        self.send_response(status, HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "")
        self.send_header("Content-Type", ctype)
        if status != 204:  # RFC 9110 §8.6: no Content-Length on a 204
            self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "private, max-age=3600" if cache else "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", CSP)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if not head:
            self.wfile.write(data)


_POSTS: dict[str, Callable[[Panel, dict[str, Any]], dict[str, Any]]] = {
    "/api/cards/place": Panel.place_card,
    "/api/cards/remove": Panel.remove_card,
    "/api/cards/new": Panel.new_card,
    "/api/cards/tear": Panel.tear_next_write,
    "/api/scan": Panel.scan,
    "/api/printer": Panel.set_printer,
    "/api/terminal": Panel.set_terminal,
}
_GET_ONLY = {"/api/state", "/api/cards", "/api/printed", "/api/slips"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False  # a port in use is an error, never a shared port
    panel: Panel
    allowed_hosts: frozenset[str]


class PanelServer:
    """The panel on http://127.0.0.1:PORT (port 0: one the OS picks). `url` after start()."""

    def __init__(self, env: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback or ipaddress.ip_address(host).version != 4:
            raise ValueError(f"the panel listens on an IPv4 loopback address only, not {host!r}")
        self.host, self.port = host, port
        self.panel = Panel(env)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> str:
        server = _Server((self.host, self.port), _Handler)
        self.port = server.server_address[1]
        server.panel = self.panel
        server.allowed_hosts = frozenset({f"{self.host}:{self.port}", f"localhost:{self.port}"})
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="kiosk-demo-panel", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.panel.close()

    def __enter__(self) -> "PanelServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def serve_panel(env: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[PanelServer]:
    """The panel over a running DemoEnvironment until the block ends."""
    with PanelServer(env, host, port) as server:
        yield server
