"""The strict nexo parser: every off-protocol answer is a NexoParseError, and nothing else escapes.

Builders and parser are checked against each other here (what the driver sends, the simulator's
request parser accepts; what the simulator answers, the driver's parser reads back). The same
parser against hand-written messages in the Terminal API's published shapes is
tests/test_terminal_api_samples.py.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.contracts import MessageRef, PaymentOutcome, PoiTransaction
from devices.terminal import nexo
from devices.terminal.acquirer import PROFILES, SCHEMA_MAX_AMOUNT

SHAPARAK = PROFILES["shaparak"]
ADYEN = PROFILES["adyen"]

SALE_TS = "2025-01-02T03:04:05.000Z"
PAY_REF = MessageRef("Payment", "tx-1", "abc123", "KIOSK-7", "POI-1", SALE_TS)
REV_REF = MessageRef("Reversal", "tx-1", "rv0001", "KIOSK-7", "POI-1", "2025-01-02T03:10:00.000Z")
REQ = nexo.Header(nexo.Category.PAYMENT, PAY_REF.service_id, "KIOSK-7", "POI-1")
REV_REQ = nexo.Header(nexo.Category.REVERSAL, REV_REF.service_id, "KIOSK-7", "POI-1")
STATUS_REQ = nexo.Header(nexo.Category.TRANSACTION_STATUS, "st0001", "KIOSK-7", "POI-1")
SALE = nexo.Sale(
    reference="tx-1", poi_transaction_id="POI-1-00000001", amount_rials=120_000, status="approved",
    masked_pan="603799******1234", rrn="123456789012", stan="000042", approval_code="654321",
    sale_timestamp=SALE_TS, poi_timestamp="2025-01-02T03:04:06.000Z",
    service_id="abc123", sale_id="KIOSK-7",
)
DECLINED_SALE = nexo.Sale(**{**SALE.__dict__, "status": "declined", "error_condition": nexo.REFUSAL,
                             "masked_pan": "", "rrn": "", "stan": "", "approval_code": ""})
REVERSAL_POI = PoiTransaction("POI-1-00000002", "2025-01-02T03:10:01.000Z")


def approved(sale: nexo.Sale = SALE) -> dict[str, Any]:
    return nexo.response_message(REQ, "PaymentResponse", nexo.payment_response_body(sale))


def reversal_answer() -> dict[str, Any]:
    return nexo.response_message(REV_REQ, "ReversalResponse", nexo.reversal_response_body(SALE, REVERSAL_POI))


def status_answer(repeats: str | None = "payment", error_condition: str = "") -> dict[str, Any]:
    """A TransactionStatusResponse as the simulator builds it: repeating the payment's answer,
    the reversal's answer, or (None) Failure with `error_condition` (NotFound by default)."""
    ref = PAY_REF if repeats != "reversal" else REV_REF
    repeated: tuple[nexo.Category, str, str, dict[str, Any]] | None = None
    if repeats == "payment":
        repeated = (nexo.Category.PAYMENT, PAY_REF.service_id, "PaymentResponse", nexo.payment_response_body(SALE))
    elif repeats == "declined":
        repeated = (nexo.Category.PAYMENT, PAY_REF.service_id, "PaymentResponse", nexo.payment_response_body(DECLINED_SALE))
    elif repeats == "reversal":
        repeated = (nexo.Category.REVERSAL, REV_REF.service_id, "ReversalResponse",
                    nexo.reversal_response_body(SALE, REVERSAL_POI))
    body = nexo.status_response_body(STATUS_REQ, nexo.message_reference(ref), repeated, error_condition)
    return nexo.response_message(STATUS_REQ, "TransactionStatusResponse", body)


def _raw(msg: Any) -> bytes | str:
    return msg if isinstance(msg, (bytes, str)) else json.dumps(msg)


def parse_payment(msg: Any, profile: Any = SHAPARAK, reference: str = "tx-1") -> Any:
    return nexo.parse_payment_body(nexo.parse_response(_raw(msg), REQ), reference, profile)


def parse_status(msg: Any, ref: MessageRef = PAY_REF, profile: Any = SHAPARAK) -> Any:
    return nexo.parse_transaction_status_body(nexo.parse_response(_raw(msg), STATUS_REQ), ref, STATUS_REQ, profile)


