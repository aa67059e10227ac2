"""The payment terminal driver: nexo Sale-to-POI JSON over HTTP (requests, in an executor),
mapped onto the PaymentTerminal contract and the shared device error vocabulary."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from typing import Any, Callable, TypeVar

import requests
from urllib3.exceptions import MaxRetryError

from devices.base import (
    CommandTimeout,
    DeviceBusy,
    DeviceError,
    DeviceIdentity,
    DeviceOffline,
    DeviceState,
    HealthLevel,
    HealthReport,
    InvalidData,
    ProtocolError,
    register,
)
from devices.contracts import AmountTooLarge, MessageRef, PaymentResult, PaymentTerminal, PoiTransaction
from devices.terminal import nexo
from devices.terminal.acquirer import AcquirerProfile, profile_named
from devices.terminal.tls import classify_ssl_error, terminal_session

log = logging.getLogger("devices.terminal")

T = TypeVar("T")



class NoResponse(CommandTimeout):
    """The request reached the terminal but the connection ended without an answer: the sale
    may or may not have happened. A CommandTimeout, so callers ask transaction_status."""

    def __init__(self, message: str, *, device: str = "", error_code: str = "noResponse") -> None:
        super().__init__(message, device=device, error_code=error_code)


class WrongTerminal(InvalidData):
    """A message reference made at another terminal or by another sale system: only the
    terminal that took a sale can say what became of it."""

    def __init__(self, message: str, *, device: str = "", error_code: str = "wrongTerminal") -> None:
        super().__init__(message, device=device, error_code=error_code)


class _PayExchange:
    """One payment request's HTTP exchange, seen from the event loop: `done` once its thread has
    returned or it will never be sent (cancelled before it started)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = self._cancelled = False
        self.done = threading.Event()

    def start(self) -> bool:
        """In the executor thread, before sending: False when the payment was cancelled first."""
        with self._lock:
            self._started = not self._cancelled
            return self._started

    def never_start(self) -> None:
        """On the loop, when the awaiting task is cancelled: a request not sent yet never is."""
        with self._lock:
            if not self._started:
                self._cancelled = True
                self.done.set()


