"""The kiosk's back-office client against the real server on loopback (SQLite), and against
tiny real HTTP servers that fail on purpose to exercise retries and back-off."""

from __future__ import annotations

import http.server
import json
import logging
import socket
import threading
import time
from typing import Any, Iterator

import pytest

from backoffice.seed import (
    DEMO_BUSINESS_LICENSE,
    DEMO_NATIONAL_CODE,
    DEMO_PLATE,
    DEMO_RENOVATION_CODE,
    DEMO_WATER_BILL,
    seed_demo,
)
from backoffice.server import RunningServer, serve_in_thread
from kiosk.backoffice_client import (
    AmountMismatch,
    JournalAnchor,
    BackofficeClient,
    BackofficeRejected,
    BackofficeUnavailable,
    BillAlreadyPaid,
    BillInfo,
    BillNotFound,
    OwnerNotFound,
    PaymentNotFound,
    PaymentPost,
    Settlement,
    SettlementPending,
)
from kiosk.errors import KioskError

TOKEN = "client-test-token-0123456789"
OTHER_TOKEN = "client-test-token-other-kiosk-42"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    url = f"sqlite:///{tmp_path_factory.mktemp('bo') / 'backoffice.sqlite3'}"
    with serve_in_thread(url) as running:
        seed_demo(url, {"kiosk-c": TOKEN, "kiosk-other": OTHER_TOKEN})
        yield running


@pytest.fixture
def client(server: RunningServer) -> Iterator[BackofficeClient]:
    with BackofficeClient(server.url, TOKEN, backoff=0.01) as c:
        yield c


def unpaid(client: BackofficeClient, index: int) -> Any:
    return client.fee_slips(national_code=DEMO_NATIONAL_CODE).unpaid[index]


def post_for(slip: Any, tx: str, **changes: Any) -> PaymentPost:
    fields = dict(transaction_id=tx, bill_id=slip.bill_id, payment_id=slip.payment_id,
                  amount_rials=slip.amount_rials, paid_at="2025-11-28T10:00:00Z", rrn="998877665544",
                  stan="000123", poi_reference="SIM-POI-1/9", masked_pan="621986******4321")
    fields.update(changes)
    return PaymentPost(**fields)


# --- against the real back-office -----------------------------------------------------------------
def test_lookup_bill_returns_a_typed_bill(client: BackofficeClient) -> None:
    info = client.lookup_bill(*DEMO_WATER_BILL)
    assert isinstance(info, BillInfo)
    assert (info.amount_rials, info.service_type, info.status) == (10_000, 1, "unpaid")
    assert info.due_date is not None


def test_unknown_bill_raises_bill_not_found_with_citizen_text(client: BackofficeClient) -> None:
    from kiosk.bills import make_bill_id, make_payment_id

    bill_id = make_bill_id("4400112", "555", 3)
    with pytest.raises(BillNotFound) as err:
        client.lookup_bill(bill_id, make_payment_id(bill_id, 30_000, 4, 2))
    assert err.value.key == "bill.not_found" and err.value.money == "none"
    assert "قبض" in err.value.message("fa") and "bill" in err.value.message("en")


def test_fee_slips_by_each_identifier(client: BackofficeClient) -> None:
    everything = client.fee_slips(national_code=DEMO_NATIONAL_CODE)
    assert len(everything.unpaid) >= 40 and everything.owner_name
    prop = client.fee_slips(national_code=DEMO_NATIONAL_CODE, renovation_code=DEMO_RENOVATION_CODE)
    assert {s.kind for s in prop.slips} == {"renovation_tax", "waste_charge"}
    assert {s.kind for s in client.fee_slips(plate=DEMO_PLATE).slips} == {"vehicle_tax"}
    assert {s.kind for s in client.fee_slips(business_license=DEMO_BUSINESS_LICENSE).slips} == {"business_tax"}


