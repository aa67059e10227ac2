"""nexo Sale-to-POI messages in the Terminal API JSON shape: builders for both directions and a
strict parser that turns anything off-protocol into NexoParseError (see docs/payment-terminal.md).

What the Terminal API (Adyen's TerminalAPI-v1.json schema and published samples) fixes, and
what this module decides where it leaves room:
  - Amounts are decimals in the currency's major unit. ISO 4217 gives IRR an exponent of 2,
    but no rial fraction circulates and Iranian acquirers settle whole rials, so we send an
    integer number of rials and accept an answer's amount only when it is a whole number of
    rials (devices/terminal/acquirer.py). RequestedAmount is at most the schema's maximum.
  - A transaction is found again by its message reference (SaleID, ServiceID,
    MessageCategory): TransactionStatus asks by those, for a Payment or for a Reversal. A
    reversed payment's status is still the original PaymentResponse; the reversal's own
    status is asked with MessageCategory Reversal and the reversal's ServiceID.
  - Our extension, for terminals that document it only (the driver's `status_by_reference`):
    MessageReference may also carry SaleTransactionID {TransactionID} so a sale can be found
    by our own reference within the same SaleID.
  - RRN and STAN: where the acquirer profile says they travel — for Shaparak the RRN in
    PaymentAcquirerData.AcquirerTransactionID.TransactionID and both as "rrn=…&stan=…" in
    Response.AdditionalResponse. AdditionalResponse itself is free text: URL-encoded pairs,
    or Base64 of a JSON object (both documented), or anything else (kept opaque).
  - A request the terminal cannot process is answered with an EventNotification whose
    EventToNotify is Reject (RequestRejected), not with a response of the request's category.
  - Identity: DiagnosisResponse carries POISystemData (borrowed from LoginResponse).
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import re
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode

from devices.base import ProtocolError
from devices.contracts import MessageRef, PaymentOutcome, PaymentResult, PoiTransaction
from devices.terminal.acquirer import SCHEMA_MAX_AMOUNT, AcquirerProfile

PROTOCOL_VERSION = "3.0"
CURRENCY = "IRR"
MAX_AMOUNT_RIALS = SCHEMA_MAX_AMOUNT  # TerminalAPI-v1.json AmountsReq.RequestedAmount maximum

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
PAYMENT_RESTRICTION = "PaymentRestriction"
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


def payment_request(header: Header, reference: str, amount_rials: int, timestamp: str) -> dict[str, Any]:
    _check_amount(amount_rials)
    return _envelope("SaleToPOIRequest", header, "PaymentRequest", {
        "SaleData": {"SaleTransactionID": _tx(reference, timestamp)},
        "PaymentTransaction": {"AmountsReq": {"Currency": CURRENCY, "RequestedAmount": amount_rials}},
    })


#: TerminalAPI-v1.json ReversalReason enum
REVERSAL_REASONS = ("CustCancel", "MerchantCancel", "Malfunction", "Unable2Compl")


def reversal_request(header: Header, original: PoiTransaction, amount_rials: int, reference: str,
                     timestamp: str, reason: str = "MerchantCancel") -> dict[str, Any]:
    """The original sale is named by the terminal's POITransactionID *and its TimeStamp* as the
    terminal gave them (not now)."""
    _check_amount(amount_rials)
    if reason not in REVERSAL_REASONS:
        raise ValueError(f"ReversalReason must be one of {REVERSAL_REASONS}")
    return _envelope("SaleToPOIRequest", header, "ReversalRequest", {
        "OriginalPOITransaction": {"POITransactionID": _tx(original.transaction_id, original.timestamp)},
        "ReversalReason": reason,
        "ReversedAmount": amount_rials,
        "SaleData": {"SaleTransactionID": _tx(reference, timestamp)},
    })


def message_reference(ref: MessageRef, *, by_reference: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"MessageCategory": ref.category, "SaleID": ref.sale_id}
    if ref.service_id:
        out["ServiceID"] = ref.service_id
    if by_reference:
        out["SaleTransactionID"] = {"TransactionID": ref.reference}  # extension, see module doc
    return out


def transaction_status_request(header: Header, ref: MessageRef, *, by_reference: bool = False) -> dict[str, Any]:
    return _envelope("SaleToPOIRequest", header, "TransactionStatusRequest", {
        "MessageReference": message_reference(ref, by_reference=by_reference),
    })


def abort_request(header: Header, ref: MessageRef, reason: str = "MerchantAbort") -> dict[str, Any]:
    return _envelope("SaleToPOIRequest", header, "AbortRequest", {
        "AbortReason": reason,
        "MessageReference": message_reference(ref),
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
    #: what partial referenced refunds have given back so far (whole rials); the sale is
    #: "reversed" once this reaches its amount
    reversed_rials: int = 0


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


def reversal_response_body(sale: Sale, reversal_poi: PoiTransaction, amount_rials: int | None = None) -> dict[str, Any]:
    """A done reversal: its own POITransactionID, and (optional in the schema) ReversedAmount:
    what this reversal gave back (`amount_rials`, a partial refund), else the sale's amount."""
    return {
        "Response": _response(Result.SUCCESS, additional={"rrn": sale.rrn, "stan": sale.stan}),
        "POIData": {"POITransactionID": _tx(reversal_poi.transaction_id, reversal_poi.timestamp)},
        "ReversedAmount": sale.amount_rials if amount_rials is None else amount_rials,
    }


