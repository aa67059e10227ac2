"""Signed receipts: the key on disk, the CK2 payload (round trip, tampering, wrong key, size;
CK1 receipts still verify), the printed Persian/English document, its ESC/POS bytes, and
`kiosk receipt` exit codes."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import zxingcpp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.printer.decoder import decode_escpos
from kiosk.cli import main as kiosk_main
from kiosk.fmt import to_persian_digits
from kiosk.receipts.layout import QR, Document, Heading, Row, Text, ltr
from kiosk.receipts import (
    MAX_PAYLOAD_CHARS,
    InvalidReceipt,
    ReceiptData,
    ReceiptKeyError,
    ReceiptSigner,
    build_document,
    load_or_create_key,
    print_receipt_bytes,
    verify_payload,
)

UTC = dt.UTC
TX_ID = "kiosk-demo-01-20251128-0312ab45c1d2e3"
HASH = "9f2c4e7a1b3d5f60" + "ab" * 24


def receipt(**changes: object) -> ReceiptData:
    base = ReceiptData(
        tx_id=TX_ID, kiosk_id="kiosk-demo-01", kind="fee_payment", amount_rials=17_000,
        at=dt.datetime(2025, 11, 28, 11, 2, 7, tzinfo=UTC), bill_id="7748317800142", payment_id="1770160",
        service_label_fa="عوارض شهرداری", service_label_en="Municipal fees", tracking_code="140409071234",
        rrn="512345678901", stan="123456", masked_pan="603799******1234", status="paid",
        journal_seq=1234, journal_hash=HASH)
    return dataclasses.replace(base, **changes)


@pytest.fixture()
def signer(tmp_path: Path) -> ReceiptSigner:
    return load_or_create_key(tmp_path)


def test_signed_receipt_verifies_with_every_field_intact(signer: ReceiptSigner) -> None:
    data = receipt()
    got = verify_payload(signer.sign(data), signer.public_key)
    assert (got.tx_id, got.kiosk_id, got.kind, got.status) == (TX_ID, "kiosk-demo-01", "fee_payment", "paid")
    assert got.amount_rials == 17_000
    assert (got.bill_id, got.payment_id, got.rrn) == ("7748317800142", "1770160", "512345678901")
    assert got.at == dt.datetime(2025, 11, 28, 11, 2, 7, tzinfo=UTC)
    # the journal witness: the PAID row's seq and the first 16 hex of its hash
    assert (got.version, got.journal_seq, got.journal_hash) == (2, 1234, HASH[:16])
    # not signed in v2: settled later, printed beside the QR
    assert got.tracking_code == ""


def test_the_payload_holds_only_what_is_fixed_at_payment_time(signer: ReceiptSigner) -> None:
    """Issue item 9: status, tracking code and anything settled later leave the payload alone."""
    first = signer.sign(receipt(status="pending_settlement", tracking_code=""))
    assert signer.sign(receipt(status="paid", tracking_code="140409071234")) == first
    assert signer.sign(receipt(stan="999999", masked_pan="")) == first
    assert signer.sign(receipt(journal_seq=1235)) != first
    assert signer.sign(receipt(journal_hash="0" * 64)) != first


def test_receipts_signed_in_version_1_still_verify(signer: ReceiptSigner) -> None:
    got = verify_payload(signer.sign_v1(receipt()), signer.public_key)
    assert (got.version, got.tracking_code, got.status, got.journal_seq) == (1, "140409071234", "paid", 0)


def test_a_v2_body_relabelled_as_v1_fails_the_signature(signer: ReceiptSigner) -> None:
    payload = signer.sign(receipt())
    with pytest.raises(InvalidReceipt) as caught:
        verify_payload("CK1:" + payload[4:], signer.public_key)
    assert caught.value.reason == "signature"


@pytest.mark.parametrize("changes", [{"journal_seq": 0}, {"journal_hash": "abc"}, {"journal_hash": "Z" * 64},
                                     {"journal_seq": True}])
def test_a_receipt_without_its_journal_row_cannot_be_signed(changes: dict) -> None:
    with pytest.raises(ValueError):
        receipt(**changes)


def test_verify_accepts_the_key_as_object_raw_bytes_or_base64(signer: ReceiptSigner) -> None:
    payload = signer.sign(receipt())
    raw = base64.b64decode(signer.public_key_b64)
    for key in (signer.public_key, raw, signer.public_key_b64, base64.urlsafe_b64encode(raw).decode()):
        assert verify_payload(payload, key).tx_id == TX_ID


def test_a_reprint_carries_the_very_same_payload(signer: ReceiptSigner) -> None:
    assert signer.sign(receipt()) == signer.sign(receipt())


def test_pending_settlement_and_other_kinds_survive_the_round_trip(signer: ReceiptSigner) -> None:
    data = receipt(status="pending_settlement", tracking_code="", kind="parking_permit", tx_id="T-0001-ff")
    got = verify_payload(signer.sign(data), signer.public_key)
    assert (got.status, got.tracking_code, got.kind, got.tx_id) == ("paid", "", "parking_permit", "T-0001-ff")
    got = verify_payload(signer.sign_v1(data), signer.public_key)
    assert (got.status, got.kind) == ("pending_settlement", "parking_permit")


def test_a_flipped_bit_anywhere_in_the_payload_is_refused(signer: ReceiptSigner) -> None:
    payload = signer.sign(receipt()).encode("ascii")
    reasons = set()
    for i in range(len(payload)):
        for bit in range(8):
            mutated = bytearray(payload)
            mutated[i] ^= 1 << bit
            with pytest.raises(InvalidReceipt) as caught:
                verify_payload(mutated.decode("latin-1"), signer.public_key)
            allowed = {"format", "signature"}
            if i == 2:  # the version digit of "CK2:": CK3 is a version, just not ours
                allowed.add("unknown_version")
            assert caught.value.reason in allowed, (i, bit, caught.value.reason)
            reasons.add(caught.value.reason)
    assert reasons == {"format", "signature", "unknown_version"}


def test_a_receipt_signed_by_another_kiosk_fails_the_signature_check(signer: ReceiptSigner) -> None:
    other = ReceiptSigner(Ed25519PrivateKey.generate())
    with pytest.raises(InvalidReceipt) as caught:
        verify_payload(other.sign(receipt()), signer.public_key)
    assert caught.value.reason == "signature"
    assert caught.value.key == "receipt.invalid"
    assert "امضای رسید معتبر نیست" in caught.value.message("fa")
    assert "signature does not match" in caught.value.message("en")


def test_an_altered_amount_with_the_old_signature_fails(signer: ReceiptSigner) -> None:
    genuine = signer.sign(receipt())
    forged_body = signer.sign(receipt(amount_rials=1_700_000)).split(".")[0]
    with pytest.raises(InvalidReceipt) as caught:
        verify_payload(forged_body + "." + genuine.split(".")[1], signer.public_key)
    assert caught.value.reason == "signature"


@pytest.mark.parametrize(("text", "reason"), [
    ("", "format"),
    ("hello", "format"),
    ("CK1:", "format"),
    ("CK1:AAAA", "format"),
    ("CK1:AAAA.AAAA", "format"),
    ("CK1:AA=A.AAAA", "format"),
    ("CK3:AAAA.AAAA", "unknown_version"),
    ("CK10:AAAA.AAAA", "unknown_version"),
    ("CK1:" + "A" * 2000, "format"),
    ("CK2:", "format"),
    ("CK2:AAAA.AAAA", "format"),
])
def test_text_that_is_not_a_receipt_gets_a_typed_reason(signer: ReceiptSigner, text: str, reason: str) -> None:
    with pytest.raises(InvalidReceipt) as caught:
        verify_payload(text, signer.public_key)
    assert caught.value.reason == reason


def test_a_typical_receipt_payload_stays_under_200_characters(signer: ReceiptSigner) -> None:
    payload = signer.sign(receipt())
    assert payload.startswith("CK2:")
    assert len(payload) < 200, len(payload)
    # 16 random hex ids, longest amounts and codes: still far under the verifier's limit
    worst = receipt(tx_id="x" * 64, kiosk_id="k" * 64, amount_rials=10**15, bill_id="9" * 13,
                    payment_id="9" * 13, tracking_code="Z" * 64, rrn="R" * 64, kind="k" * 64)
    assert len(signer.sign(worst)) < MAX_PAYLOAD_CHARS


_field = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=64)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tx_id=_field.filter(bool), kiosk_id=_field.filter(bool), kind=_field.filter(bool),
       amount=st.integers(min_value=0, max_value=10**18), unix=st.integers(min_value=0, max_value=2**32 - 1),
       ids=st.lists(st.one_of(_field, st.from_regex(r"[0-9a-f-]{0,64}", fullmatch=True)), min_size=4, max_size=4),
       status=st.sampled_from(["paid", "pending_settlement", "reversed"]),
       seq=st.integers(min_value=1, max_value=2**63 - 1), digest=st.from_regex(r"[0-9a-f]{16,64}", fullmatch=True))
def test_any_receipt_round_trips_exactly(signer: ReceiptSigner, tx_id: str, kiosk_id: str, kind: str, amount: int,
                                         unix: int, ids: list[str], status: str, seq: int, digest: str) -> None:
    data = receipt(tx_id=tx_id, kiosk_id=kiosk_id, kind=kind, amount_rials=amount,
                   at=dt.datetime.fromtimestamp(unix, UTC), bill_id=ids[0], payment_id=ids[1],
                   tracking_code=ids[2], rrn=ids[3], status=status, journal_seq=seq, journal_hash=digest)
    got = verify_payload(signer.sign(data), signer.public_key)
    assert (got.tx_id, got.kiosk_id, got.kind, got.amount_rials) == (tx_id, kiosk_id, kind, amount)
    assert (got.bill_id, got.payment_id, got.rrn) == (ids[0], ids[1], ids[3])
    assert (got.journal_seq, got.journal_hash) == (seq, digest[:16])
    assert int(got.at.timestamp()) == unix
    old = verify_payload(signer.sign_v1(data), signer.public_key)
    assert (old.bill_id, old.payment_id, old.tracking_code, old.rrn, old.status) == (*ids, status)


def test_digit_runs_longer_than_64_bits_still_round_trip(signer: ReceiptSigner) -> None:
    data = receipt(rrn="1200000000000000000000", payment_id="0" * 30, bill_id="9" * 19)
    got = verify_payload(signer.sign(data), signer.public_key)
    assert (got.rrn, got.payment_id, got.bill_id) == ("1200000000000000000000", "0" * 30, "9" * 19)


_GENUINE = ReceiptSigner(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
_GENUINE_PAYLOAD = _GENUINE.sign(receipt())


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None)
@given(st.one_of(
    st.text(max_size=300),
    st.builds(lambda tail: "CK1:" + tail, st.text(alphabet="ABCDEFabcdef0123456789-_.=", max_size=250)),
    st.builds(lambda tail: "CK2:" + tail, st.text(alphabet="ABCDEFabcdef0123456789-_.=", max_size=250)),
    st.builds(lambda i, ch: _GENUINE_PAYLOAD[:i] + ch + _GENUINE_PAYLOAD[i + 1:],
              st.integers(min_value=0, max_value=len(_GENUINE_PAYLOAD) - 1), st.characters()),
))
def test_fuzzed_payloads_only_ever_raise_invalid_receipt(text: str) -> None:
    try:
        got = verify_payload(text, _GENUINE.public_key)
    except InvalidReceipt as exc:
        assert exc.reason in ("format", "signature", "unknown_version")
    else:  # only the genuine payload (perhaps with a scanner's trailing newline) verifies
        assert text.strip() == _GENUINE_PAYLOAD and got.tx_id == TX_ID


# --- the key on disk ------------------------------------------------------------------------


def test_key_is_created_0600_with_its_public_half_beside_it_and_reused(tmp_path: Path) -> None:
    first = load_or_create_key(tmp_path)
    pem = tmp_path / "keys" / "receipt-ed25519.pem"
    pub = tmp_path / "keys" / "receipt-ed25519.pub"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert base64.b64decode(pub.read_text()) == base64.b64decode(first.public_key_b64)
    assert len(base64.b64decode(pub.read_text())) == 32
    before = pem.read_bytes()
    second = load_or_create_key(tmp_path)
    assert pem.read_bytes() == before
    assert second.public_key_b64 == first.public_key_b64
    assert verify_payload(first.sign(receipt()), second.public_key).tx_id == TX_ID
    assert not [p.name for p in pem.parent.iterdir() if p.name.startswith(".")]  # no temp files left


def test_a_key_left_readable_by_others_is_tightened_to_0600(tmp_path: Path) -> None:
    load_or_create_key(tmp_path)
    pem = tmp_path / "keys" / "receipt-ed25519.pem"
    os.chmod(pem, 0o644)
    load_or_create_key(tmp_path)
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600


def test_a_damaged_key_file_is_a_typed_error_not_a_silent_new_key(tmp_path: Path) -> None:
    signer = load_or_create_key(tmp_path)
    pem = tmp_path / "keys" / "receipt-ed25519.pem"
    pem.write_bytes(b"-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ReceiptKeyError) as caught:
        load_or_create_key(tmp_path)
    assert caught.value.key == "receipt.key_unreadable"
    assert (tmp_path / "keys" / "receipt-ed25519.pub").read_text().strip() == signer.public_key_b64


def test_kiosk_processes_starting_at_once_end_up_with_one_key(tmp_path: Path) -> None:
    code = ("import sys; from kiosk.receipts import load_or_create_key; "
            "print(load_or_create_key(sys.argv[1]).public_key_b64)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    keys = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(keys) == 1 and keys == {load_or_create_key(tmp_path).public_key_b64}


# --- what a receipt may hold ----------------------------------------------------------------


@pytest.mark.parametrize("pan", ["6037991234561234", "6037 9912 3456 1234", "603799123456****", "60379912345612",
                                 "6037.9912.3456.1234"])
def test_an_unmasked_card_number_is_refused_without_repeating_it(pan: str) -> None:
    with pytest.raises(ValueError) as caught:
        receipt(masked_pan=pan)
    assert "1234561234" not in str(caught.value) and "3456" not in str(caught.value)


@pytest.mark.parametrize("pan", ["", "603799******1234", "************1234", "6037-99XX-XXXX-1234"])
def test_masked_card_numbers_are_accepted(pan: str) -> None:
    assert receipt(masked_pan=pan).masked_pan == pan


@pytest.mark.parametrize("changes", [
    {"at": dt.datetime(2025, 11, 28, 11, 2)},
    {"amount_rials": -1},
    {"amount_rials": True},
    {"status": "done"},
    {"tx_id": ""},
    {"bill_id": "1" * 65},
    {"rrn": "12\n34"},
])
def test_receipt_data_refuses_values_it_could_not_sign_honestly(changes: dict) -> None:
    with pytest.raises(ValueError):
        receipt(**changes)


# --- the printed document -------------------------------------------------------------------


def _rows(doc: Document) -> dict[str, str]:
    return {b.label: b.value for b in doc.blocks if isinstance(b, Row)}


def _texts(doc: Document) -> list[str]:
    return [b.text for b in doc.blocks if isinstance(b, (Heading, Text))]


def test_persian_receipt_shows_amount_ids_and_the_signed_qr(signer: ReceiptSigner) -> None:
    data = receipt()
    payload = signer.sign(data)
    doc = build_document(data, payload)
    assert doc.direction == "rtl"
    rows = _rows(doc)
    assert rows["مبلغ"] == f"{ltr('۱۷٬۰۰۰')} ریال ({ltr('۱٬۷۰۰')} تومان)"
    assert rows["شناسه قبض"] == to_persian_digits("7748317800142")
    assert rows["شناسه پرداخت"] == to_persian_digits("1770160")
    assert rows["نوع خدمت"] == "عوارض شهرداری"
    assert rows["کد رهگیری"] == to_persian_digits("140409071234")
    assert rows["شماره مرجع"] == to_persian_digits("512345678901")
    assert rows["کارت"] == "۶۰۳۷۹۹******۱۲۳۴"
    assert rows["تاریخ"] == "۱۴۰۴/۰۹/۰۷ ۱۴:۳۲"
    assert rows["شماره تراکنش"] == TX_ID
    texts = _texts(doc)
    assert {"کیوسک شهر", "شهرداری تهران", "رسید پرداخت عوارض", "پرداخت با موفقیت انجام شد"} <= set(texts)
    qrs = [b for b in doc.blocks if isinstance(b, QR)]
    assert len(qrs) == 1 and qrs[0].data == payload
    assert qrs[0].caption == "برای بررسی اصالت رسید، کد را اسکن کنید"


def test_pending_settlement_receipt_says_the_payment_is_recorded_and_settles_itself(signer: ReceiptSigner) -> None:
    data = receipt(status="pending_settlement", tracking_code="")
    doc = build_document(data, signer.sign(data))
    assert _rows(doc)["کد رهگیری"] == "پس از تسویه صادر می‌شود"
    joined = " ".join(_texts(doc))
    assert "پرداخت شما ثبت شد" in joined and "به‌طور خودکار" in joined
    assert "پرداخت با موفقیت انجام شد" not in joined
    assert ltr(TX_ID) in joined


def test_english_receipt_reads_left_to_right_with_latin_digits(signer: ReceiptSigner) -> None:
    data = receipt()
    doc = build_document(data, signer.sign(data), lang="en")
    assert doc.direction == "ltr"
    rows = _rows(doc)
    assert rows["Amount"] == "17,000 rials (1,700 tomans)"
    assert rows["Bill ID"] == "7748317800142" and rows["Reference number"] == "512345678901"
    assert rows["Date"] == "2025-11-28 14:32"
    assert "Payment successful" in _texts(doc)
    with pytest.raises(ValueError):
        build_document(data, "CK1:x.y", lang="de")


def test_a_reprint_is_marked_as_a_copy_and_shows_its_journal_row(signer: ReceiptSigner) -> None:
    data = receipt()
    payload = signer.sign(data)
    original, copy = build_document(data, payload), build_document(data, payload, copy=True)
    assert "المثنی" in _texts(copy) and "المثنی" not in _texts(original)
    assert "COPY" in _texts(build_document(data, payload, lang="en", copy=True))
    assert [b.data for b in copy.blocks if isinstance(b, QR)] == [payload]
    assert _rows(original)["ردیف دفتر"] == f"1234 · {HASH[:16]}"


def test_receipt_escpos_bytes_are_init_raster_native_qr_and_a_cut(signer: ReceiptSigner) -> None:
    data = receipt()
    payload = signer.sign(data)
    raw = print_receipt_bytes(build_document(data, payload))
    assert raw.startswith(b"\x1b@")
    assert b"\x1dv0" in raw  # GS v 0: raster image
    assert b"\x1d(k" in raw and payload.encode() in raw  # GS ( k: native QR store + print
    assert b"\x1dV" in raw[-4:]  # GS V: cut
    decoded = decode_escpos(raw)
    assert decoded.qr_codes == [payload] and decoded.cuts == 1
    # what comes out of the printer is a QR a phone can read back to the same payload
    read = zxingcpp.read_barcodes(decoded.image.convert("L"))
    assert payload in [r.text for r in read]


# --- kiosk receipt ---------------------------------------------------------------------------


def test_cli_verify_exits_0_for_a_valid_receipt_and_prints_it_in_both_languages(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    signer = load_or_create_key(tmp_path)
    payload = signer.sign(receipt())
    assert kiosk_main(["receipt", "verify", payload, "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "رسید معتبر است" in out and "The receipt is valid" in out
    assert "۱۷٬۰۰۰ ریال" in out and "17,000 rials" in out and TX_ID in out


def test_cli_verify_exits_1_and_says_why_for_a_tampered_receipt(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    signer = load_or_create_key(tmp_path)
    forged = signer.sign(receipt(amount_rials=9)).split(".")[0] + "." + signer.sign(receipt()).split(".")[1]
    assert kiosk_main(["receipt", "verify", forged, "--data-dir", str(tmp_path), "--json"]) == 1
    out = capsys.readouterr().out
    assert '"valid": false' in out and '"reason": "signature"' in out


def test_cli_verify_takes_a_pubkey_file_or_base64(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    signer = load_or_create_key(tmp_path / "kiosk")
    payload = signer.sign(receipt())
    pub_file = tmp_path / "kiosk" / "keys" / "receipt-ed25519.pub"
    empty = tmp_path / "citizen"
    assert kiosk_main(["receipt", "verify", payload, "--pubkey", str(pub_file), "--data-dir", str(empty)]) == 0
    assert kiosk_main(["receipt", "verify", payload, "--pubkey", signer.public_key_b64, "--json"]) == 0
    assert '"valid": true' in capsys.readouterr().out
    other = ReceiptSigner(Ed25519PrivateKey.generate())
    assert kiosk_main(["receipt", "verify", payload, "--pubkey", other.public_key_b64]) == 1


def test_cli_usage_errors_exit_2(tmp_path: Path) -> None:
    assert kiosk_main(["receipt"]) == 2
    assert kiosk_main(["receipt", "verify"]) == 2
    assert kiosk_main(["receipt", "verify", "CK1:a.b", "--pubkey", "not-a-key"]) == 2
    # no key in an empty data dir: the citizen must say which kiosk's key to use
    assert kiosk_main(["receipt", "verify", "CK1:a.b", "--data-dir", str(tmp_path / "empty")]) == 2


def test_cli_pubkey_prints_the_data_dirs_public_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert kiosk_main(["receipt", "pubkey", "--data-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == load_or_create_key(tmp_path).public_key_b64
    assert (tmp_path / "keys" / "receipt-ed25519.pub").read_text().strip() == printed


def test_key_is_0600_and_its_dir_0700_from_creation_even_under_a_loose_umask(tmp_path: Path) -> None:
    code = ("import os, sys; os.umask(0); from kiosk.receipts import load_or_create_key; "
            "load_or_create_key(sys.argv[1])")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "kiosk")], check=True, timeout=60)
    keys = tmp_path / "kiosk" / "keys"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert stat.S_IMODE((keys / "receipt-ed25519.pem").stat().st_mode) == 0o600
    # a keys dir an older install left open is closed again
    os.chmod(keys, 0o755)
    load_or_create_key(tmp_path / "kiosk")
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700


def test_the_documented_example_payload_verifies() -> None:
    """docs/receipts.md's example: a published test vector must keep verifying."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "receipts.md").read_text(encoding="utf-8")
    example = next(line for line in doc.splitlines() if line.startswith("CK2:") and "<" not in line)
    got = verify_payload(example, "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=")
    assert (got.tx_id, got.amount_rials, got.journal_seq, got.journal_hash) == (
        TX_ID, 17_000, 1234, "9f2c4e7a1b3d5f60")
    assert _GENUINE.sign(receipt()) == example