def test_approved_payment_response_carries_rrn_stan_masked_pan_and_poi_transaction() -> None:
    result = parse_payment(approved())
    assert result.outcome == PaymentOutcome.APPROVED
    assert (result.amount_rials, result.rrn, result.stan) == (120_000, "123456789012", "000042")
    assert result.masked_pan == "603799******1234"
    # a reversal names the original sale by the terminal's id *and* timestamp
    assert result.poi_transaction == PoiTransaction("POI-1-00000001", "2025-01-02T03:04:06.000Z")


def test_request_carries_irr_amount_as_whole_rials_header_fields_and_our_timestamp() -> None:
    msg = nexo.payment_request(REQ, "tx-1", 120_000, SALE_TS)
    header = msg["SaleToPOIRequest"]["MessageHeader"]
    assert header == {"ProtocolVersion": "3.0", "MessageClass": "Service", "MessageCategory": "Payment",
                      "MessageType": "Request", "ServiceID": "abc123", "SaleID": "KIOSK-7", "POIID": "POI-1"}
    body = msg["SaleToPOIRequest"]["PaymentRequest"]
    amounts = body["PaymentTransaction"]["AmountsReq"]
    assert amounts == {"Currency": "IRR", "RequestedAmount": 120_000}
    assert isinstance(amounts["RequestedAmount"], int)
    # the timestamp journaled in the MessageRef is the one sent, not a fresh one
    assert body["SaleData"]["SaleTransactionID"] == {"TransactionID": "tx-1", "TimeStamp": SALE_TS}


def test_amount_over_the_schema_maximum_is_refused_before_anything_is_built() -> None:
    """TerminalAPI-v1.json AmountsReq.RequestedAmount maximum 99999999.999999: whole rials
    stop at 99,999,999."""
    assert nexo.payment_request(REQ, "tx-1", SCHEMA_MAX_AMOUNT, SALE_TS)
    for bad in (SCHEMA_MAX_AMOUNT + 1, 0, -5, True, 1.5):
        with pytest.raises(ValueError):
            nexo.payment_request(REQ, "tx-1", bad, SALE_TS)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            nexo.reversal_request(REV_REQ, REVERSAL_POI, bad, "tx-1", SALE_TS)  # type: ignore[arg-type]


def test_service_ids_are_unique_and_at_most_ten_characters() -> None:
    ids = {nexo.new_service_id() for _ in range(2000)}
    assert len(ids) == 2000 and max(map(len, ids)) <= 10


def test_masked_pan_is_passed_on_as_the_terminal_wrote_it_for_the_kiosk_to_judge() -> None:
    # Whether a MaskedPan is masked enough to keep is kiosk.sensitive's one rule, applied by
    # the money path before anything is stored (tests/test_money_safety.py); the protocol
    # layer must not drop an approved sale over it, or the sale would sit in PAYING.
    msg = approved()
    msg["SaleToPOIResponse"]["PaymentResponse"]["PaymentResult"]["PaymentInstrumentData"]["CardData"]["MaskedPan"] = "411111 **** 1111"
    assert parse_payment(msg).masked_pan == "411111 **** 1111"


def test_an_absurdly_long_masked_pan_is_a_protocol_error() -> None:
    msg = approved()
    msg["SaleToPOIResponse"]["PaymentResponse"]["PaymentResult"]["PaymentInstrumentData"]["CardData"]["MaskedPan"] = "*" * 33
    with pytest.raises(nexo.NexoParseError):
        parse_payment(msg)


@pytest.mark.parametrize("field,value", [("ServiceID", "other1"), ("SaleID", "KIOSK-8"), ("POIID", "POI-2"),
                                         ("MessageCategory", "Reversal")])
def test_response_to_another_request_is_a_header_mismatch(field: str, value: str) -> None:
    msg = approved()
    msg["SaleToPOIResponse"]["MessageHeader"][field] = value
    with pytest.raises(nexo.NexoHeaderMismatch):
        parse_payment(msg)


def test_response_about_another_sale_reference_is_rejected() -> None:
    with pytest.raises(nexo.NexoHeaderMismatch):
        parse_payment(approved(), reference="tx-2")