def status_response_body(header: Header, ref: dict[str, Any],
                         repeated: tuple[Category, str, str, dict[str, Any]] | None,
                         error_condition: str = "") -> dict[str, Any]:
    """TransactionStatusResponse: the answer once given to the referenced request, repeated
    (category, its ServiceID, body name, body) — or Failure NotFound / InProgress."""
    if repeated is None:
        return {"Response": _response(Result.FAILURE, error_condition or NOT_FOUND)}
    category, service_id, body_name, body = repeated
    repeated_header = Header(category, service_id, header.sale_id, header.poi_id, "Response")
    return {
        "Response": _response(Result.SUCCESS),
        "MessageReference": ref,
        "RepeatedMessageResponse": {
            "MessageHeader": repeated_header.to_json(),
            "RepeatedResponseMessageBody": {body_name: body},
        },
    }


#: TerminalAPI-v1.json EventToNotify value of a refused request
REJECT = "Reject"


def reject_event(poi_id: str, sale_id: str, service_id: str, detail: str, raw: bytes) -> dict[str, Any]:
    """What a Terminal API terminal answers a request it cannot process: not a response of the
    request's category but an EventNotification (MessageCategory Event, MessageType
    Notification) whose EventToNotify is Reject, EventDetails "message=<why>" and
    RejectedMessage the request, Base64."""
    return {"SaleToPOIRequest": {
        "MessageHeader": {
            "ProtocolVersion": PROTOCOL_VERSION, "MessageClass": "Event", "MessageCategory": "Event",
            "MessageType": "Notification", "ServiceID": service_id[:10] or "0", "SaleID": sale_id or "-",
            "POIID": poi_id,
        },
        "EventNotification": {
            "TimeStamp": now_iso(),
            "EventToNotify": REJECT,
            "EventDetails": urlencode({"message": detail}),
            "RejectedMessage": base64.b64encode(raw).decode("ascii"),
        },
    }}


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


class RequestRejected(NexoParseError):
    """The terminal refused to process the request (EventNotification Reject): nothing was
    done with it. `detail` is the terminal's reason, as it wrote it. A well-formed answer, so
    the device's state does not change (the fault is in the request)."""

    state_after = None

    def __init__(self, message: str, *, device: str = "", error_code: str = "rejected", detail: str = "") -> None:
        super().__init__(message, device=device, error_code=error_code)
        self.detail = detail


class StatusWithoutAnswer(NexoParseError):
    """A TransactionStatusResponse of Result Success that repeats no answer (the schema makes
    RepeatedMessageResponse conditional; Adyen's published status sample has none): it says
    nothing about the sale, so it is never read as approved or not found."""

    def __init__(self, message: str, *, device: str = "", error_code: str = "statusWithoutAnswer") -> None:
        super().__init__(message, device=device, error_code=error_code)


def _rejection(obj: dict[str, Any]) -> RequestRejected | None:
    env = obj.get("SaleToPOIRequest")
    if not isinstance(env, dict) or not isinstance(env.get("EventNotification"), dict):
        return None
    event = env["EventNotification"]
    if event.get("EventToNotify") != REJECT:
        return None
    details = event.get("EventDetails") if isinstance(event.get("EventDetails"), str) else ""
    pairs = dict(parse_qsl(details)) if "=" in details else {}
    reason = (pairs.get("message") or details or "no reason given")[:200]
    return RequestRejected(f"the terminal rejected the request: {reason}", detail=reason)