def test_unknown_owner_raises_owner_not_found_and_never_logs_the_full_code(
        client: BackofficeClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(OwnerNotFound):
        client.fee_slips(national_code="0582764191")
    assert "0582764191" not in caplog.text


def test_post_payment_settles_and_a_retry_with_the_same_key_gets_the_same_settlement(
        client: BackofficeClient) -> None:
    slip = unpaid(client, 0)
    first = client.post_payment(post_for(slip, "ctx-1"), idempotency_key="ctx-1")
    again = client.post_payment(post_for(slip, "ctx-1"), idempotency_key="ctx-1")
    assert isinstance(first, Settlement) and first == again and first.status == "settled"
    assert client.payment_status("ctx-1") == first
    with pytest.raises(PaymentNotFound):
        client.payment_status("ctx-never")
    assert PaymentPost.from_dict(post_for(slip, "ctx-1").to_dict()) == post_for(slip, "ctx-1")


def test_paying_a_paid_bill_raises_bill_already_paid(client: BackofficeClient) -> None:
    slip = unpaid(client, 0)
    client.post_payment(post_for(slip, "ctx-2"), idempotency_key="ctx-2")
    with pytest.raises(BillAlreadyPaid):
        client.post_payment(post_for(slip, "ctx-3"), idempotency_key="ctx-3")


def test_wrong_amount_raises_amount_mismatch_with_the_expected_amount(client: BackofficeClient) -> None:
    slip = unpaid(client, 0)
    with pytest.raises(AmountMismatch) as err:
        client.post_payment(post_for(slip, "ctx-4", amount_rials=slip.amount_rials + 1000), idempotency_key="ctx-4")
    assert err.value.expected_rials == slip.amount_rials
    assert str(slip.amount_rials) in err.value.message("en")


def test_key_reused_for_another_bill_is_rejected_as_conflict(client: BackofficeClient) -> None:
    client.post_payment(post_for(unpaid(client, 0), "ctx-5"), idempotency_key="ctx-5")
    with pytest.raises(BackofficeRejected) as err:
        client.post_payment(post_for(unpaid(client, 0), "ctx-5"), idempotency_key="ctx-5")
    assert (err.value.status, err.value.error_code) == (409, "idempotency.conflict")


def test_bad_token_is_rejected_once_without_retries(server: RunningServer) -> None:
    with BackofficeClient(server.url, "wrong-token", backoff=0.01) as bad:
        with pytest.raises(BackofficeRejected) as err:
            bad.lookup_bill(*DEMO_WATER_BILL)
        assert (err.value.status, err.value.error_code) == (401, "auth.unauthorized")
        assert bad.stats.requests == 1
        assert bad.health() is True


# --- retries against servers that fail on purpose ---------------------------------------------------
class ScriptedServer:
    """A real HTTP server on loopback answering from a script of (status, body) per request;
    the last entry repeats. A dict body is sent as JSON, a str as an HTML page (what a proxy
    answers). Records every request's method, path and Idempotency-Key."""

    def __init__(self, script: list[tuple[int, Any]], delay: float = 0.0) -> None:
        self.script = script
        self.seen: list[tuple[str, str, str | None]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                outer.seen.append((self.command, self.path, self.headers.get("Idempotency-Key")))
                status, body = outer.script[min(len(outer.seen) - 1, len(outer.script) - 1)]
                if delay:
                    time.sleep(delay)
                is_page = isinstance(body, str)
                data = body.encode() if is_page else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/html" if is_page else "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (read timeout): that is the point of the test

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


SETTLED = {"transaction_id": "t1", "bill_id": "2050327604613", "payment_id": "1070189", "amount_rials": 10_000,
           "tracking_code": "123456789012", "status": "settled", "settled_at": "2025-11-28T10:00:00.000Z"}
POST = PaymentPost("t1", "2050327604613", "1070189", 10_000, "2025-11-28T10:00:00Z", masked_pan="603799******1234")


def test_server_answering_503_is_tried_retries_plus_one_times_then_unavailable() -> None:
    with ScriptedServer([(503, {"error": "down"})]) as fake:
        with BackofficeClient(fake.url, TOKEN, retries=3, backoff=0.01) as c:
            with pytest.raises(BackofficeUnavailable) as err:
                c.lookup_bill(*DEMO_WATER_BILL)
    assert len(fake.seen) == 4 and err.value.attempts == 4
    assert err.value.key == "backoffice.unavailable" and err.value.money == "not_charged"


def test_refused_connection_is_retried_then_unavailable() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with BackofficeClient(f"http://127.0.0.1:{port}", TOKEN, retries=2, backoff=0.01) as c:
        with pytest.raises(BackofficeUnavailable) as err:
            c.fee_slips(plate=DEMO_PLATE)
        assert err.value.attempts == 3 and c.stats.requests == 3 and c.stats.retries == 2
        assert c.health() is False


def test_two_503s_then_success_settles_with_the_same_idempotency_key_each_time() -> None:
    with ScriptedServer([(503, {}), (503, {}), (201, SETTLED)]) as fake:
        with BackofficeClient(fake.url, TOKEN, retries=3, backoff=0.01) as c:
            settlement = c.post_payment(POST, idempotency_key="t1")
    assert settlement.tracking_code == "123456789012"
    assert [s[2] for s in fake.seen] == ["t1", "t1", "t1"]


@pytest.mark.parametrize("status,body,error", [
    (409, {"error": "idempotency.conflict"}, BackofficeRejected),
    (409, {"error": "bill.already_paid"}, BillAlreadyPaid),
    (422, {"error": "payment.amount_mismatch", "expected_rials": 20_000}, AmountMismatch),
    (404, {"error": "bill.not_found"}, BillNotFound),
    (400, {"error": "idempotency.key_required"}, BackofficeRejected),
])
def test_a_4xx_is_never_retried(status: int, body: dict[str, Any], error: type[KioskError]) -> None:
    with ScriptedServer([(status, body), (201, SETTLED)]) as fake:
        with BackofficeClient(fake.url, TOKEN, retries=3, backoff=0.01) as c:
            with pytest.raises(error):
                c.post_payment(POST, idempotency_key="t1")
    assert len(fake.seen) == 1


def test_post_that_never_gets_through_is_settlement_pending_with_money_charged() -> None:
    with ScriptedServer([(502, {})]) as fake:
        with BackofficeClient(fake.url, TOKEN, retries=1, backoff=0.01) as c:
            with pytest.raises(SettlementPending) as err:
                c.post_payment(POST, idempotency_key="t1")
    assert isinstance(err.value, BackofficeUnavailable)
    assert err.value.money == "charged_pending" and len(fake.seen) == 2


def test_read_timeout_is_retried_then_unavailable() -> None:
    with ScriptedServer([(200, {"ok": True})], delay=0.5) as fake:
        with BackofficeClient(fake.url, TOKEN, read_timeout=0.1, retries=2, backoff=0.01) as c:
            started = time.monotonic()
            with pytest.raises(BackofficeUnavailable):
                c.payment_status("t1")
            assert time.monotonic() - started < 3.0
    assert len(fake.seen) == 3


def test_back_off_grows_exponentially_with_bounded_jitter() -> None:
    c = BackofficeClient("http://127.0.0.1:9", TOKEN, backoff=0.2, max_backoff=5.0)
    for retry in range(6):
        base = min(5.0, 0.2 * 2**retry)
        delays = [c._delay(retry) for _ in range(200)]
        assert all(0.5 * base <= d <= 1.5 * base for d in delays)
        assert max(delays) - min(delays) > 0.1 * base  # jittered, not lock-step
    c.close()


# --- issue 6: only the back-office's own error code is a refusal -----------------------------------
PROXY_404 = "<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1><hr>nginx</body></html>"
NOT_OURS: list[tuple[int, Any]] = [
    (404, PROXY_404),  # a proxy's bare 404 page
    (404, {"detail": "Not Found"}),  # a web framework's 404 for a wrong base path
    (404, {}),
    (403, PROXY_404),
    (200, PROXY_404),  # a captive portal's page
    (201, {"unexpected": True}),
]


@pytest.mark.parametrize("status,body", NOT_OURS)
def test_an_answer_without_our_error_code_never_refuses_a_payment(status: int, body: Any) -> None:
    """A bare 404 used to map to BillNotFound, and the kiosk then reversed a paid fee."""
    with ScriptedServer([(status, body)]) as fake:
        with BackofficeClient(fake.url, TOKEN, retries=1, backoff=0.01) as c:
            with pytest.raises(SettlementPending) as err:
                c.post_payment(POST, idempotency_key="t1")
    assert not isinstance(err.value, (BillNotFound, BillAlreadyPaid, AmountMismatch, BackofficeRejected))
    assert err.value.money == "charged_pending"


@pytest.mark.parametrize("status,body", NOT_OURS)
def test_payment_status_on_an_answer_without_our_error_code_is_unavailable_not_not_found(
        status: int, body: Any) -> None:
    with ScriptedServer([(status, body)]) as fake:
        with BackofficeClient(fake.url, TOKEN, retries=1, backoff=0.01) as c:
            with pytest.raises(BackofficeUnavailable) as err:
                c.payment_status("t1")
            with pytest.raises(BackofficeUnavailable):
                c.lookup_bill(*DEMO_WATER_BILL)
            with pytest.raises(BackofficeUnavailable):
                c.journal_anchors()
    assert not isinstance(err.value, PaymentNotFound)


def test_our_own_not_found_codes_are_typed() -> None:
    with ScriptedServer([(404, {"error": "payment.not_found"})]) as fake:
        with BackofficeClient(fake.url, TOKEN, retries=1, backoff=0.01) as c:
            with pytest.raises(PaymentNotFound) as err:
                c.payment_status("t1")
    assert err.value.key == "payment.not_found" and err.value.message("fa") and len(fake.seen) == 1
    with ScriptedServer([(404, {"error": "bill.not_found"})]) as fake:
        with BackofficeClient(fake.url, TOKEN, retries=1, backoff=0.01) as c:
            with pytest.raises(BillNotFound):
                c.post_payment(POST, idempotency_key="t1")


def test_payment_status_answers_only_the_kiosk_that_paid(server: RunningServer, client: BackofficeClient) -> None:
    slip = unpaid(client, 0)
    settled = client.post_payment(post_for(slip, "own-1"), idempotency_key="own-1")
    assert client.payment_status("own-1") == settled and settled.tracking_code.isdigit()
    with BackofficeClient(server.url, OTHER_TOKEN, backoff=0.01) as other:
        with pytest.raises(PaymentNotFound):
            other.payment_status("own-1")


def test_anchors_posted_with_payments_come_back_in_seq_order(client: BackofficeClient) -> None:
    before = client.journal_anchors()
    base = max((a.journal_seq for a in before), default=0)
    for i in range(3):
        seq = base + 10 * (3 - i)
        post = post_for(unpaid(client, 0), f"anc-{i}", journal_seq=seq, journal_head=f"{seq:064x}")
        assert PaymentPost.from_dict(post.to_dict()) == post
        client.post_payment(post, idempotency_key=post.transaction_id)
    got = client.journal_anchors(after_seq=base)
    assert [a.journal_seq for a in got] == [base + 10, base + 20, base + 30]
    assert all(isinstance(a, JournalAnchor) and a.journal_head == f"{a.journal_seq:064x}" for a in got)
    assert [a.transaction_id for a in got] == ["anc-2", "anc-1", "anc-0"]
    assert client.journal_anchors(after_seq=base + 20) == got[2:]


def test_a_post_without_anchor_sends_no_anchor_keys() -> None:
    assert "journal_seq" not in POST.to_dict() and "journal_head" not in POST.to_dict()
    anchored = PaymentPost.from_dict({**POST.to_dict(), "journal_seq": 7, "journal_head": "ab" * 32})
    assert (anchored.journal_seq, anchored.journal_head) == (7, "ab" * 32)
    assert anchored.to_dict()["journal_seq"] == 7


def test_journal_anchors_pages_on_by_the_last_seq() -> None:
    def anchor(seq: int) -> dict[str, Any]:
        return {"transaction_id": f"t{seq}", "journal_seq": seq, "journal_head": f"{seq:064x}",
                "received_at": "2026-11-30T09:00:00.000Z"}

    with ScriptedServer([(200, {"anchors": [anchor(3), anchor(8)]}), (200, {"anchors": [anchor(11)]}),
                         (200, {"anchors": []})]) as fake:
        with BackofficeClient(fake.url, TOKEN, retries=0) as c:
            got = c.journal_anchors(after_seq=1)
    assert [a.journal_seq for a in got] == [3, 8, 11]
    assert [path for _m, path, _k in fake.seen] == [
        "/api/v1/journal-anchors?after_seq=1", "/api/v1/journal-anchors?after_seq=8",
        "/api/v1/journal-anchors?after_seq=11"]


def test_journal_anchors_out_of_order_never_loop() -> None:
    page = {"anchors": [{"transaction_id": "t5", "journal_seq": 5, "journal_head": "a" * 64,
                         "received_at": "2026-11-30T09:00:00.000Z"}]}
    with ScriptedServer([(200, page)]) as fake:  # the same page forever
        with BackofficeClient(fake.url, TOKEN, retries=0) as c:
            with pytest.raises(BackofficeUnavailable):
                c.journal_anchors(after_seq=5)
    assert len(fake.seen) == 1