def test_integral_float_amount_is_accepted_but_fractional_rials_are_not() -> None:
    msg = approved()
    amounts = msg["SaleToPOIResponse"]["PaymentResponse"]["PaymentResult"]["AmountsResp"]
    amounts["AuthorizedAmount"] = 120000.0
    assert parse_payment(msg).amount_rials == 120_000
    amounts["AuthorizedAmount"] = 120000.5
    with pytest.raises(nexo.NexoParseError):
        parse_payment(msg)
    amounts["AuthorizedAmount"] = True
    with pytest.raises(nexo.NexoParseError):
        parse_payment(msg)


def test_approval_in_another_currency_is_refused() -> None:
    msg = approved()
    msg["SaleToPOIResponse"]["PaymentResponse"]["PaymentResult"]["AmountsResp"]["Currency"] = "EUR"
    with pytest.raises(nexo.NexoParseError, match="currency"):
        parse_payment(msg)
    # …unless the caller asked in that currency
    body = nexo.parse_response(json.dumps(msg), REQ)
    assert nexo.parse_payment_body(body, "tx-1", SHAPARAK, currency="EUR").approved


def test_partial_approval_is_refused() -> None:
    msg = approved()
    msg["SaleToPOIResponse"]["PaymentResponse"]["Response"]["Result"] = "Partial"
    with pytest.raises(nexo.NexoParseError, match="partial"):
        parse_payment(msg)


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"null", b"\xff\xfe", b'{"SaleToPOIResponse": []}', "[" * 100_000])
def test_garbage_is_a_parse_error(raw: Any) -> None:
    with pytest.raises(nexo.NexoParseError):
        parse_payment(raw)


def test_failure_without_error_condition_is_a_parse_error() -> None:
    msg = nexo.response_message(REQ, "PaymentResponse", {"Response": {"Result": "Failure"}})
    with pytest.raises(nexo.NexoParseError):
        parse_payment(msg)


def test_declined_payment_keeps_the_error_condition() -> None:
    result = parse_payment(approved(DECLINED_SALE))
    assert result.outcome == PaymentOutcome.DECLINED and result.error_condition == nexo.REFUSAL
    assert not result.approved and result.masked_pan == "" and result.rrn == ""


# --- acquirer profiles (devices/terminal/acquirer.py) -----------------------------------------


def _with_rrn_stan(acquirer_tx: str, additional: str) -> dict[str, Any]:
    msg = approved()
    body = msg["SaleToPOIResponse"]["PaymentResponse"]
    body["PaymentResult"]["PaymentAcquirerData"]["AcquirerTransactionID"]["TransactionID"] = acquirer_tx
    body["Response"]["AdditionalResponse"] = additional
    return msg


@pytest.mark.parametrize("acquirer_tx,additional,problem", [
    ("12345678901", "rrn=12345678901&stan=000042", "RRN must be 12 digits"),
    ("1234567890AB", "stan=000042", "RRN must be 12 digits"),
    ("123456789012", "rrn=123456789012&stan=42", "STAN must be 6 digits"),
    ("123456789012", "rrn=123456789012", "STAN missing"),
])
def test_shaparak_profile_refuses_an_approval_without_its_rrn_and_stan(acquirer_tx: str, additional: str,
                                                                       problem: str) -> None:
    """Shaparak: RRN is ISO 8583 field 37 (12 digits), STAN field 11 (6 digits), both on every
    receipt (acquirer.py). The same answer under the adyen profile, which asks for neither
    form, is an approval — so the refusal is the profile's, not the message's."""
    msg = _with_rrn_stan(acquirer_tx, additional)
    with pytest.raises(nexo.NexoParseError, match=problem):
        parse_payment(msg, SHAPARAK)
    assert parse_payment(msg, ADYEN).approved


def test_adyen_profile_takes_a_non_digit_acquirer_reference_without_a_stan() -> None:
    msg = _with_rrn_stan("VK9DRSLLRCQ2WN82", "")
    result = parse_payment(msg, ADYEN)
    assert (result.rrn, result.stan) == ("VK9DRSLLRCQ2WN82", "")


def test_rrn_that_differs_between_additional_response_and_acquirer_transaction_is_refused() -> None:
    msg = _with_rrn_stan("123456789012", "rrn=999999999999&stan=000042")
    with pytest.raises(nexo.NexoParseError, match="RRN differs"):
        parse_payment(msg, ADYEN)


