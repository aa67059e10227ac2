"""The nexo parser against Terminal API messages in the shapes Adyen publishes.

The fixtures in tests/data/terminal-api/ are our own, written by hand after the published
samples and documentation pages each one names in tests/data/terminal-api/README.md (schema:
Adyen/adyen-openapi json/TerminalAPI-v1.json; samples: Adyen/adyen-java-api-library
src/test/resources/mocks/terminal-api/ and .../mocks/clouddevice/; docs.adyen.com). They are
parsed by the real parser (devices/terminal/nexo.py) with the acquirer profile a kiosk behind
that acquirer would use (devices/terminal/acquirer.py), and an approval goes on into a real
journal the way the money path writes it.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from devices.contracts import MessageRef, PaymentOutcome, PaymentResult, PoiTransaction
from devices.terminal import nexo
from devices.terminal.acquirer import PROFILES
from kiosk.journal import Journal
from kiosk.journal.states import TxState
from kiosk.money_path import _payment_data
from kiosk.sensitive import find_card_number, is_masked_pan, unstorable_reason

DATA = Path(__file__).parent / "data" / "terminal-api"
ADYEN = PROFILES["adyen"]
SHAPARAK = PROFILES["shaparak"]

# What the kiosk would have sent: the fixtures answer requests under these identities.
POIID = "P400Plus-275039202"  # Adyen POIID form [model]-[serial]
SALE_ID = "CityKiosk-07"
REFERENCE = "kiosk-0327-001"  # our SaleTransactionID of the approved sale
PAY_REF = MessageRef("Payment", REFERENCE, "2603271130", SALE_ID, POIID, "2026-03-27T10:30:00.000Z")
REV_REF = MessageRef("Reversal", REFERENCE, "2603271150", SALE_ID, POIID, "2026-03-27T10:50:00.000Z")

APPROVALS = ("payment-success-form.json", "payment-success-base64.json")
RESPONSES = {
    # file: (category of the request it answers, that request's ServiceID)
    "payment-success-form.json": ("Payment", PAY_REF.service_id),
    "payment-success-base64.json": ("Payment", PAY_REF.service_id),
    "payment-failure-unreachable.json": ("Payment", "2603271131"),
    "payment-refusal.json": ("Payment", "2603271132"),
    "status-success-without-repeated.json": ("TransactionStatus", "2603271145"),
    "status-in-progress.json": ("TransactionStatus", "2603271146"),
    "status-not-found.json": ("TransactionStatus", "2603271147"),
    "status-payment-processed.json": ("TransactionStatus", "2603271148"),
    "status-reversal-processed.json": ("TransactionStatus", "2603271151"),
    "reversal-response.json": ("Reversal", REV_REF.service_id),
    "reversal-response-reversed-amount.json": ("Reversal", REV_REF.service_id),
}
REJECTS = {
    "reject-event-no-response.json": "Did not receive a response from the POI.",
    "reject-event-empty-input.json": "Empty input which would have resulted in a null result.",
}
VALID_REQUESTS = ("payment-request.json", "reversal-request.json", "abort-request.json")
INVALID_REQUESTS = {
    # file: (the field the refusal must name, the schema rule, TerminalAPI-v1.json)
    "abort-request-missing-abort-reason.json": ("AbortReason", "AbortRequest.required"),
    "abort-request-missing-message-reference.json": ("MessageReference", "AbortRequest.required"),
    "payment-request-missing-timestamp.json": ("TimeStamp", "TransactionIDType.required"),
    "payment-request-timestamp-not-date-time.json": ("TimeStamp", "TransactionIDType.TimeStamp format date-time"),
    "reversal-request-reason-outside-enum.json": ("ReversalReason", "ReversalReason enum"),
    "payment-request-amount-over-maximum.json": ("RequestedAmount", "AmountsReq.RequestedAmount maximum"),
}


def raw(name: str) -> bytes:
    return (DATA / name).read_bytes()


def load(name: str) -> dict[str, Any]:
    return json.loads(raw(name))


def asked(name: str) -> nexo.Header:
    """The header of the request `name` answers (built from our table, not from the file)."""
    category, service_id = RESPONSES[name]
    return nexo.Header(nexo.Category(category), service_id, SALE_ID, POIID)


def body_of(name: str) -> dict[str, Any]:
    return nexo.parse_response(raw(name), asked(name))


def parse_approval(name: str, profile: Any = ADYEN, currency: str = "EUR") -> PaymentResult:
    return nexo.parse_payment_body(body_of(name), REFERENCE, profile, currency=currency)


def parse_status(name: str, ref: MessageRef, data: bytes | None = None) -> PaymentResult:
    header = asked(name)
    body = nexo.parse_response(data if data is not None else raw(name), header)
    return nexo.parse_transaction_status_body(body, ref, header, ADYEN)


# --- the fixture set itself ---------------------------------------------------------------------


def test_every_fixture_is_tested_and_described_in_the_readme() -> None:
    """tests/data/terminal-api/README.md names the published source each file models; a file
    without a line there (or without a test here) would be an unexplained sample."""
    files = {p.name for p in DATA.glob("*.json")}
    covered = set(RESPONSES) | set(REJECTS) | set(VALID_REQUESTS) | set(INVALID_REQUESTS)
    assert files == covered
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    described = set(re.findall(r"^\| `([^`]+\.json)` \|", readme, flags=re.M))
    assert described == files
    for name in files:
        msg = load(name)
        assert list(msg) in (["SaleToPOIResponse"], ["SaleToPOIRequest"]), name
        assert "MessageHeader" in next(iter(msg.values())), name  # SaleToPOI*.required


def test_approval_fixture_has_the_published_field_forms() -> None:
    """payment-sync-success.json (adyen-java-api-library): MaskedPan "411111 **** 1111",
    POITransactionID "tenderReference.pspReference", AcquirerTransactionID the 16-digit
    pspReference, AdditionalResponse form-encoded with lowercase %-escapes, POIReconciliationID
    a string, AuthorizedAmount 1 EUR (major units) against authorisedAmountValue=100 (minor).
    Checks the fixture, so a later edit cannot drift away from what it claims to model."""
    body = load("payment-success-form.json")["SaleToPOIResponse"]["PaymentResponse"]
    additional = body["Response"]["AdditionalResponse"]
    assert len(additional.split("&")) >= 40
    escapes = re.findall(r"%[0-9A-Fa-f]{2}", additional)
    assert escapes and all(e == e.lower() for e in escapes)
    assert isinstance(body["POIData"]["POIReconciliationID"], str)
    assert "AdditionalAttribute" in body["POIData"]["POITransactionID"]  # not in the schema
    assert body["PaymentResult"]["AmountsResp"] == {"AuthorizedAmount": 1, "Currency": "EUR"}
    assert nexo.decode_additional(additional)["authorisedAmountValue"] == "100"
    assert [r["DocumentQualifier"] for r in body["PaymentReceipt"]] == ["CashierReceipt", "CustomerReceipt"]


# --- approvals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", APPROVALS)
def test_adyen_approval_parses_under_the_adyen_profile(name: str) -> None:
    """Adyen docs (refund-payment/referenced): POITransactionID.TransactionID is
    "tenderReference.pspReference"; payment-sync-success.json: AcquirerTransactionID is the
    pspReference alone, no STAN is sent, MaskedPan is "411111 **** 1111". The adyen profile
    (acquirer.py) takes any printable RRN and no STAN."""
    result = parse_approval(name)
    assert result.outcome == PaymentOutcome.APPROVED and result.approved
    assert result.reference == REFERENCE
    assert result.amount_rials == 1  # AuthorizedAmount 1 (EUR, major units)
    tender, _, psp = result.poi_reference.partition(".")
    assert re.fullmatch(r"[A-Za-z0-9]+", tender) and re.fullmatch(r"\d{16}", psp)
    assert result.rrn == psp  # AcquirerTransactionID = the pspReference of the POITransactionID
    assert result.stan == ""
    assert result.poi_transaction == PoiTransaction(result.poi_reference, "2026-03-27T00:00:00.000Z")
    assert result.message == "approval 384907"  # PaymentAcquirerData.ApprovalCode
    # kiosk.sensitive: the mask is one the kiosk keeps; the identifiers hold no card number
    assert result.masked_pan == "411111 **** 1111" and is_masked_pan(result.masked_pan)
    for value in (result.poi_reference, result.rrn, result.message, result.masked_pan):
        assert not find_card_number(value), value


def test_base64_additional_response_gives_the_same_approval_as_the_form_encoded_one() -> None:
    """Adyen docs (point-of-sale/error-scenarios): "You'll receive either a string of
    form-encoded key-value pairs or a Base64 string that you need to decode to get a JSON
    object." Both forms of one answer must read alike."""
    form = load("payment-success-form.json")["SaleToPOIResponse"]["PaymentResponse"]["Response"]["AdditionalResponse"]
    b64 = load("payment-success-base64.json")["SaleToPOIResponse"]["PaymentResponse"]["Response"]["AdditionalResponse"]
    assert "=" not in b64.rstrip("=") and json.loads(base64.b64decode(b64))  # really Base64 of JSON
    decoded = nexo.decode_additional(b64)
    assert decoded == nexo.decode_additional(form)
    assert decoded["cardHolderName"] == "N/A" and decoded["iso8601TxDate"].endswith("+0000")
    assert decoded["pspReference"] == parse_approval("payment-success-base64.json").rrn
    assert parse_approval("payment-success-base64.json") == parse_approval("payment-success-form.json")


