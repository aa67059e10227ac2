"""The payment terminal driver: nexo Sale-to-POI JSON over HTTP (requests, in an executor),
mapped onto the PaymentTerminal contract and the shared device error vocabulary."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
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
from devices.contracts import PaymentOutcome, PaymentResult, PaymentTerminal
from devices.terminal import nexo

log = logging.getLogger("devices.terminal")

T = TypeVar("T")

_REMEMBERED = 1000  # references whose ServiceID / POI transaction id we keep in memory


class NoResponse(CommandTimeout):
    """The request reached the terminal but the connection ended without an answer: the sale
    may or may not have happened. A CommandTimeout, so callers ask transaction_status."""

    def __init__(self, message: str, *, device: str = "", error_code: str = "noResponse") -> None:
        super().__init__(message, device=device, error_code=error_code)


@register("nexo-http")
class NexoTerminal(PaymentTerminal):
    """Options: url (the terminal's nexo endpoint), sale_id (this kiosk), poi_id (the
    terminal), connect_timeout (seconds, default 2)."""

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        missing = [k for k in ("url", "sale_id", "poi_id") if not options.get(k)]
        if missing:
            raise InvalidData(f"{name}: nexo-http needs option(s) {', '.join(missing)}", device=name, error_code="config")
        self.url: str = str(options["url"])
        self.sale_id: str = str(options["sale_id"])
        self.poi_id: str = str(options["poi_id"])
        self.connect_timeout = float(options.get("connect_timeout", 2.0))
        self.capabilities = {"currency": nexo.CURRENCY, "reversal": True, "transaction_status": True, "abort": True}
        self._session: requests.Session | None = None
        self._service_ids: OrderedDict[str, str] = OrderedDict()
        self._poi_refs: OrderedDict[str, str] = OrderedDict()
        self._background: set[asyncio.Task[None]] = set()

    # --- lifecycle ----------------------------------------------------------------------------
    async def _open(self) -> None:
        if self._session is None:
            self._session = requests.Session()
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
    async def pay(self, reference: str, amount_rials: int, *, timeout: float = 90.0) -> PaymentResult:
        _check_reference(reference, self.name)
        if isinstance(amount_rials, bool) or not isinstance(amount_rials, int) or amount_rials <= 0:
            raise InvalidData(f"{self.name}: amount must be a positive whole number of rials", device=self.name,
                              error_code="amount")
        header = self._header(nexo.Category.PAYMENT)
        _remember(self._service_ids, reference, header.service_id)
        payload = nexo.payment_request(header, reference, amount_rials)

        def parse(raw: bytes) -> PaymentResult:
            body = nexo.parse_response(raw, header)
            status = nexo.parse_status(body, "PaymentResponse")
            if status.result == nexo.Result.FAILURE and status.error_condition == nexo.BUSY:
                raise DeviceBusy(f"{self.name}: terminal is busy with another sale", device=self.name, error_code="busy")
            return nexo.parse_payment_body(body, reference)

        try:
            result = await self._exchange("pay", payload, timeout, parse)
        except asyncio.CancelledError:
            # the caller gave up (citizen pressed cancel): tell the terminal, without holding up the cancel
            log.info("pay cancelled, aborting at the terminal", extra={"tx": reference, "device": self.name})
            self._in_background(self.abort(reference))
            raise
        if result.poi_reference:
            _remember(self._poi_refs, reference, result.poi_reference)
        log.info("pay %s: %s %s", result.outcome, result.masked_pan, result.error_condition,
                 extra={"tx": reference, "device": self.name})
        return result

    async def transaction_status(self, reference: str, *, timeout: float = 15.0) -> PaymentResult:
        _check_reference(reference, self.name)
        header = self._header(nexo.Category.TRANSACTION_STATUS)
        # the ServiceID is known only if this process sent the pay; the reference always travels
        payload = nexo.transaction_status_request(header, ref_service_id=self._service_ids.get(reference),
                                                  reference=reference)
        result = await self._exchange(
            "transaction_status", payload, timeout,
            lambda raw: nexo.parse_transaction_status_body(nexo.parse_response(raw, header), reference, header),
        )
        if result.poi_reference:
            _remember(self._poi_refs, reference, result.poi_reference)
        return result

    async def reverse(self, reference: str, amount_rials: int, *, timeout: float = 30.0) -> PaymentResult:
        _check_reference(reference, self.name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        poi_ref = self._poi_refs.get(reference)
        if poi_ref is None:
            status = await self.transaction_status(reference, timeout=min(timeout / 2, 15.0))
            if status.outcome != PaymentOutcome.APPROVED:
                # reversed already, never charged, declined or still running: nothing to send
                return status
            poi_ref = status.poi_reference
        header = self._header(nexo.Category.REVERSAL)
        payload = nexo.reversal_request(header, poi_ref, amount_rials, reference)
        result = await self._exchange(
            "reverse", payload, max(deadline - loop.time(), 0.5),
            lambda raw: nexo.parse_reversal_body(nexo.parse_response(raw, header), reference),
        )
        log.info("reverse: %s %s", result.outcome, result.error_condition, extra={"tx": reference, "device": self.name})
        return result

    async def abort(self, reference: str) -> None:
        """Sent outside the command lock: it must reach the terminal while `pay` is waiting."""
        header = self._header(nexo.Category.ABORT)
        payload = nexo.abort_request(header, ref_service_id=self._service_ids.get(reference), reference=reference)
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
    def _header(self, category: nexo.Category) -> nexo.Header:
        return nexo.Header(category, nexo.new_service_id(), self.sale_id, self.poi_id)

    async def _exchange(self, name: str, payload: dict[str, Any], timeout: float, parse: Callable[[bytes], T]) -> T:
        if self.state == DeviceState.OFFLINE:
            await self.open()  # the next call after an outage reconnects (raises DeviceOffline if still down)

        async def op() -> T:
            # requests' own read timeout sits just past ours so the executor thread ends soon after
            raw = await self.run_blocking(self._post, payload, timeout + 1.0)
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
        session = self._session or requests.Session()
        self._session = session
        try:
            resp = session.post(self.url, json=payload, timeout=(self.connect_timeout, read_timeout))
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


def _remember(store: OrderedDict[str, str], key: str, value: str) -> None:
    store[key] = value
    store.move_to_end(key)
    while len(store) > _REMEMBERED:
        store.popitem(last=False)