def parse_response(raw: bytes | str, expected: Header) -> dict[str, Any]:
    """Check the envelope and header of an answer to `expected`; return its body. A Reject
    event in its place raises RequestRejected."""
    obj = decode(raw)
    rejected = _rejection(obj)
    if rejected is not None:
        raise rejected
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


_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def decode_additional(text: str) -> dict[str, str]:
    """Response.AdditionalResponse is free text: URL-encoded key=value pairs (the usual form),
    or Base64 of a JSON object (Adyen documents both; its pairs are under "additionalData"),
    or anything else, which is kept opaque (an empty dict) — never a reason to drop an answer."""
    if not text:
        return {}
    if len(text) % 4 == 0 and _BASE64.fullmatch(text):
        try:
            decoded = json.loads(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError, RecursionError):
            decoded = None
        if isinstance(decoded, dict):
            inner = decoded.get("additionalData", decoded)
            if isinstance(inner, dict):
                return {str(k): v for k, v in inner.items() if isinstance(v, str)}
            return {}
    if "=" not in text:
        return {}
    return dict(parse_qsl(text))


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
    return ResponseStatus(result, cond, decode_additional(add_raw))


def _poi_transaction(body: dict[str, Any], where: str, *, required: bool) -> PoiTransaction | None:
    poi_data = body.get("POIData")
    if poi_data is None and not required:
        return None
    # TransactionIDType: TransactionID "^.+$" and TimeStamp date-time (RFC 3339), both required —
    # held to the same rule as the requests, because a reversal sends them back as they came
    return _transaction_id(_obj(body, "POIData", where), "POITransactionID", where + ".POIData")


def parse_payment_body(body: dict[str, Any], reference: str, profile: AcquirerProfile,
                       where: str = "PaymentResponse", *, currency: str = CURRENCY) -> PaymentResult:
    """PaymentResponse → PaymentResult. An approval needs the POI transaction (id and
    timestamp: a reversal names it by both) and a whole authorized amount in `currency`; RRN
    and STAN are checked by the acquirer profile's rules."""
    status = parse_status(body, where)
    sale_tx = body.get("SaleData")
    if sale_tx is not None:
        got_ref = _str(_obj(_obj(body, "SaleData", where), "SaleTransactionID", where + ".SaleData"), "TransactionID", where)
        if got_ref != reference:
            raise NexoHeaderMismatch(f"{where} is about another sale", error_code="headerMismatch")
    if status.result == Result.PARTIAL:
        raise _fail(f"{where}: partial approval is not accepted for IRR fees")
    if status.result == Result.FAILURE:
        poi = _poi_transaction(body, where, required=False)
        return PaymentResult(PaymentOutcome.DECLINED, reference, poi_reference=poi.transaction_id if poi else "",
                             poi_timestamp=poi.timestamp if poi else "", error_condition=status.error_condition)
    poi = _poi_transaction(body, where, required=True)
    assert poi is not None
    pr = _obj(body, "PaymentResult", where)
    amounts = _obj(pr, "AmountsResp", where + ".PaymentResult")
    amount = _amount(amounts, "AuthorizedAmount", where + ".PaymentResult.AmountsResp")
    if _str(amounts, "Currency", where + ".PaymentResult.AmountsResp", optional=True) not in ("", currency):
        raise _fail(f"{where}: currency must be {currency}")
    pan = ""
    instrument = pr.get("PaymentInstrumentData")
    if isinstance(instrument, dict) and isinstance(instrument.get("CardData"), dict):
        # Passed on as the terminal wrote it: whether it is masked enough to keep is the
        # kiosk's one card-number rule (kiosk.sensitive), applied before anything is
        # journaled or printed.
        pan = _str(instrument["CardData"], "MaskedPan", where + ".CardData", optional=True)
        if len(pan) > MAX_MASKED_PAN:
            raise _fail(f"{where}: MaskedPan longer than {MAX_MASKED_PAN} characters")
    acq = pr.get("PaymentAcquirerData")
    approval, rrn = "", ""
    if acq is not None:
        acq = _obj(pr, "PaymentAcquirerData", where + ".PaymentResult")
        approval = _str(acq, "ApprovalCode", where + ".PaymentAcquirerData", optional=True)
        acq_tx = acq.get("AcquirerTransactionID")
        if acq_tx is not None:
            rrn = _str(_obj(acq, "AcquirerTransactionID", where), "TransactionID", where + ".AcquirerTransactionID")
    if "rrn" in status.additional:
        if rrn and status.additional["rrn"] != rrn:
            raise _fail(f"{where}: RRN differs between AdditionalResponse and AcquirerTransactionID")
        rrn = status.additional["rrn"]
    stan = status.additional.get("stan", "")
    for problem in (profile.check_rrn(rrn), profile.check_stan(stan)):
        if problem:
            raise _fail(f"{where}: {problem} (acquirer profile {profile.name})")
    return PaymentResult(
        PaymentOutcome.APPROVED, reference, amount, poi.transaction_id, rrn, stan, pan,
        message=f"approval {approval}" if approval else "", poi_timestamp=poi.timestamp,
    )