@pytest.mark.parametrize("name", APPROVALS)
def test_adyen_approval_under_the_shaparak_profile_is_refused_by_the_rrn_rule(name: str) -> None:
    """acquirer.py, shaparak: the RRN is ISO 8583 field 37, exactly 12 digits, and required.
    Adyen's 16-digit pspReference is not one, so a kiosk configured for Shaparak refuses the
    answer (a documented refusal, never a silent approval without a usable RRN)."""
    with pytest.raises(nexo.NexoParseError, match=r"RRN must be 12 digits \(acquirer profile shaparak\)"):
        parse_approval(name, SHAPARAK)


def test_an_eur_approval_is_not_read_as_an_irr_payment() -> None:
    """The kiosk charges IRR (nexo.CURRENCY); AmountsResp.Currency EUR must not pass for it."""
    with pytest.raises(nexo.NexoParseError, match="currency must be IRR"):
        nexo.parse_payment_body(body_of("payment-success-form.json"), REFERENCE, ADYEN)


def test_approval_for_another_sale_is_refused() -> None:
    """SaleData.SaleTransactionID echoes our reference (payment-sync-success.json)."""
    with pytest.raises(nexo.NexoHeaderMismatch):
        nexo.parse_payment_body(body_of("payment-success-form.json"), "kiosk-0327-999", ADYEN, currency="EUR")


