"""The simulator is as strict as the Terminal API documents, and the real driver copes with
that strictness: the real NexoTerminal against the real NexoTerminalSimulator over loopback,
plus raw `requests.post` of hand-built JSON where the driver would never send such a request.

Each test names its source: SPEC = TerminalAPI-v1.json (Adyen/adyen-openapi) and the JSON
pointer of the object; an Adyen documentation URL; or "our reading" where Adyen publishes
nothing (docs/payment-terminal.md lists the rules)."""

from __future__ import annotations

import asyncio
import base64
import json
import time as real_time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests

from devices.base import DeviceBusy, DeviceState, InvalidData
from devices.contracts import AmountTooLarge, MessageRef, PaymentOutcome, PaymentResult, PoiTransaction
from devices.terminal import nexo
from devices.terminal import simulator as simulator_module
from devices.terminal.driver import NexoTerminal
from devices.terminal.nexo import RequestRejected
from devices.terminal.simulator import NexoTerminalSimulator

POI = "SIM-POI-1"
K42 = "KIOSK-0042"
OTHER = "OTHER-KIOSK"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    return tmp_path / "terminal.sqlite"


@pytest.fixture
def sim(state_path: Path) -> Iterator[NexoTerminalSimulator]:
    with NexoTerminalSimulator(state_path=state_path, hang_s=2.0) as s:
        yield s


def terminal(url: str, sale_id: str = K42, **extra: Any) -> NexoTerminal:
    options: dict[str, Any] = {"poi_id": POI, "connect_timeout": 1.0, "allow_plain_http": True}
    options.update(extra)
    return NexoTerminal(f"terminal-{sale_id}", url=url, sale_id=sale_id, **options)


async def opened(url: str, sale_id: str = K42, **extra: Any) -> NexoTerminal:
    t = terminal(url, sale_id, **extra)
    await t.open()
    return t


# --- hand-built wire messages ---------------------------------------------------------------


def envelope(category: str, body_name: str, body: dict[str, Any], *, sale_id: str = K42,
             service_id: str | None = None, poi_id: str = POI) -> dict[str, Any]:
    return {"SaleToPOIRequest": {
        "MessageHeader": {"ProtocolVersion": "3.0", "MessageClass": "Service", "MessageCategory": category,
                          "MessageType": "Request", "ServiceID": service_id or nexo.new_service_id(),
                          "SaleID": sale_id, "POIID": poi_id},
        body_name: body}}


def payment(reference: str, amount: Any = 10_000, *, timestamp: Any = "now", **header: Any) -> dict[str, Any]:
    tx: dict[str, Any] = {"TransactionID": reference}
    if timestamp is not None:
        tx["TimeStamp"] = nexo.now_iso() if timestamp == "now" else timestamp
    return envelope("Payment", "PaymentRequest", {
        "SaleData": {"SaleTransactionID": tx},
        "PaymentTransaction": {"AmountsReq": {"Currency": "IRR", "RequestedAmount": amount}},
    }, **header)


def status_request(reference: dict[str, Any] | None, **header: Any) -> dict[str, Any]:
    return envelope("TransactionStatus", "TransactionStatusRequest",
                    {} if reference is None else {"MessageReference": reference}, **header)


