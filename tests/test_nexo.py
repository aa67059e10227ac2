"""The strict nexo parser: every off-protocol answer is a NexoParseError, and nothing else escapes."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.base import ProtocolError
from devices.contracts import PaymentOutcome
from devices.terminal import nexo

REQ = nexo.Header(nexo.Category.PAYMENT, "abc123", "KIOSK-7", "POI-1")
STATUS_REQ = nexo.Header(nexo.Category.TRANSACTION_STATUS, "st0001", "KIOSK-7", "POI-1")
SALE = nexo.Sale(
    reference="tx-1", poi_transaction_id="POI-1-00000001", amount_rials=120_000, status="approved",
    masked_pan="603799******1234", rrn="123456789012", stan="000042", approval_code="654321",
    sale_timestamp="2025-01-02T03:04:05.000Z", poi_timestamp="2025-01-02T03:04:06.000Z",
    service_id="abc123", sale_id="KIOSK-7",
)


def approved() -> dict[str, Any]:
    return nexo.response_message(REQ, "PaymentResponse", nexo.payment_response_body(SALE))


def status_answer(sale: nexo.Sale | None = SALE) -> dict[str, Any]:
    return nexo.response_message(STATUS_REQ, "TransactionStatusResponse", nexo.status_response_body(STATUS_REQ, sale))


def parse_payment(msg: Any) -> Any:
    raw = msg if isinstance(msg, (bytes, str)) else json.dumps(msg)
    return nexo.parse_payment_body(nexo.parse_response(raw, REQ), "tx-1")


def test_approved_payment_response_carries_rrn_stan_and_masked_pan() -> None:
    result = parse_payment(approved())
    assert result.outcome == PaymentOutcome.APPROVED
    assert (result.amount_rials, result.rrn, result.stan) == (120_000, "123456789012", "000042")
    assert result.masked_pan == "603799******1234"
    assert result.poi_reference == "POI-1-00000001"


def test_request_carries_irr_amount_as_whole_rials_and_header_fields() -> None:
    msg = nexo.payment_request(REQ, "tx-1", 120_000)
    header = msg["SaleToPOIRequest"]["MessageHeader"]
    assert header == {"ProtocolVersion": "3.0", "MessageClass": "Service", "MessageCategory": "Payment",
                      "MessageType": "Request", "ServiceID": "abc123", "SaleID": "KIOSK-7", "POIID": "POI-1"}
    amounts = msg["SaleToPOIRequest"]["PaymentRequest"]["PaymentTransaction"]["AmountsReq"]
    assert amounts == {"Currency": "IRR", "RequestedAmount": 120_000}
    assert isinstance(amounts["RequestedAmount"], int)


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
    with pytest.raises(nexo.NexoParseError):
        parse_payment(msg)


def test_response_about_another_sale_reference_is_rejected() -> None:
    with pytest.raises(nexo.NexoHeaderMismatch):
        nexo.parse_payment_body(nexo.parse_response(json.dumps(approved()), REQ), "tx-2")


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


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"null", b"\xff\xfe", b'{"SaleToPOIResponse": []}', "[" * 100_000])
def test_garbage_is_a_parse_error(raw: Any) -> None:
    with pytest.raises(nexo.NexoParseError):
        parse_payment(raw)


def test_failure_without_error_condition_is_a_parse_error() -> None:
    msg = nexo.response_message(REQ, "PaymentResponse", {"Response": {"Result": "Failure"}})
    with pytest.raises(nexo.NexoParseError):
        parse_payment(msg)


def test_status_of_reversed_sale_is_reversed_and_unknown_is_not_found() -> None:
    reversed_sale = nexo.Sale(**{**SALE.__dict__, "status": "reversed"})
    got = nexo.parse_transaction_status_body(
        nexo.parse_response(json.dumps(status_answer(reversed_sale)), STATUS_REQ), "tx-1", STATUS_REQ)
    assert got.outcome == PaymentOutcome.REVERSED and got.rrn == SALE.rrn
    missing = nexo.parse_transaction_status_body(
        nexo.parse_response(json.dumps(status_answer(None)), STATUS_REQ), "tx-1", STATUS_REQ)
    assert missing.outcome == PaymentOutcome.NOT_FOUND


def test_status_repeats_the_original_payment_response() -> None:
    got = nexo.parse_transaction_status_body(nexo.parse_response(json.dumps(status_answer()), STATUS_REQ), "tx-1", STATUS_REQ)
    assert got.outcome == PaymentOutcome.APPROVED and (got.rrn, got.stan) == (SALE.rrn, SALE.stan)


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


TEMPLATES = [approved(), status_answer(), status_answer(nexo.Sale(**{**SALE.__dict__, "status": "reversed"})),
             status_answer(None)]
PATHS = [_paths(t) for t in TEMPLATES]


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


def _parse_any(raw: bytes | str) -> None:
    """Every parse entry point the driver uses: a result or a NexoParseError, nothing else."""
    for header, reader in (
        (REQ, lambda b: nexo.parse_payment_body(b, "tx-1")),
        (STATUS_REQ, lambda b: nexo.parse_transaction_status_body(b, "tx-1", STATUS_REQ)),
    ):
        try:
            result = reader(nexo.parse_response(raw, header))
        except nexo.NexoParseError:
            continue
        assert isinstance(result.masked_pan, str) and len(result.masked_pan) <= nexo.MAX_MASKED_PAN


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