@pytest.mark.parametrize("field,value", [("ServiceID", "2603271199"), ("POIID", "V400m-324688179"),
                                         ("SaleID", "CityKiosk-08")])
def test_approval_answering_another_request_is_a_header_mismatch(field: str, value: str) -> None:
    """TerminalAPI-v1.json info.description: the response header echoes the request's."""
    header = asked("payment-success-form.json")
    other = replace(header, **{{"ServiceID": "service_id", "POIID": "poi_id", "SaleID": "sale_id"}[field]: value})
    with pytest.raises(nexo.NexoHeaderMismatch, match=field):
        nexo.parse_response(raw("payment-success-form.json"), other)


# --- failures -----------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", [ADYEN, SHAPARAK], ids=lambda p: p.name)
def test_failure_with_only_a_response_is_a_decline(profile: Any) -> None:
    """clouddevice/payment-sync-error.json: Result Failure, ErrorCondition UnreachableHost,
    AdditionalResponse "message=Terminal+is+not+reachable", and no SaleData or POIData —
    although PaymentResponse.required lists them, Adyen's own failure omits them."""
    body = body_of("payment-failure-unreachable.json")
    result = nexo.parse_payment_body(body, REFERENCE, profile, currency="EUR")
    assert result.outcome == PaymentOutcome.DECLINED and result.error_condition == "UnreachableHost"
    assert result.poi_transaction is None and result.masked_pan == "" and result.rrn == ""
    assert nexo.parse_status(body, "PaymentResponse").additional == {"message": "Terminal is not reachable"}