def test_base64_json_additional_response_carries_rrn_and_stan_too() -> None:
    """Adyen docs (error-scenarios): AdditionalResponse is form-encoded pairs or Base64 of a
    JSON object; its pairs are under additionalData."""
    encoded = base64.b64encode(json.dumps({"additionalData": {"rrn": "123456789012", "stan": "000042"}}).encode()).decode()
    result = parse_payment(_with_rrn_stan("123456789012", encoded), SHAPARAK)
    assert (result.rrn, result.stan) == ("123456789012", "000042")


@pytest.mark.parametrize("text,expected", [
    ("rrn=123456789012&stan=000042", {"rrn": "123456789012", "stan": "000042"}),
    ("message=Terminal+is+not+reachable", {"message": "Terminal is not reachable"}),
    ("cardHolderName=N%2fA&txtime=10%3a19%3a51", {"cardHolderName": "N/A", "txtime": "10:19:51"}),
    (base64.b64encode(b'{"rrn": "1", "n": 5}').decode(), {"rrn": "1"}),
    (base64.b64encode(b'{"additionalData": {"k": "v"}, "message": "m"}').decode(), {"k": "v"}),
    ("free text from a terminal", {}),
    ("", {}),
])
def test_additional_response_forms(text: str, expected: dict[str, str]) -> None:
    assert nexo.decode_additional(text) == expected


# --- reversal --------------------------------------------------------------------------------


def test_reversal_request_names_the_original_by_poi_transaction_id_and_its_timestamp() -> None:
    sale_poi = PoiTransaction(SALE.poi_transaction_id, SALE.poi_timestamp)
    msg = nexo.reversal_request(REV_REQ, sale_poi, 120_000, "tx-1", REV_REF.timestamp)
    body = msg["SaleToPOIRequest"]["ReversalRequest"]
    assert body["OriginalPOITransaction"]["POITransactionID"] == {
        "TransactionID": sale_poi.transaction_id, "TimeStamp": sale_poi.timestamp}
    assert body["ReversalReason"] in nexo.REVERSAL_REASONS
    assert body["SaleData"]["SaleTransactionID"] == {"TransactionID": "tx-1", "TimeStamp": REV_REF.timestamp}
    with pytest.raises(ValueError):
        nexo.reversal_request(REV_REQ, sale_poi, 120_000, "tx-1", REV_REF.timestamp, reason="ShopperRegret")


def test_reversal_response_with_and_without_reversed_amount() -> None:
    """ReversalResponse.required is [Response] only: ReversedAmount ("Copy.") is optional."""
    msg = reversal_answer()
    got = nexo.parse_reversal_body(nexo.parse_response(json.dumps(msg), REV_REQ), "tx-1")
    assert got.outcome == PaymentOutcome.REVERSED and got.amount_rials == 120_000
    assert got.poi_transaction == REVERSAL_POI
    del msg["SaleToPOIResponse"]["ReversalResponse"]["ReversedAmount"]
    got = nexo.parse_reversal_body(nexo.parse_response(json.dumps(msg), REV_REQ), "tx-1")
    assert got.outcome == PaymentOutcome.REVERSED and got.amount_rials == 0


@pytest.mark.parametrize("condition,outcome", [(nexo.NOT_FOUND, PaymentOutcome.NOT_FOUND),
                                               (nexo.REFUSAL, PaymentOutcome.DECLINED)])
def test_refused_reversal(condition: str, outcome: PaymentOutcome) -> None:
    msg = nexo.response_message(REV_REQ, "ReversalResponse", nexo.failure_body(condition))
    got = nexo.parse_reversal_body(nexo.parse_response(json.dumps(msg), REV_REQ), "tx-1")
    assert got.outcome == outcome and got.error_condition == condition


# --- transaction status ----------------------------------------------------------------------


def test_status_of_a_reversed_sale_is_its_approval_and_the_reversal_status_is_reversed() -> None:
    """A terminal repeats the answer it gave: the payment's status stays the approval after a
    reversal; the reversal's own status (MessageCategory Reversal, its ServiceID) is REVERSED."""
    paid = parse_status(status_answer("payment"), PAY_REF)
    assert paid.outcome == PaymentOutcome.APPROVED and paid.rrn == SALE.rrn
    reversed_ = parse_status(status_answer("reversal"), REV_REF)
    assert reversed_.outcome == PaymentOutcome.REVERSED and reversed_.poi_transaction == REVERSAL_POI
    assert reversed_.rrn == SALE.rrn


