"""nexo Sale-to-POI messages in the Terminal API JSON shape: builders for both directions and a
strict parser that turns anything off-protocol into NexoParseError (see docs/payment-terminal.md).

Conventions fixed here (nexo leaves them open or we extend it):
  - Amounts: nexo amounts are decimals; IRR has no minor unit (ISO 4217 exponent 0), so every
    amount on our wire is an integer number of rials. A float is accepted only when integral.
  - RRN and STAN (the Iranian acquirer's reference numbers) travel in
    PaymentAcquirerData.AcquirerTransactionID.TransactionID (RRN) and in
    Response.AdditionalResponse as the URL-encoded pairs "rrn=<12 digits>&stan=<6 digits>".
  - TransactionStatus extension: MessageReference may carry "SaleTransactionID"
    {"TransactionID": reference} so a restarted sale system that lost the ServiceID can still
    ask what became of a sale by its own reference alone.
  - A reversed sale's status answers a RepeatedMessageResponse of MessageCategory Reversal.
  - Identity: DiagnosisResponse carries POISystemData (borrowed from LoginResponse).
"""

from __future__ import annotations

import enum
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode

from devices.base import ProtocolError
from devices.contracts import PaymentOutcome, PaymentResult

PROTOCOL_VERSION = "3.0"
CURRENCY = "IRR"
MAX_AMOUNT_RIALS = 10**15  # far above any municipal fee; guards float precision (2**53)

#: longest MaskedPan we pass on (a PAN is at most 19 digits; masks may add separators)
MAX_MASKED_PAN = 32


class Category(enum.StrEnum):
    PAYMENT = "Payment"
    REVERSAL = "Reversal"
    TRANSACTION_STATUS = "TransactionStatus"
    ABORT = "Abort"
    DIAGNOSIS = "Diagnosis"


class Result(enum.StrEnum):
    SUCCESS = "Success"
    FAILURE = "Failure"
    PARTIAL = "Partial"


# nexo ErrorCondition values we produce or act on
BUSY = "Busy"
NOT_FOUND = "NotFound"
IN_PROGRESS = "InProgress"
REFUSAL = "Refusal"
ABORTED = "Aborted"
NOT_ALLOWED = "NotAllowed"
MESSAGE_FORMAT = "MessageFormat"


class NexoParseError(ProtocolError):
    """A terminal message that breaks the protocol: bad JSON, missing or mistyped field,
    or an answer to a different request."""

    def __init__(self, message: str, *, device: str = "", error_code: str = "nexoParse") -> None:
        super().__init__(message, device=device, error_code=error_code)


class NexoHeaderMismatch(NexoParseError):
    """The response header names another request (ServiceID, SaleID, POIID or category)."""


@dataclass(frozen=True)
class Header:
    category: Category
    service_id: str
    sale_id: str
    poi_id: str
    message_type: str = "Request"

    def to_json(self) -> dict[str, Any]:
        return {
            "ProtocolVersion": PROTOCOL_VERSION,
            "MessageClass": "Service",
            "MessageCategory": str(self.category),
            "MessageType": self.message_type,
            "ServiceID": self.service_id,
            "SaleID": self.sale_id,
            "POIID": self.poi_id,
        }

    def response(self) -> Header:
        return Header(self.category, self.service_id, self.sale_id, self.poi_id, "Response")


def new_service_id() -> str:
    """nexo: unique per request within the sale system, at most 10 characters."""
    return secrets.token_hex(5)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _tx(transaction_id: str, timestamp: str | None = None) -> dict[str, str]:
    return {"TransactionID": transaction_id, "TimeStamp": timestamp or now_iso()}


def _envelope(kind: str, header: Header, body_name: str, body: dict[str, Any]) -> dict[str, Any]:
    return {kind: {"MessageHeader": header.to_json(), body_name: body}}


# --- requests (sale system → terminal) -----------------------------------------------------