def test_refusal_is_a_decline_that_keeps_the_terminal_transaction() -> None:
    """TerminalAPI-v1.json ErrorCondition enum "Refusal"; no published sample (adyen-facts §1),
    so the shape is the schema's PaymentResponse with the approval's field forms."""
    body = nexo.parse_response(raw("payment-refusal.json"), asked("payment-refusal.json"))
    result = nexo.parse_payment_body(body, "kiosk-0327-002", ADYEN, currency="EUR")
    assert result.outcome == PaymentOutcome.DECLINED and result.error_condition == "Refusal"
    assert result.poi_reference.endswith(".8826745530127301")
    assert result.masked_pan == "" and result.amount_rials == 0  # a decline carries no card data on
    assert nexo.parse_status(body, "PaymentResponse").additional["refusalReason"] == "Not enough balance"


# --- Reject events ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REJECTS))
@pytest.mark.parametrize("category", ["Payment", "Reversal", "TransactionStatus"])
def test_reject_event_is_request_rejected_with_the_terminal_reason(name: str, category: str) -> None:
    """payment-sync-error-empty.json and clouddevice/payment-async-error.json: a refused
    request is answered by a SaleToPOIRequest EventNotification, EventToNotify Reject,
    EventDetails "message=…" (form-encoded, + for spaces) — in place of any response."""
    header = nexo.Header(nexo.Category(category), "2603271133", SALE_ID, POIID)
    with pytest.raises(nexo.RequestRejected) as caught:
        nexo.parse_response(raw(name), header)
    assert caught.value.detail == REJECTS[name]
    assert REJECTS[name] in str(caught.value)


def test_reject_event_rejected_message_is_the_request_base64() -> None:
    """TerminalAPI-v1.json EventNotification.RejectedMessage: format byte, "Mandatory if
    EventToNotify is Reject"; payment-sync-error-empty.json sends it empty (against ^.+$)."""
    full = load("reject-event-no-response.json")["SaleToPOIRequest"]
    rejected = json.loads(base64.b64decode(full["EventNotification"]["RejectedMessage"], validate=True))
    assert rejected["SaleToPOIRequest"]["MessageHeader"]["ServiceID"] == full["MessageHeader"]["ServiceID"]
    assert nexo.parse_request(json.dumps(rejected)).body_name == "PaymentRequest"
    empty = load("reject-event-empty-input.json")["SaleToPOIRequest"]
    assert empty["EventNotification"]["RejectedMessage"] == "" and "ServiceID" not in empty["MessageHeader"]


# --- TransactionStatus --------------------------------------------------------------------------


def test_success_status_without_a_repeated_answer_raises_status_without_answer() -> None:
    """sale-to-poi-response-transaction-status.json: Result Success with a MessageReference and
    no RepeatedMessageResponse (the schema makes it conditional). It says nothing of the
    sale: neither approved nor not found."""
    with pytest.raises(nexo.StatusWithoutAnswer):
        parse_status("status-success-without-repeated.json", PAY_REF)


def test_in_progress_status() -> None:
    """docs.adyen.com …/transactionstatusresponsetransactioninprogressnexo: Failure,
    InProgress, "message=Uncompleted%20transaction"."""
    result = parse_status("status-in-progress.json", PAY_REF)
    assert result.outcome == PaymentOutcome.IN_PROGRESS and result.error_condition == "InProgress"
    body = nexo.parse_response(raw("status-in-progress.json"), asked("status-in-progress.json"))
    assert nexo.parse_status(body, "TransactionStatusResponse").additional == {"message": "Uncompleted transaction"}


def test_not_found_status() -> None:
    """TerminalAPI-v1.json ErrorCondition NotFound; docs.adyen.com verify-transaction-status
    outcome "Not found"."""
    result = parse_status("status-not-found.json", PAY_REF)
    assert result.outcome == PaymentOutcome.NOT_FOUND and result.error_condition == "NotFound"