def post(sim: NexoTerminalSimulator, message: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """(the simulator's JSON answer, the exact bytes sent)."""
    raw = json.dumps(message).encode()
    answer = requests.post(sim.url, data=raw, headers={"Content-Type": "application/json"}, timeout=5)
    assert answer.status_code == 200
    return answer.json(), raw


def assert_reject(answer: dict[str, Any], raw: bytes) -> str:
    """An EventNotification Reject (terminal → sale, so a SaleToPOIRequest), carrying the
    refused request Base64; returns EventDetails. Shape from SPEC
    #/components/schemas/EventNotification and Adyen's samples payment-sync-error-empty.json,
    clouddevice/payment-async-error.json (adyen-java-api-library)."""
    assert "SaleToPOIResponse" not in answer, f"expected a Reject event, got a response: {answer}"
    header = answer["SaleToPOIRequest"]["MessageHeader"]
    assert (header["MessageClass"], header["MessageCategory"], header["MessageType"]) == (
        "Event", "Event", "Notification")
    event = answer["SaleToPOIRequest"]["EventNotification"]
    assert event["EventToNotify"] == "Reject"
    assert base64.b64decode(event["RejectedMessage"]) == raw
    assert event["EventDetails"].startswith("message=")
    return str(event["EventDetails"])


def repeated(answer: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(MessageHeader, body) of a TransactionStatusResponse's RepeatedMessageResponse."""
    body = answer["SaleToPOIResponse"]["TransactionStatusResponse"]
    assert body["Response"]["Result"] == "Success", body
    rep = body["RepeatedMessageResponse"]
    return rep["MessageHeader"], rep["RepeatedResponseMessageBody"]


def status_error(answer: dict[str, Any]) -> str:
    body = answer["SaleToPOIResponse"]["TransactionStatusResponse"]
    assert body["Response"]["Result"] == "Failure", body
    assert "RepeatedMessageResponse" not in body
    return str(body["Response"]["ErrorCondition"])


def spy_on(sim: NexoTerminalSimulator) -> list[dict[str, Any]]:
    """Every request the simulator receives, decoded; the real handler still answers."""
    seen: list[dict[str, Any]] = []
    handle = sim.handle

    def recording(raw: bytes) -> Any:
        seen.append(json.loads(raw))
        return handle(raw)

    sim.handle = recording  # type: ignore[method-assign]
    return seen


def requests_named(seen: list[dict[str, Any]], body_name: str) -> list[dict[str, Any]]:
    return [m["SaleToPOIRequest"] for m in seen if body_name in m.get("SaleToPOIRequest", {})]


# --- rule 1: TransactionStatus finds a transaction by its message reference ---------------------


def test_status_is_keyed_by_sale_id_service_id_and_category(sim: NexoTerminalSimulator) -> None:
    """SPEC #/components/schemas/MessageReference (SaleID, ServiceID, MessageCategory) and
    https://docs.adyen.com/point-of-sale/basic-tapi-integration/verify-transaction-status/transactionstatusrequestnexo
    ("SaleID of message to query", "ServiceID of message to query", MessageCategory "Payment or
    Reversal"): another kiosk that asks with KIOSK-0042's ServiceID asks about its own SaleID and
    gets NotFound, never KIOSK-0042's sale; the same ServiceID under category Reversal is not the
    payment either."""

    async def go() -> dict[str, Any]:
        k42, other = await opened(sim.url, K42), await opened(sim.url, OTHER)
        ref = k42.new_ref("tx-k42")
        paid = await k42.pay(ref, 10_000, timeout=5)
        borrowed = MessageRef("Payment", "tx-k42", ref.service_id, OTHER, POI, ref.timestamp)
        return {"paid": paid, "own": await k42.transaction_status(ref),
                "other": await other.transaction_status(borrowed),
                "as_reversal": await k42.transaction_status(replace(ref, category="Reversal"))}

    r = run(go())
    assert r["own"].outcome == PaymentOutcome.APPROVED and r["own"].poi_reference == r["paid"].poi_reference
    assert r["other"].outcome == PaymentOutcome.NOT_FOUND, "another SaleID must never see KIOSK-0042's sale"
    assert r["other"].poi_reference == "" and r["other"].rrn == ""
    assert r["as_reversal"].outcome == PaymentOutcome.NOT_FOUND


def test_status_without_service_id_returns_the_sale_ids_most_recent_payment(sim: NexoTerminalSimulator) -> None:
    """https://docs.adyen.com/point-of-sale/basic-tapi-integration/verify-transaction-status/transactionstatusrequestnexo:
    "The most recent transaction matching the parameters is returned"; MessageCategory defaults
    to Payment; SPEC #/components/schemas/MessageReference SaleID "default MessageHeader.SaleID"
    and #/components/schemas/TransactionStatusRequest (MessageReference not required). Most
    recent *for that SaleID*: another kiosk's later sale is not it."""

    async def go() -> list[MessageRef]:
        k42, other = await opened(sim.url, K42), await opened(sim.url, OTHER)
        refs = []
        for reference in ("tx-first", "tx-second"):
            refs.append(k42.new_ref(reference))
            await k42.pay(refs[-1], 10_000, timeout=5)
        await other.pay(other.new_ref("tx-other-later"), 10_000, timeout=5)
        return refs

    first, second = run(go())
    for reference in ({"MessageCategory": "Payment", "SaleID": K42}, {"SaleID": K42}, None):
        header, body = repeated(post(sim, status_request(reference))[0])
        assert (header["MessageCategory"], header["SaleID"], header["ServiceID"]) == ("Payment", K42, second.service_id)
        assert body["PaymentResponse"]["SaleData"]["SaleTransactionID"]["TransactionID"] == "tx-second"
    # a SaleID with no payment at all: NotFound, not someone else's
    assert status_error(post(sim, status_request({"SaleID": "KIOSK-NEW"}, sale_id="KIOSK-NEW"))[0]) == "NotFound"


def test_sale_transaction_id_in_message_reference_is_ignored_by_default(sim: NexoTerminalSimulator) -> None:
    """Our reading: SPEC #/components/schemas/MessageReference has no SaleTransactionID, so a
    terminal that does not document the extension ignores it — the lookup is the SaleID's most
    recent Payment, not the sale named by our reference."""

    async def go() -> None:
        k42 = await opened(sim.url, K42)
        for reference in ("tx-a", "tx-b"):
            await k42.pay(k42.new_ref(reference), 10_000, timeout=5)

    run(go())
    answer, _ = post(sim, status_request({"MessageCategory": "Payment", "SaleID": K42,
                                          "SaleTransactionID": {"TransactionID": "tx-a"}}))
    _, body = repeated(answer)
    assert body["PaymentResponse"]["SaleData"]["SaleTransactionID"]["TransactionID"] == "tx-b"


def test_reference_lookup_finds_a_sale_by_sale_transaction_id_only_within_the_askers_sale_id(
        tmp_path: Path) -> None:
    """Our extension (devices/terminal/nexo.py module doc), only for a terminal built with
    reference_lookup=True: MessageReference.SaleTransactionID names a sale of the asker's own
    SaleID. The driver sends it only with status_by_reference=True, and only for a sale whose
    ServiceID was lost (lost_ref): a ServiceID, when known, is what a terminal finds a sale by."""
    with NexoTerminalSimulator(state_path=tmp_path / "lookup.sqlite", reference_lookup=True) as lookup:
        seen = spy_on(lookup)

        async def go() -> dict[str, Any]:
            k42 = await opened(lookup.url, K42, status_by_reference=True)
            other = await opened(lookup.url, OTHER)
            ref_a = k42.new_ref("tx-a")
            paid_a = await k42.pay(ref_a, 10_000, timeout=5)
            await k42.pay(k42.new_ref("tx-b"), 20_000, timeout=5)
            other_ref = other.new_ref("tx-a")  # the same sale reference, another kiosk
            other_paid = await other.pay(other_ref, 30_000, timeout=5)
            await other.pay(other.new_ref("tx-only-other"), 40_000, timeout=5)
            return {"paid_a": paid_a, "other_paid": other_paid, "ref_a": ref_a,
                    "lost_ref_elsewhere": other.lost_ref("tx-a"),
                    "by_driver": await k42.transaction_status(k42.lost_ref("tx-a")),
                    "other_by_driver": await other.transaction_status(other_ref)}

        r = run(go())
        # the driver option puts SaleTransactionID (and no ServiceID) in a lost sale's
        # MessageReference; with a ServiceID, or without the option, none
        sent = [m["TransactionStatusRequest"]["MessageReference"]
                for m in requests_named(seen, "TransactionStatusRequest")]
        assert sent[0]["SaleTransactionID"] == {"TransactionID": "tx-a"} and "ServiceID" not in sent[0]
        assert "SaleTransactionID" not in sent[1]
        assert r["lost_ref_elsewhere"] is None  # OTHER-KIOSK's driver has no such option
        assert r["by_driver"].poi_reference == r["paid_a"].poi_reference
        assert r["other_by_driver"].poi_reference == r["other_paid"].poi_reference

        # by reference alone (no ServiceID): KIOSK-0042's tx-a, not the most recent, not OTHER's tx-a
        header, body = repeated(post(lookup, status_request(
            {"MessageCategory": "Payment", "SaleID": K42, "SaleTransactionID": {"TransactionID": "tx-a"}}))[0])
        assert header["ServiceID"] == r["ref_a"].service_id
        assert body["PaymentResponse"]["POIData"]["POITransactionID"]["TransactionID"] == r["paid_a"].poi_reference
        # a reference only another SaleID used is not found by KIOSK-0042
        for reference in ({"MessageCategory": "Payment", "SaleID": K42,
                           "SaleTransactionID": {"TransactionID": "tx-only-other"}},
                          {"SaleTransactionID": {"TransactionID": "tx-only-other"}}):
            assert status_error(post(lookup, status_request(reference))[0]) == "NotFound"


def test_reference_lookup_does_not_cross_into_a_sale_id_named_in_the_message_reference(tmp_path: Path) -> None:
    """Our extension (simulator module doc: "only within the asker's SaleID"): OTHER-KIOSK,
    asking (header SaleID OTHER-KIOSK) with a MessageReference that names KIOSK-0042's SaleID
    and one of its SaleTransactionIDs, must not reach KIOSK-0042's sale by our reference. (By
    ServiceID, SPEC MessageReference.SaleID "SaleID of message to query" does allow naming
    another SaleID; the extension has no such text behind it.)"""
    with NexoTerminalSimulator(state_path=tmp_path / "lookup.sqlite", reference_lookup=True) as lookup:

        async def go() -> None:
            k42 = await opened(lookup.url, K42)
            await k42.pay(k42.new_ref("tx-b"), 20_000, timeout=5)

        run(go())
        own = post(lookup, status_request({"MessageCategory": "Payment", "SaleID": K42,
                                           "SaleTransactionID": {"TransactionID": "tx-b"}}))[0]
        assert repeated(own)[1]["PaymentResponse"]["SaleData"]["SaleTransactionID"]["TransactionID"] == "tx-b"
        answer = post(lookup, status_request({"MessageCategory": "Payment", "SaleID": K42,
                                              "SaleTransactionID": {"TransactionID": "tx-b"}}, sale_id=OTHER))[0]
        body = answer["SaleToPOIResponse"]["TransactionStatusResponse"]
        assert body["Response"]["Result"] == "Failure", (
            "with reference_lookup, a request whose header SaleID is OTHER-KIOSK found KIOSK-0042's sale "
            "tx-b by SaleTransactionID: the extension must stay within the asker's SaleID")


# --- rule 2: status after a reversal, and after a restart ---------------------------------------


def test_status_after_reversal_and_after_a_restart_on_the_same_state(state_path: Path) -> None:
    """Our reading (Adyen publishes no status of a reversed payment; fact sheet gap 4): the
    status of the payment repeats the answer once given (APPROVED); the reversal's own status
    is asked with MessageCategory Reversal and its ServiceID (SPEC
    #/components/schemas/RepeatedResponseMessageBody has ReversalResponse) and reads REVERSED;
    a second reversal of a reversed sale is refused NotAllowed. A simulator restarted on the
    same state_path answers all of it the same (our reading: a terminal's journal is durable)."""

    async def before(url: str) -> dict[str, Any]:
        t = await opened(url)
        pay_ref = t.new_ref("tx-rev")
        paid = await t.pay(pay_ref, 60_000, timeout=5)
        rev_ref = t.new_ref("tx-rev", "Reversal")
        reversed_ = await t.reverse(rev_ref, 60_000, paid.poi_transaction)
        again_ref = t.new_ref("tx-rev", "Reversal")
        again = await t.reverse(again_ref, 60_000, paid.poi_transaction)
        return {"refs": (pay_ref, rev_ref, again_ref), "paid": paid, "reversed": reversed_, "again": again,
                "statuses": [await t.transaction_status(r) for r in (pay_ref, rev_ref, again_ref)]}

    async def after(url: str, refs: tuple[MessageRef, ...]) -> dict[str, Any]:
        t = await opened(url)
        paid, _, _ = refs
        return {"statuses": [await t.transaction_status(r) for r in refs],
                "third": await t.reverse(t.new_ref("tx-rev", "Reversal"), 60_000,
                                         (await t.transaction_status(paid)).poi_transaction)}

    with NexoTerminalSimulator(state_path=state_path) as first:
        b = run(before(first.url))
    assert b["reversed"].outcome == PaymentOutcome.REVERSED
    assert b["again"].outcome == PaymentOutcome.DECLINED and b["again"].error_condition == "NotAllowed"
    expected = [PaymentOutcome.APPROVED, PaymentOutcome.REVERSED, PaymentOutcome.DECLINED]
    assert [s.outcome for s in b["statuses"]] == expected
    assert b["statuses"][0].rrn == b["paid"].rrn and b["statuses"][0].poi_timestamp == b["paid"].poi_timestamp

    with NexoTerminalSimulator(state_path=state_path) as second:
        a = run(after(second.url, tuple(MessageRef.from_dict(r.to_dict()) for r in b["refs"])))
        assert second.net_charged("tx-rev") == 0
        assert [e["status"] for e in second.ledger()] == ["reversed"]
    assert [s.outcome for s in a["statuses"]] == expected
    assert a["statuses"][0].rrn == b["paid"].rrn
    assert a["statuses"][1].poi_reference == b["reversed"].poi_reference
    assert a["third"].outcome == PaymentOutcome.DECLINED and a["third"].error_condition == "NotAllowed"


# --- rule 3: a request the schema refuses is answered with a Reject event -----------------------


def _reversal(kept: PaymentResult, reason: str) -> dict[str, Any]:
    """A reversal of the approved sale `kept`, valid but for `reason`."""
    return envelope("Reversal", "ReversalRequest", {
        "OriginalPOITransaction": {"POITransactionID": {"TransactionID": kept.poi_reference,
                                                        "TimeStamp": kept.poi_timestamp}},
        "ReversalReason": reason})


def _abort(in_flight: MessageRef, reason: str | None) -> dict[str, Any]:
    """An abort of the payment in flight, valid but for `reason`."""
    body: dict[str, Any] = {"MessageReference": {"MessageCategory": "Payment", "SaleID": in_flight.sale_id,
                                                 "ServiceID": in_flight.service_id}}
    if reason is not None:
        body["AbortReason"] = reason
    return envelope("Abort", "AbortRequest", body)


#: each case gets (the approved sale kept, the ref of the payment in flight)
SCHEMA_REFUSALS: dict[str, Callable[[PaymentResult, MessageRef], dict[str, Any]]] = {
    # SPEC #/components/schemas/TransactionIDType required [TransactionID, TimeStamp]
    "payment without SaleTransactionID.TimeStamp": lambda kept, flight: payment("tx-bad", timestamp=None),
    # SPEC TransactionIDType/properties/TimeStamp format date-time
    "TimeStamp not a date-time": lambda kept, flight: payment("tx-bad", timestamp="yesterday"),
    # SPEC #/components/schemas/ReversalReason enum [CustCancel, Malfunction, MerchantCancel, Unable2Compl]
    "ReversalReason outside its enum": lambda kept, flight: _reversal(kept, "Oops"),
    # SPEC #/components/schemas/AbortRequest required [MessageReference, AbortReason]
    "AbortRequest without AbortReason": lambda kept, flight: _abort(flight, None),
    # SPEC #/components/schemas/AmountsReq/properties/RequestedAmount maximum 99999999.999999
    "RequestedAmount over the maximum": lambda kept, flight: payment("tx-bad", 100_000_000),
}


@pytest.mark.parametrize("case", list(SCHEMA_REFUSALS))
def test_a_request_the_schema_refuses_is_answered_with_a_reject_event_and_changes_nothing(
        sim: NexoTerminalSimulator, case: str) -> None:
    """SPEC objects named per case (SCHEMA_REFUSALS); the answer is SPEC
    #/components/schemas/EventNotification with EventToNotify Reject, wrapped in a
    SaleToPOIRequest as in Adyen's Reject samples. Nothing the terminal keeps changes: the
    approved sale stays approved and unaborted, no new sale, no answer recorded under the
    rejected ServiceID."""
    sim.latency_s = 0.3  # the abort case races a payment in flight: a valid abort would stop it

    async def go() -> PaymentResult:
        t = await opened(sim.url)
        kept = await t.pay(t.new_ref("tx-kept"), 10_000, timeout=5)
        flight = t.new_ref("tx-in-flight")
        task = asyncio.create_task(t.pay(flight, 20_000, timeout=5))
        await asyncio.sleep(0.1)
        message = SCHEMA_REFUSALS[case](kept, flight)
        answer, raw = await asyncio.to_thread(post, sim, message)
        assert_reject(answer, raw)
        service_id = message["SaleToPOIRequest"]["MessageHeader"]["ServiceID"]
        for category in ("Payment", "Reversal"):
            late, _ = await asyncio.to_thread(post, sim, status_request(
                {"MessageCategory": category, "SaleID": K42, "ServiceID": service_id}))
            assert status_error(late) == "NotFound"
        return await task

    in_flight = run(go())
    assert in_flight.outcome == PaymentOutcome.APPROVED, "a rejected abort must not stop the payment"
    assert [(e["reference"], e["status"]) for e in sim.ledger()] == [("tx-kept", "approved"),
                                                                     ("tx-in-flight", "approved")]
    assert len(sim.rejected) == 1


def test_the_driver_raises_request_rejected_for_what_it_sends_and_stays_online(sim: NexoTerminalSimulator) -> None:
    """SPEC TransactionIDType/TimeStamp format date-time, for the two timestamps the driver
    copies from what the caller hands it (a journaled MessageRef, a PaymentResult's
    POITransactionID): a bad one goes out, comes back Reject, and the driver raises
    RequestRejected — a well-formed answer, so the device stays ONLINE and nothing is kept."""

    async def go() -> tuple[NexoTerminal, PaymentResult]:
        t = await opened(sim.url)
        paid = await t.pay(t.new_ref("tx-ok"), 10_000, timeout=5)
        with pytest.raises(RequestRejected) as payment_err:
            await t.pay(replace(t.new_ref("tx-stamp"), timestamp="yesterday"), 10_000, timeout=5)
        assert "date-time" in payment_err.value.detail
        assert t.state == DeviceState.ONLINE
        with pytest.raises(RequestRejected):
            await t.reverse(t.new_ref("tx-ok", "Reversal"), 10_000, PoiTransaction(paid.poi_reference, "yesterday"))
        return t, paid

    t, paid = run(go())
    assert t.state == DeviceState.ONLINE
    assert sim.requests_seen == ["DiagnosisRequest", "PaymentRequest"]  # the rejected two never got past parsing
    assert len(sim.rejected) == 2
    assert [(e["reference"], e["status"]) for e in sim.ledger()] == [("tx-ok", "approved")]


# --- rule 4: a ServiceID is unique per terminal for 48 hours ------------------------------------


class _Clock:
    """The simulator module's `time`, shifted: lets a test stand 47 or 49 hours later."""

    def __init__(self, offset_s: float) -> None:
        self.offset_s = offset_s

    def time(self) -> float:
        return real_time.time() + self.offset_s


def test_a_service_id_is_unique_per_sale_id_for_48_hours(sim: NexoTerminalSimulator,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """https://docs.adyen.com/point-of-sale/basic-tapi-integration/refund-payment/referenced
    (ServiceID "Must be unique within the last 48 hours for the terminal (POIID) being used");
    the Reject is our reading (Adyen does not publish the answer). The same ref paid twice is
    refused and charges once; a request of another category reusing it is refused too; another
    SaleID may use the same ServiceID; 48 hours later the ServiceID is free again."""
    clock = _Clock(0.0)
    monkeypatch.setattr(simulator_module, "time", clock)

    async def go() -> dict[str, Any]:
        k42, other = await opened(sim.url, K42), await opened(sim.url, OTHER)
        ref = k42.new_ref("tx-once")
        first = await k42.pay(ref, 10_000, timeout=5)
        with pytest.raises(RequestRejected) as again:
            await k42.pay(ref, 10_000, timeout=5)
        reused = status_request({"SaleID": K42, "ServiceID": ref.service_id}, service_id=ref.service_id)
        assert_reject(*await asyncio.to_thread(post, sim, reused))
        borrowed = MessageRef("Payment", "tx-other", ref.service_id, OTHER, POI, nexo.now_iso())
        other_paid = await other.pay(borrowed, 20_000, timeout=5)
        clock.offset_s = 47 * 3600
        with pytest.raises(RequestRejected):
            await k42.pay(replace(ref, reference="tx-47h"), 10_000, timeout=5)
        clock.offset_s = 48 * 3600 + 60
        later = await k42.pay(replace(ref, reference="tx-49h", timestamp=nexo.now_iso()), 30_000, timeout=5)
        return {"first": first, "again": again.value, "other": other_paid, "later": later}

    r = run(go())
    assert r["first"].outcome == PaymentOutcome.APPROVED
    assert "48 hours" in r["again"].detail
    assert r["other"].outcome == PaymentOutcome.APPROVED
    assert r["later"].outcome == PaymentOutcome.APPROVED
    assert [(e["reference"], e["status"]) for e in sim.ledger()] == [
        ("tx-once", "approved"), ("tx-other", "approved"), ("tx-49h", "approved")]
    assert sim.net_charged("tx-once") == 10_000


# --- rule 5: one payment at a time ----------------------------------------------------------------


def test_an_overlapping_payment_is_answered_busy_and_not_recorded(sim: NexoTerminalSimulator) -> None:
    """Our reading (fact sheet 4(b): Adyen does not publish the answer; SPEC
    #/components/schemas/ErrorCondition has Busy): while one payment is in progress a second,
    from another kiosk, is answered Failure/Busy — DeviceBusy from the driver — and the terminal
    keeps nothing of it; once the first is done the second kiosk can pay."""
    sim.latency_s = 0.5

    async def go() -> dict[str, Any]:
        a, b = await opened(sim.url, "KIOSK-A"), await opened(sim.url, "KIOSK-B")
        ref_a, ref_b = a.new_ref("tx-a"), b.new_ref("tx-b")
        results = await asyncio.gather(a.pay(ref_a, 10_000, timeout=5), b.pay(ref_b, 20_000, timeout=5),
                                       return_exceptions=True)
        busy_ref = ref_a if isinstance(results[0], DeviceBusy) else ref_b
        busy_terminal = a if busy_ref is ref_a else b
        status = await busy_terminal.transaction_status(busy_ref)
        during = sim.ledger()
        sim.latency_s = 0.0
        retry = await busy_terminal.pay(busy_terminal.new_ref(busy_ref.reference), 5_000, timeout=5)
        return {"results": results, "status": status, "retry": retry, "busy_state": busy_terminal.state,
                "during": during, "approved_ref": ref_b if busy_ref is ref_a else ref_a}

    r = run(go())
    outcomes = sorted(type(x).__name__ if isinstance(x, Exception) else str(x.outcome) for x in r["results"])
    assert outcomes == ["DeviceBusy", str(PaymentOutcome.APPROVED)], r["results"]
    assert r["status"].outcome == PaymentOutcome.NOT_FOUND
    assert r["busy_state"] == DeviceState.ONLINE
    assert r["retry"].outcome == PaymentOutcome.APPROVED
    assert [(e["reference"], e["status"]) for e in r["during"]] == [(r["approved_ref"].reference, "approved")]
    assert len(sim.ledger()) == 2  # and then the retry


# --- rule 6: a reversal names the original by POITransactionID and its TimeStamp ------------------


def test_reversal_names_the_original_by_its_poi_transaction_id_and_timestamp(sim: NexoTerminalSimulator) -> None:
    """SPEC #/components/schemas/OriginalPOITransaction/properties/POITransactionID is a
    TransactionIDType (TransactionID and TimeStamp); Adyen
    https://docs.adyen.com/pt/point-of-sale/basic-tapi-integration/refund-payment/referenced: both
    come from the payment response's POIData.POITransactionID. The driver sends the sale's own
    TimeStamp (not the reversal's); the right id with another TimeStamp names nothing."""
    seen = spy_on(sim)

    async def go() -> dict[str, Any]:
        t = await opened(sim.url)
        paid = await t.pay(t.new_ref("tx-orig"), 50_000, timeout=5)
        await asyncio.sleep(0.02)  # the reversal's own timestamps come strictly later
        other_stamp = "2020-01-01T00:00:00.000Z"
        wrong = await t.reverse(t.new_ref("tx-orig", "Reversal"), 50_000,
                                PoiTransaction(paid.poi_reference, other_stamp))
        charged_after_wrong = sim.net_charged("tx-orig")
        rev_ref = t.new_ref("tx-orig", "Reversal")
        right = await t.reverse(rev_ref, 50_000, paid.poi_transaction)
        return {"paid": paid, "wrong": wrong, "charged_after_wrong": charged_after_wrong, "right": right,
                "rev_ref": rev_ref}

    r = run(go())
    paid = r["paid"]
    assert r["wrong"].outcome == PaymentOutcome.NOT_FOUND and r["wrong"].error_condition == "NotFound"
    assert r["charged_after_wrong"] == 50_000
    assert r["right"].outcome == PaymentOutcome.REVERSED
    reversals = requests_named(seen, "ReversalRequest")
    assert len(reversals) == 2
    sent = reversals[1]["ReversalRequest"]
    assert sent["OriginalPOITransaction"]["POITransactionID"] == {
        "TransactionID": paid.poi_reference, "TimeStamp": paid.poi_timestamp}
    assert paid.poi_timestamp != r["rev_ref"].timestamp
    assert sent["SaleData"]["SaleTransactionID"]["TimeStamp"] == r["rev_ref"].timestamp
    assert sent["ReversalReason"] in nexo.REVERSAL_REASONS
    assert sim.net_charged("tx-orig") == 0


# --- rule 7: the amount maximum is enforced before the terminal is asked -------------------------


def test_an_amount_over_the_schema_maximum_is_refused_before_anything_is_sent(sim: NexoTerminalSimulator) -> None:
    """SPEC #/components/schemas/AmountsReq/properties/RequestedAmount maximum 99999999.999999:
    whole rials, so 99,999,999 is the largest fee; 100,000,000 raises AmountTooLarge (an
    InvalidData) from pay() and nothing goes out. The largest one goes through."""

    async def go() -> tuple[NexoTerminal, list[str], PaymentResult]:
        t = await opened(sim.url)
        before = list(sim.requests_seen)
        for amount in (100_000_000, 10**12):
            with pytest.raises(AmountTooLarge) as err:
                await t.pay(t.new_ref("tx-huge"), amount, timeout=5)
            assert isinstance(err.value, InvalidData)
        unchanged = list(sim.requests_seen)
        assert unchanged == before
        return t, unchanged, await t.pay(t.new_ref("tx-max"), 99_999_999, timeout=5)

    t, seen_before_max, largest = run(go())
    assert seen_before_max == ["DiagnosisRequest"]
    assert t.capabilities["max_amount_rials"] == 99_999_999
    assert largest.outcome == PaymentOutcome.APPROVED and largest.amount_rials == 99_999_999
    assert [e["reference"] for e in sim.ledger()] == ["tx-max"]


# --- rule 8: an unknown POIID is rejected ------------------------------------------------------------


def test_a_request_for_another_poiid_is_rejected(sim: NexoTerminalSimulator) -> None:
    """SPEC #/components/schemas/MessageHeader required [..., POIID]; that a terminal rejects a
    POIID not its own (rather than answering for it) is our reading. Raw: a payment to
    SIM-POI-9 is a Reject. Driver: the terminal at the kiosk's address was swapped for another
    (POIID SIM-POI-2): the payment comes back Reject, RequestRejected, nothing charged."""
    answer, raw = post(sim, payment("tx-elsewhere", poi_id="SIM-POI-9"))
    assert "SIM-POI-9" in assert_reject(answer, raw)

    async def go() -> NexoTerminal:
        t = await opened(sim.url)
        sim.poi_id = "SIM-POI-2"
        with pytest.raises(RequestRejected):
            await t.pay(t.new_ref("tx-swapped"), 10_000, timeout=5)
        return t

    t = run(go())
    assert t.state == DeviceState.ONLINE
    assert len(sim.rejected) == 2
    assert sim.ledger() == []


def test_a_driver_whose_open_was_rejected_tries_again_on_the_next_call(sim: NexoTerminalSimulator) -> None:
    """Our reading (devices/base.py: an error with state_after None leaves the state as it
    was): a Reject during open() (the terminal was briefly another POIID) must not leave the
    driver in STARTING, where every later call is refused without ever reaching the terminal."""

    async def go() -> tuple[str, Any]:
        sim.poi_id = "SIM-POI-2"
        t = terminal(sim.url)
        with pytest.raises(RequestRejected):
            await t.open()
        state = t.state
        sim.poi_id = POI  # the right terminal is back
        try:
            result: Any = await t.pay(t.new_ref("tx-after-open"), 10_000, timeout=5)
        except Exception as exc:  # noqa: BLE001 - reported below
            result = exc
        return state, result

    state, result = run(go())
    assert state != DeviceState.STARTING and not isinstance(result, Exception), (
        f"after a Reject during open() the driver stays {state!r} and the next pay() gives {result!r} "
        "without asking the terminal: Device.open() leaves STARTING for errors whose state_after is None "
        "(RequestRejected, CommandTimeout, DeviceBusy, InvalidData), and NexoTerminal._exchange reopens only "
        "from OFFLINE")