def payment_request(header: Header, reference: str, amount_rials: int, timestamp: str | None = None) -> dict[str, Any]:
    _check_amount(amount_rials)
    return _envelope("SaleToPOIRequest", header, "PaymentRequest", {
        "SaleData": {"SaleTransactionID": _tx(reference, timestamp)},
        "PaymentTransaction": {"AmountsReq": {"Currency": CURRENCY, "RequestedAmount": amount_rials}},
    })


def reversal_request(header: Header, poi_transaction_id: str, amount_rials: int, reference: str) -> dict[str, Any]:
    _check_amount(amount_rials)
    return _envelope("SaleToPOIRequest", header, "ReversalRequest", {
        "OriginalPOITransaction": {"POITransactionID": _tx(poi_transaction_id)},
        "ReversalReason": "MerchantCancel",
        "ReversedAmount": amount_rials,
        "SaleData": {"SaleTransactionID": _tx(reference)},
    })


def _message_reference(header: Header, ref_service_id: str | None, reference: str | None) -> dict[str, Any]:
    ref: dict[str, Any] = {"MessageCategory": "Payment", "SaleID": header.sale_id}
    if ref_service_id:
        ref["ServiceID"] = ref_service_id
    if reference:
        ref["SaleTransactionID"] = {"TransactionID": reference}  # extension, see module doc
    return ref


def transaction_status_request(header: Header, *, ref_service_id: str | None, reference: str | None) -> dict[str, Any]:
    return _envelope("SaleToPOIRequest", header, "TransactionStatusRequest", {
        "MessageReference": _message_reference(header, ref_service_id, reference),
    })


def abort_request(header: Header, *, ref_service_id: str | None, reference: str | None, reason: str = "MerchantAbort") -> dict[str, Any]:
    return _envelope("SaleToPOIRequest", header, "AbortRequest", {
        "AbortReason": reason,
        "MessageReference": _message_reference(header, ref_service_id, reference),
    })


def diagnosis_request(header: Header) -> dict[str, Any]:
    return _envelope("SaleToPOIRequest", header, "DiagnosisRequest", {"HostDiagnosisFlag": False})


# --- responses (terminal → sale system), used by the simulator ----------------------------------


@dataclass(frozen=True)
class Sale:
    """One sale as the terminal remembers it (the simulator's ledger row)."""

    reference: str
    poi_transaction_id: str
    amount_rials: int
    status: str  # approved | declined | reversed
    masked_pan: str = ""
    rrn: str = ""
    stan: str = ""
    approval_code: str = ""
    error_condition: str = ""
    sale_timestamp: str = ""
    poi_timestamp: str = ""
    service_id: str = ""
    sale_id: str = ""


def _response(result: Result, error_condition: str = "", additional: dict[str, str] | None = None) -> dict[str, Any]:
    resp: dict[str, Any] = {"Result": str(result)}
    if error_condition:
        resp["ErrorCondition"] = error_condition
    if additional:
        resp["AdditionalResponse"] = urlencode(additional)
    return resp


def payment_response_body(sale: Sale) -> dict[str, Any]:
    ok = sale.status in ("approved", "reversed")
    body: dict[str, Any] = {
        "Response": _response(Result.SUCCESS, additional={"rrn": sale.rrn, "stan": sale.stan})
        if ok else _response(Result.FAILURE, sale.error_condition or REFUSAL),
        "SaleData": {"SaleTransactionID": _tx(sale.reference, sale.sale_timestamp)},
        "POIData": {"POITransactionID": _tx(sale.poi_transaction_id, sale.poi_timestamp)},
    }
    if ok:
        body["PaymentResult"] = {
            "AmountsResp": {"AuthorizedAmount": sale.amount_rials, "Currency": CURRENCY},
            "PaymentInstrumentData": {"CardData": {"MaskedPan": sale.masked_pan}},
            "PaymentAcquirerData": {
                "ApprovalCode": sale.approval_code,
                "AcquirerTransactionID": _tx(sale.rrn, sale.poi_timestamp),
            },
        }
    return body