def _in_irr(data: bytes, rials: int) -> bytes:
    """The same status with the repeated approval's amount in IRR: what a kiosk behind the
    adyen profile would be answered (it charges IRR)."""
    msg = json.loads(data)
    amounts = (msg["SaleToPOIResponse"]["TransactionStatusResponse"]["RepeatedMessageResponse"]
               ["RepeatedResponseMessageBody"]["PaymentResponse"]["PaymentResult"]["AmountsResp"])
    amounts.update(AuthorizedAmount=rials, Currency="IRR")
    return json.dumps(msg).encode()


def test_processed_status_repeats_the_approval() -> None:
    """docs.adyen.com …/transactionstatusresponseprocessedtransactionnexo: Success,
    MessageReference, and RepeatedMessageResponse with the payment's own header and its
    PaymentResponse — read exactly as the approval itself."""
    name = "status-payment-processed.json"
    result = parse_status(name, PAY_REF, _in_irr(raw(name), 1_200_000))
    direct = parse_approval("payment-success-form.json")
    assert result.outcome == PaymentOutcome.APPROVED
    assert result.amount_rials == 1_200_000
    assert replace(result, amount_rials=direct.amount_rials) == direct
    # as published (EUR), the kiosk's status path (IRR) does not take it for its payment
    with pytest.raises(nexo.NexoParseError, match="currency"):
        parse_status(name, PAY_REF)


@pytest.mark.parametrize("ref", [
    replace(PAY_REF, service_id="2603271199"),  # another payment of ours
    replace(PAY_REF, sale_id="CityKiosk-08"),   # another kiosk's payment
    REV_REF,                                    # we asked about the reversal
], ids=["service-id", "sale-id", "category"])
def test_processed_status_about_another_request_is_a_header_mismatch(ref: MessageRef) -> None:
    """nexo keys a transaction by (SaleID, ServiceID, MessageCategory): the repeated header
    must name the very request asked about."""
    name = "status-payment-processed.json"
    with pytest.raises(nexo.NexoHeaderMismatch):
        parse_status(name, ref, _in_irr(raw(name), 1_200_000))


def test_processed_status_of_a_reversal_repeats_the_reversal_response() -> None:
    """TerminalAPI-v1.json RepeatedResponseMessageBody.ReversalResponse; docs.adyen.com
    transactionstatusrequestnexo: MessageCategory Reversal queries reversals."""
    result = parse_status("status-reversal-processed.json", REV_REF)
    assert result.outcome == PaymentOutcome.REVERSED
    assert result.poi_transaction == PoiTransaction("8826745530129177", "2026-03-27T10:50:07.000Z")
    with pytest.raises(nexo.NexoHeaderMismatch):
        parse_status("status-reversal-processed.json", replace(REV_REF, category="Payment"))


# --- reversal -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name,amount", [("reversal-response.json", 0), ("reversal-response-reversed-amount.json", 1)])
def test_reversal_response_with_and_without_reversed_amount(name: str, amount: int) -> None:
    """docs.adyen.com …/refund-payment/reversalresponsenexo shows no ReversedAmount;
    TerminalAPI-v1.json ReversalResponse.required is [Response] only, ReversedAmount "Copy."."""
    result = nexo.parse_reversal_body(body_of(name), REFERENCE)
    assert result.outcome == PaymentOutcome.REVERSED and result.amount_rials == amount
    assert result.poi_transaction == PoiTransaction("8826745530129177", "2026-03-27T10:50:07.000Z")
    assert not find_card_number(result.poi_reference)


# --- requests (the simulator's validation) ----------------------------------------------------------