@pytest.mark.parametrize("lang", ["fa", "en"])
def test_a_collection_receipt_says_the_top_up_is_on_the_card_not_that_a_payment_succeeded(
        signer: ReceiptSigner, lang: str) -> None:
    """A collection moves no money at the kiosk: its slip must not say "payment successful",
    and its pending form must not send the citizen to the municipality."""
    paid = receipt(kind="pending_topup", bill_id="1234567890", payment_id="", rrn="", stan="", masked_pan="")
    texts = " ".join(_texts(build_document(paid, signer.sign(paid), lang=lang)))
    assert ("شارژ خریداری‌شده روی کارت شما نشست" if lang == "fa" else "now on your card") in texts
    assert "پرداخت با موفقیت" not in texts and "Payment successful" not in texts
    pending = dataclasses.replace(paid, status="pending_settlement")
    texts = " ".join(_texts(build_document(pending, signer.sign(pending), lang=lang)))
    assert ("اولین تماس کارت" if lang == "fa" else "next tap") in texts
    assert "شهرداری به‌طور خودکار" not in texts and "municipality automatically" not in texts


def test_a_transit_receipt_pending_settlement_speaks_of_the_card_not_the_municipality(signer: ReceiptSigner) -> None:
    data = receipt(kind="transit_topup", status="pending_settlement", tracking_code="", payment_id="")
    texts = " ".join(_texts(build_document(data, signer.sign(data), lang="en")))
    assert "next tap on any kiosk" in texts and "do not pay again" in texts
    assert "municipality" not in texts