def parse_reversal_body(body: dict[str, Any], reference: str, where: str = "ReversalResponse") -> PaymentResult:
    """ReversalResponse → REVERSED; a Failure → NOT_FOUND (the original sale is unknown to
    the terminal) or DECLINED (refused). ReversedAmount and POIData are optional."""
    status = parse_status(body, where)
    if status.result != Result.SUCCESS:
        outcome = PaymentOutcome.NOT_FOUND if status.error_condition == NOT_FOUND else PaymentOutcome.DECLINED
        return PaymentResult(outcome, reference, error_condition=status.error_condition)
    poi = _poi_transaction(body, where, required=False)
    amount = _amount(body, "ReversedAmount", where) if body.get("ReversedAmount") is not None else 0
    return PaymentResult(
        PaymentOutcome.REVERSED, reference, amount, poi.transaction_id if poi else "",
        rrn=status.additional.get("rrn", ""), stan=status.additional.get("stan", ""),
        poi_timestamp=poi.timestamp if poi else "",
    )


def parse_transaction_status_body(body: dict[str, Any], ref: MessageRef, expected: Header,
                                  profile: AcquirerProfile, *, currency: str = CURRENCY) -> PaymentResult:
    """What became of the request `ref` names. The repeated answer must be the one to that
    very request: same category, ServiceID and SaleID (a terminal that answered with another
    sale, or another kiosk's, is refused). For a Reversal, a refused reversal is DECLINED —
    NOT_FOUND only ever means the terminal never saw the request."""
    where = "TransactionStatusResponse"
    reference = ref.reference
    status = parse_status(body, where)
    if status.result != Result.SUCCESS:
        cond = status.error_condition
        if cond == NOT_FOUND:
            return PaymentResult(PaymentOutcome.NOT_FOUND, reference, error_condition=cond)
        if cond in (IN_PROGRESS, BUSY):
            return PaymentResult(PaymentOutcome.IN_PROGRESS, reference, error_condition=cond)
        raise _fail(f"{where}: unexpected ErrorCondition {cond!r}")
    if body.get("RepeatedMessageResponse") is None:
        raise StatusWithoutAnswer(f"{where}: Success without a RepeatedMessageResponse says nothing of the sale")
    rep = _obj(body, "RepeatedMessageResponse", where)
    header = parse_header(rep, where + ".RepeatedMessageResponse")
    if header.sale_id != ref.sale_id or header.poi_id != expected.poi_id:
        raise NexoHeaderMismatch(f"{where}: repeated message is from another sale system or terminal", error_code="headerMismatch")
    if ref.service_id == "" and not isinstance(
            _obj(_obj(rep, "RepeatedResponseMessageBody", where), "PaymentResponse", where).get("SaleData"), dict):
        # found by our reference alone (the documented option): the repeated answer must
        # name that sale, or nothing ties it to the one asked about
        raise NexoHeaderMismatch(f"{where}: a sale found by reference must carry its SaleData", error_code="headerMismatch")
    if str(header.category) != ref.category or (ref.service_id and header.service_id != ref.service_id):
        raise NexoHeaderMismatch(
            f"{where}: repeated message is {header.category} {header.service_id!r}, asked about {ref.category} {ref.service_id!r}",
            error_code="headerMismatch")
    inner = _obj(rep, "RepeatedResponseMessageBody", where)
    if header.category == Category.PAYMENT:
        return parse_payment_body(_obj(inner, "PaymentResponse", where), reference, profile, where + ".PaymentResponse",
                                  currency=currency)
    result = parse_reversal_body(_obj(inner, "ReversalResponse", where), reference, where + ".ReversalResponse")
    if result.outcome == PaymentOutcome.NOT_FOUND:
        return replace(result, outcome=PaymentOutcome.DECLINED)
    return result


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