def test_unknown_request_is_not_found_and_a_running_one_in_progress() -> None:
    missing = parse_status(status_answer(None))
    assert missing.outcome == PaymentOutcome.NOT_FOUND
    for condition in (nexo.IN_PROGRESS, nexo.BUSY):
        running = parse_status(status_answer(None, condition))
        assert running.outcome == PaymentOutcome.IN_PROGRESS and running.error_condition == condition


def test_status_with_another_error_condition_is_a_parse_error_not_a_decline() -> None:
    with pytest.raises(nexo.NexoParseError, match="ErrorCondition"):
        parse_status(status_answer(None, nexo.REFUSAL))


def test_status_repeats_the_original_payment_response() -> None:
    got = parse_status(status_answer("payment"))
    assert got.outcome == PaymentOutcome.APPROVED and (got.rrn, got.stan) == (SALE.rrn, SALE.stan)
    assert got.poi_transaction == PoiTransaction(SALE.poi_transaction_id, SALE.poi_timestamp)
    declined = parse_status(status_answer("declined"))
    assert declined.outcome == PaymentOutcome.DECLINED and declined.error_condition == nexo.REFUSAL


def test_a_refused_reversal_read_through_status_is_declined_never_not_found() -> None:
    """NOT_FOUND from a status means the terminal never saw the request; a reversal that it
    saw and refused (NotFound of the *original*) must not read as never sent."""
    repeated = (nexo.Category.REVERSAL, REV_REF.service_id, "ReversalResponse", nexo.failure_body(nexo.NOT_FOUND))
    body = nexo.status_response_body(STATUS_REQ, nexo.message_reference(REV_REF), repeated)
    got = parse_status(nexo.response_message(STATUS_REQ, "TransactionStatusResponse", body), REV_REF)
    assert got.outcome == PaymentOutcome.DECLINED


@pytest.mark.parametrize("field,value", [("ServiceID", "zzz999"), ("SaleID", "KIOSK-8"), ("POIID", "POI-2"),
                                         ("MessageCategory", "Reversal")])
def test_status_repeating_another_request_is_a_header_mismatch(field: str, value: str) -> None:
    msg = status_answer("payment")
    msg["SaleToPOIResponse"]["TransactionStatusResponse"]["RepeatedMessageResponse"]["MessageHeader"][field] = value
    with pytest.raises(nexo.NexoHeaderMismatch):
        parse_status(msg)


def test_status_asked_by_the_reversal_reference_refuses_the_payment_answer() -> None:
    with pytest.raises(nexo.NexoHeaderMismatch):
        parse_status(status_answer("payment"), REV_REF)


def test_success_status_without_a_repeated_answer_is_neither_approved_nor_not_found() -> None:
    msg = status_answer("payment")
    del msg["SaleToPOIResponse"]["TransactionStatusResponse"]["RepeatedMessageResponse"]
    with pytest.raises(nexo.StatusWithoutAnswer):
        parse_status(msg)


def test_status_request_asks_by_message_reference() -> None:
    msg = nexo.transaction_status_request(STATUS_REQ, REV_REF)
    assert msg["SaleToPOIRequest"]["TransactionStatusRequest"]["MessageReference"] == {
        "MessageCategory": "Reversal", "SaleID": "KIOSK-7", "ServiceID": "rv0001"}
    by_ref = nexo.transaction_status_request(STATUS_REQ, PAY_REF, by_reference=True)
    assert by_ref["SaleToPOIRequest"]["TransactionStatusRequest"]["MessageReference"]["SaleTransactionID"] == {
        "TransactionID": "tx-1"}


# --- Reject events ----------------------------------------------------------------------------


def test_reject_event_in_place_of_a_response_is_request_rejected_with_the_terminal_reason() -> None:
    raw_request = json.dumps(nexo.payment_request(REQ, "tx-1", 120_000, SALE_TS)).encode()
    event = nexo.reject_event("POI-1", "KIOSK-7", "abc123", "ServiceID abc123 was used before", raw_request)
    note = event["SaleToPOIRequest"]["EventNotification"]
    assert base64.b64decode(note["RejectedMessage"]) == raw_request
    assert event["SaleToPOIRequest"]["MessageHeader"]["MessageType"] == "Notification"
    with pytest.raises(nexo.RequestRejected) as caught:
        parse_payment(event)
    assert caught.value.detail == "ServiceID abc123 was used before"
    assert isinstance(caught.value, nexo.NexoParseError)