@register("nexo-http")
class NexoTerminal(PaymentTerminal):
    """Options: url (the terminal's nexo endpoint), sale_id (this kiosk), poi_id (the
    terminal), connect_timeout (seconds, default 2), acquirer (the acquirer profile, default
    "shaparak": RRN/STAN rules and amount limits, see devices/terminal/acquirer.py),
    status_by_reference (default false: only for terminals that document finding a sale by
    its SaleTransactionID when the ServiceID is lost). Transport: an https url with
    tls_fingerprint (the terminal certificate's SHA-256, pinned) or tls_ca_file; a plain http
    url only with allow_plain_http (development). See devices/terminal/tls.py."""

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        missing = [k for k in ("url", "sale_id", "poi_id") if not options.get(k)]
        if missing:
            raise InvalidData(f"{name}: nexo-http needs option(s) {', '.join(missing)}", device=name, error_code="config")
        self.url: str = str(options["url"])
        self.sale_id: str = str(options["sale_id"])
        self.poi_id: str = str(options["poi_id"])
        self.connect_timeout = float(options.get("connect_timeout", 2.0))
        self.profile: AcquirerProfile = profile_named(str(options.get("acquirer", "shaparak")), device=name)
        self.status_by_reference = bool(options.get("status_by_reference", False))
        self.capabilities = {"currency": nexo.CURRENCY, "reversal": True, "transaction_status": True, "abort": True,
                             "status_by_reference": self.status_by_reference,
                             "max_amount_rials": self.profile.max_amount_rials}
        self.tls_fingerprint = options.get("tls_fingerprint") or None
        self.tls_ca_file = options.get("tls_ca_file") or None
        self.allow_plain_http = bool(options.get("allow_plain_http", False))
        # refuse an insecure or trust-less configuration now, not at the first sale
        terminal_session(self.url, fingerprint=self.tls_fingerprint, ca_file=self.tls_ca_file,
                         allow_plain_http=self.allow_plain_http, device=name).close()
        self._session: requests.Session | None = None
        self._background: set[asyncio.Task[None]] = set()
        #: each payment's HTTP exchange, by ServiceID, for settle_cancelled: cancelling the task
        #: that awaits it does not stop a request already being sent
        self._pay_exchanges: dict[str, _PayExchange] = {}

    # --- lifecycle ----------------------------------------------------------------------------
    async def _open(self) -> None:
        if self._session is None:
            self._session = self._new_session()
        header = self._header(nexo.Category.DIAGNOSIS)
        raw = await self.run_blocking(self._post, nexo.diagnosis_request(header), 5.0)
        diag = nexo.parse_diagnosis_body(nexo.parse_response(raw, header))
        self.identity = DeviceIdentity(model=diag.model, serial=diag.serial, firmware=diag.firmware,
                                       vendor=diag.vendor or self.poi_id)

    async def _close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    # --- the contract -------------------------------------------------------------------------
    def new_ref(self, reference: str, category: str = "Payment") -> MessageRef:
        _check_reference(reference, self.name)
        if category not in MessageRef.CATEGORIES:
            raise InvalidData(f"{self.name}: no message reference of category {category!r}", device=self.name,
                              error_code="category")
        return MessageRef(category, reference, nexo.new_service_id(), self.sale_id, self.poi_id, nexo.now_iso())

    def derived_ref(self, reference: str, category: str, key: str) -> MessageRef:
        """A message reference whose ServiceID is derived from (SaleID, reference, key) rather
        than drawn at random: made again after a restart it names the same request, so a kiosk
        whose journal lost the record of a request can still ask the terminal about it. Ten
        hex characters, as a ServiceID must be (1–10); unique for every (reference, key)."""
        ref = self.new_ref(reference, category)
        digest = hashlib.sha256(f"{self.sale_id}|{reference}|{category}|{key}".encode()).hexdigest()[:10]
        return MessageRef(ref.category, ref.reference, digest, ref.sale_id, ref.poi_id, ref.timestamp)

    def lost_ref(self, reference: str) -> MessageRef | None:
        if not self.status_by_reference:
            return None
        _check_reference(reference, self.name)
        return MessageRef("Payment", reference, "", self.sale_id, self.poi_id, "")

    def _check_amount(self, amount_rials: int) -> None:
        if isinstance(amount_rials, bool) or not isinstance(amount_rials, int) or amount_rials <= 0:
            raise InvalidData(f"{self.name}: amount must be a positive whole number of rials", device=self.name,
                              error_code="amount")
        if amount_rials > self.profile.max_amount_rials:
            # refused before the terminal is asked: the schema's RequestedAmount maximum
            raise AmountTooLarge(f"{self.name}: {amount_rials} rials is over the terminal's maximum of "
                                 f"{self.profile.max_amount_rials}", device=self.name)

    async def pay(self, ref: MessageRef, amount_rials: int, *, timeout: float = 90.0) -> PaymentResult:
        self._check_ref(ref, nexo.Category.PAYMENT)
        self._check_amount(amount_rials)
        header = self._header(nexo.Category.PAYMENT, ref.service_id)
        payload = nexo.payment_request(header, ref.reference, amount_rials, ref.timestamp)

        def parse(raw: bytes) -> PaymentResult:
            body = nexo.parse_response(raw, header)
            status = nexo.parse_status(body, "PaymentResponse")
            if status.result == nexo.Result.FAILURE and status.error_condition == nexo.BUSY:
                raise DeviceBusy(f"{self.name}: terminal is busy with another sale", device=self.name, error_code="busy")
            return nexo.parse_payment_body(body, ref.reference, self.profile)

        exchange = self._pay_exchanges[ref.service_id] = _PayExchange()
        try:
            result = await self._exchange("pay", payload, timeout, parse, exchange=exchange)
        except asyncio.CancelledError:
            exchange.never_start()
            # the caller gave up (citizen pressed cancel): tell the terminal, without holding up the cancel
            log.info("pay cancelled, aborting at the terminal", extra={"tx": ref.reference, "device": self.name})
            self._in_background(self.abort(ref))
            raise
        except BaseException:
            self._pay_exchanges.pop(ref.service_id, None)
            raise
        self._pay_exchanges.pop(ref.service_id, None)
        log.info("pay %s: %s %s", result.outcome, result.masked_pan, result.error_condition,
                 extra={"tx": ref.reference, "device": self.name})
        return result

    async def transaction_status(self, ref: MessageRef, *, timeout: float = 15.0) -> PaymentResult:
        self._check_ref(ref, None)
        if not ref.service_id and not self.status_by_reference:
            raise InvalidData(f"{self.name}: this terminal finds a sale only by its ServiceID", device=self.name,
                              error_code="noServiceId")
        header = self._header(nexo.Category.TRANSACTION_STATUS)
        # our sale reference travels only where the ServiceID is lost (the documented option)
        payload = nexo.transaction_status_request(header, ref, by_reference=not ref.service_id)
        return await self._exchange(
            "transaction_status", payload, timeout,
            lambda raw: nexo.parse_transaction_status_body(nexo.parse_response(raw, header), ref, header, self.profile),
        )

    async def reverse(self, ref: MessageRef, amount_rials: int, original: PoiTransaction, *,
                      timeout: float = 30.0) -> PaymentResult:
        self._check_ref(ref, nexo.Category.REVERSAL)
        self._check_amount(amount_rials)
        if not isinstance(original, PoiTransaction) or not original.transaction_id or not original.timestamp:
            raise InvalidData(f"{self.name}: a reversal needs the original POITransactionID and its TimeStamp",
                              device=self.name, error_code="original")
        header = self._header(nexo.Category.REVERSAL, ref.service_id)
        payload = nexo.reversal_request(header, original, amount_rials, ref.reference, ref.timestamp)

        def parse(raw: bytes) -> PaymentResult:
            body = nexo.parse_response(raw, header)
            status = nexo.parse_status(body, "ReversalResponse")
            if status.result == nexo.Result.FAILURE and status.error_condition == nexo.BUSY:
                # the terminal did not take the request up: not a refusal, asked again later
                raise DeviceBusy(f"{self.name}: terminal is busy; reversal not taken", device=self.name,
                                 error_code="busy")
            return nexo.parse_reversal_body(body, ref.reference)

        result = await self._exchange("reverse", payload, timeout, parse)
        log.info("reverse: %s %s", result.outcome, result.error_condition, extra={"tx": ref.reference, "device": self.name})
        return result

    async def abort(self, ref: MessageRef) -> None:
        """Sent outside the command lock: it must reach the terminal while `pay` is waiting."""
        self._check_ref(ref, nexo.Category.PAYMENT)
        header = self._header(nexo.Category.ABORT)
        payload = nexo.abort_request(header, ref)
        await self.run_blocking(self._post, payload, self.connect_timeout + 3.0)
        self.counters["abort_sent"] += 1

    async def check_health(self, level: HealthLevel = HealthLevel.INTERNAL) -> HealthReport:
        if level == HealthLevel.INTERNAL:
            return await super().check_health(level)
        header = self._header(nexo.Category.DIAGNOSIS)
        try:
            diag = await self._exchange(
                "diagnosis", nexo.diagnosis_request(header), 5.0,
                lambda raw: nexo.parse_diagnosis_body(nexo.parse_response(raw, header)),
            )
        except DeviceError as exc:
            return HealthReport(self.name, level, False, self.state, str(exc), {"error": exc.to_dict()})
        ok = diag.global_status == "OK"
        return HealthReport(self.name, level, ok, self.state, f"GlobalStatus {diag.global_status}",
                            {"poi_id": self.poi_id, "serial": diag.serial, "model": diag.model})

    # --- plumbing -----------------------------------------------------------------------------
    def _header(self, category: nexo.Category, service_id: str | None = None) -> nexo.Header:
        return nexo.Header(category, service_id or nexo.new_service_id(), self.sale_id, self.poi_id)

    def _check_ref(self, ref: MessageRef, category: nexo.Category | None) -> None:
        """A reference made for this kiosk and this terminal, of the right category: a
        terminal asked about another terminal's sale would truthfully answer NotFound, and
        that must never read as "not charged"."""
        if not isinstance(ref, MessageRef):
            raise InvalidData(f"{self.name}: expected a MessageRef, got {type(ref).__name__}", device=self.name,
                              error_code="reference")
        _check_reference(ref.reference, self.name)
        if category is not None and not ref.service_id:
            raise InvalidData(f"{self.name}: a {category} request needs its own ServiceID", device=self.name,
                              error_code="noServiceId")
        if category is not None and ref.category != str(category):
            raise InvalidData(f"{self.name}: a {ref.category} reference cannot be used for a {category}",
                              device=self.name, error_code="category")
        if ref.sale_id != self.sale_id or ref.poi_id != self.poi_id:
            raise WrongTerminal(
                f"{self.name}: the request was made by sale system {ref.sale_id!r} at terminal {ref.poi_id!r};"
                f" this is {self.sale_id!r} at {self.poi_id!r}", device=self.name)

    async def settle_cancelled(self, ref: MessageRef, *, timeout: float = 90.0) -> bool:
        """Abort, and again each second, until the cancelled payment's own HTTP exchange has
        returned: the terminal has then seen the request and answered it (Aborted, or a sale
        that beat the abort), so the TransactionStatus asked next is about a request it knows.
        The payment request and the abort travel on separate HTTP requests, so an abort (and a
        status query) can arrive first; the repeated abort catches a request that arrives
        late. False when the exchange is still running after `timeout`."""
        exchange = self._pay_exchanges.get(ref.service_id)
        deadline = time.monotonic() + timeout
        while True:
            try:
                await self.abort(ref)
            except DeviceError as exc:
                log.warning("abort failed: %s", exc, extra={"tx": ref.reference, "device": self.name})
            if exchange is None:
                return True  # no exchange of ours (made before a restart): the abort is all we can do
            again = min(deadline, time.monotonic() + 1.0)
            while not exchange.done.is_set() and time.monotonic() < again:
                await asyncio.sleep(0.05)
            if exchange.done.is_set():
                self._pay_exchanges.pop(ref.service_id, None)
                return True
            if time.monotonic() >= deadline:
                log.error("cancelled payment still unanswered after %.0fs", timeout,
                          extra={"tx": ref.reference, "device": self.name})
                return False

    async def _exchange(self, name: str, payload: dict[str, Any], timeout: float, parse: Callable[[bytes], T],
                        exchange: _PayExchange | None = None) -> T:
        if self.state == DeviceState.OFFLINE:
            await self.open()  # the next call after an outage reconnects (raises DeviceOffline if still down)

        def post() -> bytes:
            if exchange is not None and not exchange.start():
                raise asyncio.CancelledError  # cancelled before it was sent: it never will be
            try:
                return self._post(payload, timeout + 1.0)
            finally:
                if exchange is not None:
                    exchange.done.set()

        async def op() -> T:
            # requests' own read timeout sits just past ours so the executor thread ends soon after
            raw = await self.run_blocking(post)
            return parse(raw)

        try:
            result = await self.command(name, op, timeout=timeout)
        except DeviceBusy:
            if self.state == DeviceState.HARDWARE_ERROR:
                self._set_state(DeviceState.ONLINE)  # "Busy" is a well-formed answer too
            raise
        if self.state == DeviceState.HARDWARE_ERROR:
            self._set_state(DeviceState.ONLINE)  # a well-formed answer clears a protocol fault
        return result

    def _post(self, payload: dict[str, Any], read_timeout: float) -> bytes:
        """One blocking HTTP exchange with every transport failure typed."""
        session = self._session or self._new_session()
        self._session = session
        try:
            resp = session.post(self.url, json=payload, timeout=(self.connect_timeout, read_timeout))
        except requests.exceptions.SSLError as exc:
            # a ConnectionError subclass, so first: a certificate that is not the pinned one
            # (nothing was sent) is told from a TLS failure after the request went out (the
            # sale may have happened: NoResponse, so the caller asks the status)
            raise classify_ssl_error(exc, self.name, may_have_sent=NoResponse) from exc
        except requests.ConnectTimeout as exc:
            raise DeviceOffline(f"{self.name}: terminal unreachable at {self.url}", device=self.name,
                                error_code="connectTimeout") from exc
        except requests.ReadTimeout as exc:
            raise CommandTimeout(f"{self.name}: terminal did not answer in {read_timeout}s", device=self.name,
                                 error_code="readTimeout") from exc
        except requests.ConnectionError as exc:
            if exc.args and isinstance(exc.args[0], MaxRetryError):
                # never connected, so nothing was sent: the terminal is down
                raise DeviceOffline(f"{self.name}: cannot connect to {self.url}", device=self.name,
                                    error_code="connectionRefused") from exc
            raise NoResponse(f"{self.name}: connection dropped before the terminal answered", device=self.name) from exc
        except requests.RequestException as exc:
            raise ProtocolError(f"{self.name}: HTTP failure: {type(exc).__name__}", device=self.name,
                                error_code="http") from exc
        if resp.status_code != 200:
            raise ProtocolError(f"{self.name}: terminal answered HTTP {resp.status_code}", device=self.name,
                                error_code="httpStatus")
        return resp.content

    def _new_session(self) -> requests.Session:
        return terminal_session(self.url, fingerprint=self.tls_fingerprint, ca_file=self.tls_ca_file,
                                allow_plain_http=self.allow_plain_http, device=self.name)

    def _in_background(self, coro: Any) -> None:
        async def quietly() -> None:
            try:
                await coro
            except DeviceError as exc:
                log.warning("background abort failed: %s", exc, extra={"device": self.name})

        task = asyncio.get_running_loop().create_task(quietly())
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _check_reference(reference: str, device: str) -> None:
    if not isinstance(reference, str) or not reference or len(reference) > 64:
        raise InvalidData(f"{device}: a sale reference must be a non-empty string of at most 64 characters",
                          device=device, error_code="reference")