# --- request parsing and validation (the simulator's side) ---------------------------------------
# What a Terminal API terminal refuses, from the schema TerminalAPI-v1.json (Adyen/adyen-openapi):
# each check names the schema object it comes from. A request that fails one is answered with
# an EventNotification Reject (reject_event), as the terminal does.


@dataclass(frozen=True)
class ParsedRequest:
    header: Header
    body_name: str
    body: dict[str, Any]


class InvalidRequest(NexoParseError):
    """A request the terminal would reject; `header` is what could be read of its header."""

    def __init__(self, message: str, header: Header | None = None) -> None:
        super().__init__(message, error_code="invalidRequest")
        self.header = header


def parse_request(raw: bytes | str) -> ParsedRequest:
    """Envelope, header and the body of the header's category, validated against the schema."""
    try:
        obj = decode(raw)
        env = _obj(obj, "SaleToPOIRequest", "")
        header = parse_header(env, "SaleToPOIRequest")
    except InvalidRequest:
        raise
    except NexoParseError as exc:
        raise InvalidRequest(str(exc)) from None
    if header.message_type != "Request":
        raise InvalidRequest("MessageType must be Request", header)
    name = _BODY[header.category] + "Request"
    try:
        body = _obj(env, name, "SaleToPOIRequest")
        _VALIDATORS.get(header.category, lambda b: None)(body)
    except InvalidRequest as exc:
        raise InvalidRequest(str(exc), header) from None
    except NexoParseError as exc:
        raise InvalidRequest(str(exc), header) from None
    return ParsedRequest(header, name, body)


def _transaction_id(d: dict[str, Any], key: str, where: str) -> PoiTransaction:
    """TransactionIDType: TransactionID ("^.+$") and TimeStamp (date-time), both required."""
    t = _obj(d, key, where)
    tx_id = _str(t, "TransactionID", f"{where}.{key}")
    if not tx_id:
        raise _fail(f"{where}.{key}.TransactionID must not be empty")
    return PoiTransaction(tx_id, _date_time(t, "TimeStamp", f"{where}.{key}"))


_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


def _date_time(d: dict[str, Any], key: str, where: str) -> str:
    """JSON Schema format date-time is RFC 3339: a date, "T", a time and a zone."""
    v = _str(d, key, where)
    if not _DATE_TIME.fullmatch(v):
        raise _fail(f"{where}.{key}: not an RFC 3339 date-time")
    _timestamp(d, key, where)
    return v


def _schema_number(d: dict[str, Any], key: str, where: str) -> int | float:
    """Amounts: a JSON number, minimum 0.0, maximum 99999999.999999 (decimals allowed)."""
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _fail(f"{where}.{key}: expected a number")
    if v < 0 or v > 99_999_999.999999:
        raise _fail(f"{where}.{key}: outside the schema's 0 .. 99999999.999999")
    return v


def _schema_amount(d: dict[str, Any], key: str, where: str) -> int:
    """A schema amount that must be whole rials (IRR has no circulating fraction)."""
    v = _schema_number(d, key, where)
    if isinstance(v, float) and not v.is_integer():
        raise _fail(f"{where}.{key}: IRR amounts are whole rials")
    return int(v)


def _validate_payment(body: dict[str, Any]) -> None:
    # PaymentRequest.required [SaleData, PaymentTransaction]; SaleData.required [SaleTransactionID]
    _transaction_id(_obj(body, "SaleData", "PaymentRequest"), "SaleTransactionID", "PaymentRequest.SaleData")
    # PaymentTransaction.required [AmountsReq]; AmountsReq.required [Currency, RequestedAmount]
    amounts = _obj(_obj(body, "PaymentTransaction", "PaymentRequest"), "AmountsReq", "PaymentRequest.PaymentTransaction")
    currency = _str(amounts, "Currency", "AmountsReq")
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise _fail("AmountsReq.Currency must match ^[A-Z]{3,3}$")
    # an IRR terminal takes whole units: a fraction is rejected in any currency (another
    # currency, whole, is then refused as PaymentRestriction)
    _schema_amount(amounts, "RequestedAmount", "AmountsReq")