def failure_body(error_condition: str, reference: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {"Response": _response(Result.FAILURE, error_condition)}
    if reference:
        body["SaleData"] = {"SaleTransactionID": _tx(reference)}
    return body


def reversal_response_body(sale: Sale) -> dict[str, Any]:
    return {
        "Response": _response(Result.SUCCESS, additional={"rrn": sale.rrn, "stan": sale.stan}),
        "POIData": {"POITransactionID": _tx(sale.poi_transaction_id, sale.poi_timestamp)},
        "ReversedAmount": sale.amount_rials,
    }


def status_response_body(header: Header, sale: Sale | None, error_condition: str = "") -> dict[str, Any]:
    """TransactionStatusResponse: the repeated original answer, or Failure NotFound/InProgress."""
    if sale is None:
        return {"Response": _response(Result.FAILURE, error_condition or NOT_FOUND)}
    reversed_ = sale.status == "reversed"
    repeated_header = Header(
        Category.REVERSAL if reversed_ else Category.PAYMENT, sale.service_id or "0", header.sale_id, header.poi_id, "Response"
    )
    inner = ("ReversalResponse", reversal_response_body(sale)) if reversed_ else ("PaymentResponse", payment_response_body(sale))
    return {
        "Response": _response(Result.SUCCESS),
        "MessageReference": {"MessageCategory": "Payment", "SaleID": header.sale_id, "ServiceID": sale.service_id},
        "RepeatedMessageResponse": {
            "MessageHeader": repeated_header.to_json(),
            "RepeatedResponseMessageBody": {inner[0]: inner[1]},
        },
    }


def diagnosis_response_body(global_status: str, identity: dict[str, str]) -> dict[str, Any]:
    return {
        "Response": _response(Result.SUCCESS),
        "POIStatus": {"GlobalStatus": global_status},
        "POISystemData": {
            "POITerminalData": {"POISerialNumber": identity.get("serial", "")},
            "POISoftware": {
                "ManufacturerID": identity.get("vendor", ""),
                "ApplicationName": identity.get("model", ""),
                "SoftwareVersion": identity.get("firmware", ""),
            },
        },
    }


def response_message(header: Header, body_name: str, body: dict[str, Any]) -> dict[str, Any]:
    return _envelope("SaleToPOIResponse", header.response(), body_name, body)


# --- strict parsing -----------------------------------------------------------------------


def _fail(msg: str) -> NexoParseError:
    return NexoParseError(msg)


def _obj(d: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    v = d.get(key)
    if not isinstance(v, dict):
        raise _fail(f"{where}.{key}: expected an object, got {type(v).__name__}")
    return v


def _str(d: dict[str, Any], key: str, where: str, *, optional: bool = False) -> str:
    v = d.get(key)
    if v is None and optional:
        return ""
    if not isinstance(v, str):
        raise _fail(f"{where}.{key}: expected a string, got {type(v).__name__}")
    return v


def _amount(d: dict[str, Any], key: str, where: str) -> int:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _fail(f"{where}.{key}: expected an amount, got {type(v).__name__}")
    if isinstance(v, float):
        # nexo allows decimals; rials have none, so only an integral value is a valid IRR amount
        if not v.is_integer() or abs(v) > MAX_AMOUNT_RIALS:
            raise _fail(f"{where}.{key}: IRR amounts are whole rials")
        v = int(v)
    if v < 0 or v > MAX_AMOUNT_RIALS:
        raise _fail(f"{where}.{key}: amount out of range")
    return v


def _check_amount(amount_rials: int) -> None:
    if isinstance(amount_rials, bool) or not isinstance(amount_rials, int) or not 0 < amount_rials <= MAX_AMOUNT_RIALS:
        raise ValueError(f"amount must be a positive whole number of rials, got {amount_rials!r}")


def _timestamp(d: dict[str, Any], key: str, where: str) -> str:
    v = _str(d, key, where)
    try:
        datetime.fromisoformat(v)
    except ValueError:
        raise _fail(f"{where}.{key}: not an ISO 8601 time") from None
    return v


def decode(raw: bytes | str) -> dict[str, Any]:
    """JSON text → dict, with every decoding failure typed as NexoParseError."""
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise _fail(f"not JSON: {type(exc).__name__}") from None
    if not isinstance(obj, dict):
        raise _fail("message is not a JSON object")
    return obj


def parse_header(envelope: dict[str, Any], where: str) -> Header:
    h = _obj(envelope, "MessageHeader", where)
    w = where + ".MessageHeader"
    if _str(h, "MessageClass", w) != "Service":
        raise _fail(f"{w}.MessageClass must be Service")
    try:
        category = Category(_str(h, "MessageCategory", w))
    except ValueError:
        raise _fail(f"{w}.MessageCategory unknown") from None
    mtype = _str(h, "MessageType", w)
    if mtype not in ("Request", "Response"):
        raise _fail(f"{w}.MessageType must be Request or Response")
    service_id = _str(h, "ServiceID", w)
    if not 1 <= len(service_id) <= 10:
        raise _fail(f"{w}.ServiceID must be 1-10 characters")
    return Header(category, service_id, _str(h, "SaleID", w), _str(h, "POIID", w), mtype)


_BODY = {
    Category.PAYMENT: "Payment",
    Category.REVERSAL: "Reversal",
    Category.TRANSACTION_STATUS: "TransactionStatus",
    Category.ABORT: "Abort",
    Category.DIAGNOSIS: "Diagnosis",
}


def parse_response(raw: bytes | str, expected: Header) -> dict[str, Any]:
    """Check the envelope and header of an answer to `expected`; return its body."""
    obj = decode(raw)
    env = _obj(obj, "SaleToPOIResponse", "")
    header = parse_header(env, "SaleToPOIResponse")
    if header.message_type != "Response":
        raise _fail("MessageType must be Response")
    for field_name, got, want in (
        ("MessageCategory", header.category, expected.category),
        ("ServiceID", header.service_id, expected.service_id),
        ("SaleID", header.sale_id, expected.sale_id),
        ("POIID", header.poi_id, expected.poi_id),
    ):
        if got != want:
            raise NexoHeaderMismatch(f"response {field_name} {got!r} does not match request {want!r}", error_code="headerMismatch")
    body = _obj(env, _BODY[expected.category] + "Response", "SaleToPOIResponse")
    return body


@dataclass(frozen=True)
class ResponseStatus:
    result: Result
    error_condition: str
    additional: dict[str, str]


def parse_status(body: dict[str, Any], where: str) -> ResponseStatus:
    r = _obj(body, "Response", where)
    try:
        result = Result(_str(r, "Result", where + ".Response"))
    except ValueError:
        raise _fail(f"{where}.Response.Result unknown") from None
    cond = _str(r, "ErrorCondition", where + ".Response", optional=True)
    if result == Result.FAILURE and not cond:
        raise _fail(f"{where}.Response: a Failure needs an ErrorCondition")
    add_raw = _str(r, "AdditionalResponse", where + ".Response", optional=True)
    try:
        additional = dict(parse_qsl(add_raw, strict_parsing=bool(add_raw)))
    except ValueError:
        raise _fail(f"{where}.Response.AdditionalResponse is not key=value pairs") from None
    return ResponseStatus(result, cond, additional)


def _digits(value: str, n: int, what: str) -> str:
    if len(value) != n or not value.isascii() or not value.isdigit():
        raise _fail(f"{what} must be {n} digits")
    return value


def parse_payment_body(body: dict[str, Any], reference: str, where: str = "PaymentResponse") -> PaymentResult:
    """PaymentResponse → PaymentResult. Success needs amount, masked PAN, RRN and STAN."""
    status = parse_status(body, where)
    sale_tx = body.get("SaleData")
    if sale_tx is not None:
        got_ref = _str(_obj(_obj(body, "SaleData", where), "SaleTransactionID", where + ".SaleData"), "TransactionID", where)
        if got_ref != reference:
            raise NexoHeaderMismatch(f"{where} is about another sale", error_code="headerMismatch")
    if status.result == Result.PARTIAL:
        raise _fail(f"{where}: partial approval is not accepted for IRR fees")
    if status.result == Result.FAILURE:
        poi_ref = ""
        if isinstance(body.get("POIData"), dict):
            poi_ref = _str(_obj(body["POIData"], "POITransactionID", where + ".POIData"), "TransactionID", where)
        return PaymentResult(PaymentOutcome.DECLINED, reference, poi_reference=poi_ref, error_condition=status.error_condition)
    poi = _obj(_obj(body, "POIData", where), "POITransactionID", where + ".POIData")
    poi_ref = _str(poi, "TransactionID", where + ".POIData.POITransactionID")
    _timestamp(poi, "TimeStamp", where + ".POIData.POITransactionID")
    pr = _obj(body, "PaymentResult", where)
    amounts = _obj(pr, "AmountsResp", where + ".PaymentResult")
    amount = _amount(amounts, "AuthorizedAmount", where + ".PaymentResult.AmountsResp")
    if _str(amounts, "Currency", where + ".PaymentResult.AmountsResp") != CURRENCY:
        raise _fail(f"{where}: currency must be {CURRENCY}")
    card = _obj(_obj(pr, "PaymentInstrumentData", where), "CardData", where)
    # Passed on as the terminal wrote it: whether it is masked enough to keep is the kiosk's
    # one card-number rule (kiosk.sensitive), applied before anything is journaled or printed.
    pan = _str(card, "MaskedPan", where + ".CardData")
    if len(pan) > MAX_MASKED_PAN:
        raise _fail(f"{where}: MaskedPan longer than {MAX_MASKED_PAN} characters")
    acq = _obj(pr, "PaymentAcquirerData", where + ".PaymentResult")
    approval = _str(acq, "ApprovalCode", where + ".PaymentAcquirerData", optional=True)
    rrn = _digits(_str(_obj(acq, "AcquirerTransactionID", where), "TransactionID", where + ".AcquirerTransactionID"), 12, "RRN")
    if status.additional.get("rrn", rrn) != rrn:
        raise _fail(f"{where}: RRN differs between AdditionalResponse and AcquirerTransactionID")
    stan = _digits(status.additional.get("stan", ""), 6, "STAN")
    return PaymentResult(
        PaymentOutcome.APPROVED, reference, amount, poi_ref, rrn, stan, pan,
        message=f"approval {approval}" if approval else "",
    )


def parse_reversal_body(body: dict[str, Any], reference: str, where: str = "ReversalResponse") -> PaymentResult:
    status = parse_status(body, where)
    if status.result != Result.SUCCESS:
        outcome = PaymentOutcome.NOT_FOUND if status.error_condition == NOT_FOUND else PaymentOutcome.DECLINED
        return PaymentResult(outcome, reference, error_condition=status.error_condition)
    poi_ref = _str(_obj(_obj(body, "POIData", where), "POITransactionID", where), "TransactionID", where)
    amount = _amount(body, "ReversedAmount", where)
    return PaymentResult(
        PaymentOutcome.REVERSED, reference, amount, poi_ref,
        rrn=status.additional.get("rrn", ""), stan=status.additional.get("stan", ""),
    )


def parse_transaction_status_body(body: dict[str, Any], reference: str, expected: Header) -> PaymentResult:
    where = "TransactionStatusResponse"
    status = parse_status(body, where)
    if status.result != Result.SUCCESS:
        cond = status.error_condition
        if cond == NOT_FOUND:
            return PaymentResult(PaymentOutcome.NOT_FOUND, reference, error_condition=cond)
        if cond == IN_PROGRESS:
            return PaymentResult(PaymentOutcome.IN_PROGRESS, reference, error_condition=cond)
        if cond == BUSY:
            return PaymentResult(PaymentOutcome.IN_PROGRESS, reference, error_condition=cond)
        raise _fail(f"{where}: unexpected ErrorCondition {cond!r}")
    rep = _obj(body, "RepeatedMessageResponse", where)
    header = parse_header(rep, where + ".RepeatedMessageResponse")
    if header.sale_id != expected.sale_id or header.poi_id != expected.poi_id:
        raise NexoHeaderMismatch(f"{where}: repeated message is from another sale system or terminal", error_code="headerMismatch")
    inner = _obj(rep, "RepeatedResponseMessageBody", where)
    if header.category == Category.PAYMENT:
        return parse_payment_body(_obj(inner, "PaymentResponse", where), reference, where + ".PaymentResponse")
    if header.category == Category.REVERSAL:
        return parse_reversal_body(_obj(inner, "ReversalResponse", where), reference, where + ".ReversalResponse")
    raise _fail(f"{where}: repeated message of category {header.category} is not a sale")


@dataclass(frozen=True)
class Diagnosis:
    global_status: str
    serial: str
    model: str
    vendor: str
    firmware: str


def parse_diagnosis_body(body: dict[str, Any]) -> Diagnosis:
    where = "DiagnosisResponse"
    status = parse_status(body, where)
    if status.result != Result.SUCCESS:
        return Diagnosis(status.error_condition, "", "", "", "")
    gs = _str(_obj(body, "POIStatus", where), "GlobalStatus", where + ".POIStatus")
    sysdata = body.get("POISystemData")
    if sysdata is None:
        return Diagnosis(gs, "", "", "", "")
    if not isinstance(sysdata, dict):
        raise _fail(f"{where}.POISystemData: expected an object")
    term = _obj(sysdata, "POITerminalData", where)
    soft = _obj(sysdata, "POISoftware", where)
    return Diagnosis(
        gs,
        _str(term, "POISerialNumber", where, optional=True),
        _str(soft, "ApplicationName", where, optional=True),
        _str(soft, "ManufacturerID", where, optional=True),
        _str(soft, "SoftwareVersion", where, optional=True),
    )


# --- request parsing (the simulator's side) ------------------------------------------------------


@dataclass(frozen=True)
class ParsedRequest:
    header: Header
    body_name: str
    body: dict[str, Any]


def parse_request(raw: bytes | str) -> ParsedRequest:
    obj = decode(raw)
    env = _obj(obj, "SaleToPOIRequest", "")
    header = parse_header(env, "SaleToPOIRequest")
    if header.message_type != "Request":
        raise _fail("MessageType must be Request")
    name = _BODY[header.category] + "Request"
    return ParsedRequest(header, name, _obj(env, name, "SaleToPOIRequest"))


def request_reference(body: dict[str, Any], where: str) -> str:
    """SaleData.SaleTransactionID.TransactionID of a Payment or Reversal request."""
    sd = _obj(_obj(body, "SaleData", where), "SaleTransactionID", where + ".SaleData")
    return _str(sd, "TransactionID", where + ".SaleData.SaleTransactionID")


def request_amount(body: dict[str, Any]) -> int:
    amounts = _obj(_obj(body, "PaymentTransaction", "PaymentRequest"), "AmountsReq", "PaymentRequest")
    if _str(amounts, "Currency", "AmountsReq") != CURRENCY:
        raise _fail("AmountsReq.Currency must be IRR")
    return _amount(amounts, "RequestedAmount", "AmountsReq")


def message_reference(body: dict[str, Any], where: str) -> tuple[str, str, str]:
    """(SaleID, ServiceID, SaleTransactionID) of a MessageReference; the last two may be ''."""
    ref = _obj(body, "MessageReference", where)
    sale_id = _str(ref, "SaleID", where, optional=True)
    service_id = _str(ref, "ServiceID", where, optional=True)
    tx = ref.get("SaleTransactionID")
    reference = _str(tx, "TransactionID", where) if isinstance(tx, dict) else ""
    return sale_id, service_id, reference