def test_valid_requests_pass_the_simulators_validation() -> None:
    """docs.adyen.com …/reversalrequestnexo (original named by POITransactionID TransactionID
    and TimeStamp, ReversalReason MerchantCancel); abort-request.json (AbortReason
    "cancelled-by-shopper", free text); adyen-java-api-library doc/TerminalApi.md
    (RequestedAmount in major units, 10.00 EUR)."""
    parsed = {name: nexo.parse_request(raw(name)) for name in VALID_REQUESTS}
    original, amount = nexo.request_original(parsed["reversal-request.json"].body)
    assert amount is None  # "ReversedAmount is implicitly equal to the AuthorizedAmount if absent"
    assert original == parse_approval("payment-success-form.json").poi_transaction
    assert parsed["abort-request.json"].body["AbortReason"] == "cancelled-by-shopper"
    assert nexo.parse_message_reference(parsed["abort-request.json"].body) == ("Payment", SALE_ID, PAY_REF.service_id, "")
    assert nexo.request_amount(parsed["payment-request.json"].body) == ("EUR", 10)
    assert nexo.request_sale(parsed["payment-request.json"].body, "PaymentRequest") == PoiTransaction(
        REFERENCE, PAY_REF.timestamp)


@pytest.mark.parametrize("name", sorted(INVALID_REQUESTS))
def test_each_negative_request_is_invalid_naming_the_field(name: str) -> None:
    """Rules from TerminalAPI-v1.json (named per file in INVALID_REQUESTS). The refusal names
    the field, and the header is still read so the Reject can echo it."""
    field, _rule = INVALID_REQUESTS[name]
    with pytest.raises(nexo.InvalidRequest) as caught:
        nexo.parse_request(raw(name))
    assert field in str(caught.value)
    header = load(name)["SaleToPOIRequest"]["MessageHeader"]
    assert caught.value.header is not None and caught.value.header.service_id == header["ServiceID"]


# --- end to end: an Adyen-shaped approval into the journal -----------------------------------------


@pytest.mark.parametrize("name", APPROVALS)
def test_adyen_approval_journals_cleanly_with_its_masked_pan(tmp_path: Path, name: str) -> None:
    """kiosk/money_path.py: PAYING journals the message reference, PAID journals
    _payment_data(result) — cleaned by kiosk.sensitive, and refused by the journal if it held
    a card number. An Adyen approval must be kept whole: masked PAN, POI transaction, RRN."""
    result = parse_approval(name)
    data = _payment_data(result)
    assert unstorable_reason(json.dumps(data)) is None
    path = tmp_path / "journal.sqlite3"
    with Journal(path, kiosk_id="kiosk-t1") as journal:
        tx = journal.begin("fee_payment", result.amount_rials, {"bill_id": "1234567", "payment_id": "89"})
        journal.append(tx.tx_id, TxState.PAYING, {"terminal": "terminal", "message_ref": PAY_REF.to_dict()})
        journal.append(tx.tx_id, TxState.PAID, data)
        tx_id = tx.tx_id
    with Journal.open_readonly(path, kiosk_id="kiosk-t1") as journal:
        got = journal.get(tx_id)
        assert got.state == TxState.PAID
        assert got.data["masked_pan"] == "411111 **** 1111"
        assert (got.data["poi_reference"], got.data["poi_timestamp"]) == (result.poi_reference, result.poi_timestamp)
        assert got.data["rrn"] == result.rrn
        assert MessageRef.from_dict(got.data["message_ref"]) == PAY_REF
        assert journal.verify().ok


@pytest.mark.parametrize("field, value", [
    ("TransactionID", ""),
    ("TimeStamp", "2026-03-27"),
    ("TimeStamp", "2026-03-27 10:30:12"),
    ("TimeStamp", "20260327T103012Z"),
    ("TimeStamp", "2026-03-27T10:30"),
])
def test_an_approval_whose_poi_transaction_a_reversal_could_not_name_is_refused(field: str, value: str) -> None:
    """TerminalAPI-v1.json TransactionIDType: TransactionID "^.+$", TimeStamp date-time (RFC
    3339). A reversal sends the POITransactionID back as it came, so an approval whose id is
    empty or whose timestamp a strict terminal would reject is refused here, not at the
    reversal."""
    msg = json.loads(raw("payment-success-form.json"))
    msg["SaleToPOIResponse"]["PaymentResponse"]["POIData"]["POITransactionID"][field] = value
    body = nexo.parse_response(json.dumps(msg), asked("payment-success-form.json"))
    with pytest.raises(nexo.NexoParseError, match="POITransactionID"):
        nexo.parse_payment_body(body, REFERENCE, ADYEN, currency="EUR")