def _validate_reversal(body: dict[str, Any]) -> None:
    # ReversalRequest.required [OriginalPOITransaction, ReversalReason]
    original = _obj(body, "OriginalPOITransaction", "ReversalRequest")
    _transaction_id(original, "POITransactionID", "ReversalRequest.OriginalPOITransaction")
    if _str(body, "ReversalReason", "ReversalRequest") not in REVERSAL_REASONS:
        raise _fail(f"ReversalRequest.ReversalReason must be one of {', '.join(REVERSAL_REASONS)}")
    if "ReversedAmount" in body:
        _schema_amount(body, "ReversedAmount", "ReversalRequest")  # whole rials, as RequestedAmount
    if "SaleData" in body:
        _transaction_id(_obj(body, "SaleData", "ReversalRequest"), "SaleTransactionID", "ReversalRequest.SaleData")


#: TerminalAPI-v1.json MessageCategory enum (a MessageReference may name any of them; an abort
#: names Payment, CardAcquisition or Input)
SCHEMA_CATEGORIES = frozenset({
    "Abort", "Admin", "BalanceInquiry", "CardAcquisition", "Diagnosis", "Display", "EnableService", "Event",
    "GetTotals", "Input", "InputUpdate", "Login", "Logout", "Loyalty", "None", "Payment", "Print",
    "Reconciliation", "Reversal", "StoredValue", "TransactionStatus"})


def _validate_message_reference(ref: dict[str, Any], where: str) -> None:
    if "MessageCategory" in ref and _str(ref, "MessageCategory", where) not in SCHEMA_CATEGORIES:
        raise _fail(f"{where}.MessageCategory is not in the schema's MessageCategory enum")
    if "ServiceID" in ref and not 1 <= len(_str(ref, "ServiceID", where)) <= 10:
        raise _fail(f"{where}.ServiceID must match ^.{{1,10}}$")
    for key in ("SaleID", "POIID"):
        if key in ref and not _str(ref, key, where):
            raise _fail(f"{where}.{key} must not be empty")


def _validate_abort(body: dict[str, Any]) -> None:
    # AbortRequest.required [MessageReference, AbortReason]; AbortReason is free text ("^.+$")
    _validate_message_reference(_obj(body, "MessageReference", "AbortRequest"), "AbortRequest.MessageReference")
    if not _str(body, "AbortReason", "AbortRequest"):
        raise _fail("AbortRequest.AbortReason must not be empty")


def _validate_status(body: dict[str, Any]) -> None:
    # TransactionStatusRequest: nothing required; MessageReference "present if it contains any data"
    if "MessageReference" in body:
        _validate_message_reference(_obj(body, "MessageReference", "TransactionStatusRequest"),
                                    "TransactionStatusRequest.MessageReference")


_VALIDATORS = {
    Category.PAYMENT: _validate_payment,
    Category.REVERSAL: _validate_reversal,
    Category.ABORT: _validate_abort,
    Category.TRANSACTION_STATUS: _validate_status,
}


def request_sale(body: dict[str, Any], where: str) -> PoiTransaction:
    """SaleData.SaleTransactionID (our reference and its timestamp) of a validated request."""
    return _transaction_id(_obj(body, "SaleData", where), "SaleTransactionID", where + ".SaleData")


def request_amount(body: dict[str, Any]) -> tuple[str, int]:
    """(Currency, RequestedAmount in whole units) of a validated PaymentRequest."""
    amounts = body["PaymentTransaction"]["AmountsReq"]
    return amounts["Currency"], _schema_amount(amounts, "RequestedAmount", "AmountsReq")


def request_original(body: dict[str, Any]) -> tuple[PoiTransaction, int | None]:
    """(original POITransactionID, ReversedAmount or None) of a validated ReversalRequest."""
    original = _transaction_id(body["OriginalPOITransaction"], "POITransactionID", "OriginalPOITransaction")
    amount = _schema_amount(body, "ReversedAmount", "ReversalRequest") if "ReversedAmount" in body else None
    return original, amount


def parse_message_reference(body: dict[str, Any]) -> tuple[str, str, str, str]:
    """(MessageCategory, SaleID, ServiceID, SaleTransactionID) of a validated request's
    MessageReference; absent parts are '' (the category defaults to Payment)."""
    ref = body.get("MessageReference") or {}
    tx = ref.get("SaleTransactionID")
    reference = tx.get("TransactionID", "") if isinstance(tx, dict) and isinstance(tx.get("TransactionID"), str) else ""
    return (ref.get("MessageCategory") or "Payment", ref.get("SaleID") or "", ref.get("ServiceID") or "", reference)