def test_a_notification_that_is_not_a_reject_is_a_parse_error_not_a_rejection() -> None:
    event = nexo.reject_event("POI-1", "KIOSK-7", "abc123", "x", b"{}")
    event["SaleToPOIRequest"]["EventNotification"]["EventToNotify"] = "BeginMaintenance"
    with pytest.raises(nexo.NexoParseError) as caught:
        parse_payment(event)
    assert not isinstance(caught.value, nexo.RequestRejected)


# --- the simulator's request parser ----------------------------------------------------------------


def _requests() -> list[dict[str, Any]]:
    abort_hdr = nexo.Header(nexo.Category.ABORT, "ab0001", "KIOSK-7", "POI-1")
    return [
        nexo.payment_request(REQ, "tx-1", 120_000, SALE_TS),
        nexo.reversal_request(REV_REQ, PoiTransaction(SALE.poi_transaction_id, SALE.poi_timestamp), 120_000,
                              "tx-1", REV_REF.timestamp),
        nexo.transaction_status_request(STATUS_REQ, PAY_REF),
        nexo.transaction_status_request(STATUS_REQ, REV_REF, by_reference=True),
        nexo.abort_request(abort_hdr, PAY_REF),
        nexo.diagnosis_request(nexo.Header(nexo.Category.DIAGNOSIS, "dg0001", "KIOSK-7", "POI-1")),
    ]


@pytest.mark.parametrize("index", range(len(_requests())))
def test_every_request_the_driver_builds_passes_the_simulators_validation(index: int) -> None:
    msg = _requests()[index]
    parsed = nexo.parse_request(json.dumps(msg))
    (name, body), = ((k, v) for k, v in msg["SaleToPOIRequest"].items() if k != "MessageHeader")
    assert parsed.body_name == name and parsed.body == body
    assert parsed.header.to_json() == msg["SaleToPOIRequest"]["MessageHeader"]


@pytest.mark.parametrize("edit,field", [
    (lambda b: b["SaleData"]["SaleTransactionID"].pop("TimeStamp"), "TimeStamp"),
    (lambda b: b["SaleData"]["SaleTransactionID"].update(TimeStamp="2025-01-02"), "TimeStamp"),
    (lambda b: b["SaleData"]["SaleTransactionID"].update(TransactionID=""), "TransactionID"),
    (lambda b: b["PaymentTransaction"]["AmountsReq"].update(RequestedAmount=100_000_000), "RequestedAmount"),
    (lambda b: b["PaymentTransaction"]["AmountsReq"].update(RequestedAmount=-1), "RequestedAmount"),
    (lambda b: b["PaymentTransaction"]["AmountsReq"].update(Currency="irr"), "Currency"),
    (lambda b: b.pop("PaymentTransaction"), "PaymentTransaction"),
])
def test_a_payment_request_off_the_schema_is_an_invalid_request_naming_the_field(edit: Any, field: str) -> None:
    msg = nexo.payment_request(REQ, "tx-1", 120_000, SALE_TS)
    edit(msg["SaleToPOIRequest"]["PaymentRequest"])
    with pytest.raises(nexo.InvalidRequest, match=field) as caught:
        nexo.parse_request(json.dumps(msg))
    assert caught.value.header == REQ  # the simulator echoes what it could read in the Reject


def test_a_response_sent_as_a_request_is_invalid() -> None:
    with pytest.raises(nexo.InvalidRequest, match="Request"):
        nexo.parse_request(json.dumps(approved()))


# --- fuzzing ---------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=6,
)
_DELETE = object()


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, prefix + (i,))
    return out


TEMPLATES = [
    approved(), approved(DECLINED_SALE), reversal_answer(),
    status_answer("payment"), status_answer("reversal"), status_answer("declined"), status_answer(None),
    status_answer(None, nexo.IN_PROGRESS),
    nexo.reject_event("POI-1", "KIOSK-7", "abc123", "bad request", b'{"SaleToPOIRequest": {}}'),
]
PATHS = [_paths(t) for t in TEMPLATES]
REQUEST_TEMPLATES = _requests()
REQUEST_PATHS = [_paths(t) for t in REQUEST_TEMPLATES]


def _mutate(template: dict[str, Any], edits: list[tuple[tuple[Any, ...], Any]]) -> dict[str, Any]:
    msg = copy.deepcopy(template)
    for path, value in edits:
        parent: Any = msg
        try:
            for key in path[:-1]:
                parent = parent[key]
            if value is _DELETE:
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed this path
    return msg


def _readers() -> list[tuple[nexo.Header, Any, Any]]:
    """(expected header, body reader, acquirer profile) for every parse entry point the driver uses."""
    out: list[tuple[nexo.Header, Any, Any]] = []
    for profile in (SHAPARAK, ADYEN):
        out += [
            (REQ, lambda b, p=profile: nexo.parse_payment_body(b, "tx-1", p), profile),
            (STATUS_REQ, lambda b, p=profile: nexo.parse_transaction_status_body(b, PAY_REF, STATUS_REQ, p), profile),
            (STATUS_REQ, lambda b, p=profile: nexo.parse_transaction_status_body(b, REV_REF, STATUS_REQ, p), profile),
        ]
    out.append((REV_REQ, lambda b: nexo.parse_reversal_body(b, "tx-1"), None))
    return out


READERS = _readers()


def _parse_any(raw: bytes | str) -> None:
    """Every parse entry point the driver uses: a result or a NexoParseError, nothing else —
    and a result keeps the parser's promises."""
    for header, reader, profile in READERS:
        try:
            result = reader(nexo.parse_response(raw, header))
        except nexo.NexoParseError:
            continue
        assert isinstance(result.masked_pan, str) and len(result.masked_pan) <= nexo.MAX_MASKED_PAN
        assert result.reference == "tx-1"
        assert isinstance(result.amount_rials, int) and 0 <= result.amount_rials <= nexo.MAX_AMOUNT_RIALS
        if result.outcome == PaymentOutcome.APPROVED:
            # a reversal names the sale by the terminal's id and timestamp; the acquirer's rules were applied
            assert result.poi_transaction is not None
            assert profile.check_rrn(result.rrn) is None and profile.check_stan(result.stan) is None


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    template=st.sampled_from(range(len(TEMPLATES))),
    data=st.data(),
)
def test_fuzz_mutated_responses_raise_only_nexo_parse_error(template: int, data: st.DataObject) -> None:
    base = TEMPLATES[template]
    edits = data.draw(st.lists(st.tuples(st.sampled_from(PATHS[template]), json_values | st.just(_DELETE)), min_size=1, max_size=3))
    _parse_any(json.dumps(_mutate(base, edits)))


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=st.one_of(st.binary(max_size=200), json_values.map(json.dumps), st.text(max_size=200)))
def test_fuzz_arbitrary_bytes_raise_only_nexo_parse_error(raw: bytes | str) -> None:
    _parse_any(raw)
    try:  # the simulator's request parser is held to the same rule
        req = nexo.parse_request(raw)
    except nexo.NexoParseError:
        return
    assert req.body_name.endswith("Request")


@pytest.mark.slow
@settings(max_examples=5_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(template=st.sampled_from(range(len(REQUEST_TEMPLATES))), data=st.data())
def test_fuzz_mutated_requests_raise_only_invalid_request(template: int, data: st.DataObject) -> None:
    """The simulator answers any request it cannot read with a Reject event built from
    InvalidRequest; any other exception would drop the connection instead."""
    base = REQUEST_TEMPLATES[template]
    edits = data.draw(st.lists(st.tuples(st.sampled_from(REQUEST_PATHS[template]), json_values | st.just(_DELETE)),
                               min_size=1, max_size=3))
    raw = json.dumps(_mutate(base, edits))
    try:
        req = nexo.parse_request(raw)
    except nexo.InvalidRequest:
        return
    assert req.body_name.endswith("Request")
    # what the simulator then reads of a validated request must not fail either
    if req.header.category == nexo.Category.PAYMENT:
        nexo.request_sale(req.body, "PaymentRequest")
        currency, amount = nexo.request_amount(req.body)
        assert isinstance(amount, int) and 0 <= amount
    elif req.header.category == nexo.Category.REVERSAL:
        nexo.request_original(req.body)
    elif req.header.category in (nexo.Category.TRANSACTION_STATUS, nexo.Category.ABORT):
        assert all(isinstance(part, str) for part in nexo.parse_message_reference(req.body))
