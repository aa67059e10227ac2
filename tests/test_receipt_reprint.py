"""Issue item 9: a receipt's signed payload is fixed at payment time (the PAID journal row), so
the receipt issued at payment and every reprint of the completed transaction carry the same
payload; the payload witnesses the PAID row (seq + hash prefix); `kiosk receipt reprint`."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image as PILImage

from devices.contracts import ReceiptPrinter
from devices.printer.emulator import NetworkPrinterEmulator
from devices.registry import driver_for
from kiosk.cli import main as kiosk_main
from kiosk.journal import Journal, Transaction, TxState, journal_path
from kiosk.receipt_issuer import NotPaid, ReceiptIssuer
from kiosk.receipts import load_or_create_key, verify_payload

KIOSK = "kiosk-7"


def _paid_tx(data_dir: Path, *, complete: bool) -> tuple[Journal, str]:
    """A fee payment journaled by hand the way the money path does it, up to POSTED (and
    COMPLETED when asked): the tracking code comes with POSTED, after the PAID row."""
    journal = Journal(journal_path(data_dir), kiosk_id=KIOSK)
    tx = journal.begin("fee_payment", 17_000, {"bill_id": "7748317800142", "payment_id": "1770160",
                                               "service_type": 6})
    journal.append(tx.tx_id, TxState.PAYING)
    journal.append(tx.tx_id, TxState.PAID, {"rrn": "512345678901", "stan": "123456",
                                           "masked_pan": "603799******1234", "paid_at": "2025-11-28T11:02:07Z"})
    journal.append(tx.tx_id, TxState.FULFILLING)
    journal.append(tx.tx_id, TxState.FULFILLED)
    journal.append(tx.tx_id, TxState.POSTED, {"tracking_code": "140409071234"})
    if complete:
        journal.append(tx.tx_id, TxState.COMPLETED, {"receipt_printed": True})
    return journal, tx.tx_id


def _issue(data_dir: Path, tx: Transaction, *, pending: bool) -> str:
    issuer = ReceiptIssuer(load_or_create_key(data_dir), lambda: None, kiosk_id=KIOSK, lang="fa")
    return asyncio.run(issuer.issue(tx, pending=pending)).payload


def test_the_payload_issued_at_payment_equals_every_reprint_after_completed(tmp_path: Path) -> None:
    journal, tx_id = _paid_tx(tmp_path, complete=False)
    issued = _issue(tmp_path, journal.get(tx_id), pending=False)
    time.sleep(1.1)  # COMPLETED lands in a later second: updated_at moves, the payload must not
    journal.append(tx_id, TxState.COMPLETED, {"receipt_printed": True})
    completed = journal.get(tx_id)
    assert completed.updated_at > completed.entries[2].at + 1
    assert _issue(tmp_path, completed, pending=False) == issued
    # a receipt first issued as "settlement pending" carries the same signed payload too
    assert _issue(tmp_path, completed, pending=True) == issued
    journal.close()
    out = tmp_path / "copy.png"
    assert kiosk_main(["receipt", "reprint", tx_id, "--data-dir", str(tmp_path), "--out", str(out)]) == 0
    read = zxingcpp.read_barcodes(PILImage.open(out).convert("L"))
    assert [r.text for r in read] == [issued]


def test_the_payload_witnesses_the_paid_journal_row(tmp_path: Path) -> None:
    journal, tx_id = _paid_tx(tmp_path, complete=True)
    tx = journal.get(tx_id)
    paid = next(e for e in tx.entries if e.state == TxState.PAID)
    got = verify_payload(_issue(tmp_path, tx, pending=False), load_or_create_key(tmp_path).public_key)
    assert (got.journal_seq, got.journal_hash) == (paid.seq, paid.hash[:16])
    assert got.at.timestamp() == int(paid.at) and got.rrn == "512345678901" and got.tx_id == tx_id
    journal.close()


def test_a_transaction_never_paid_has_no_receipt(tmp_path: Path) -> None:
    journal = Journal(journal_path(tmp_path), kiosk_id=KIOSK)
    tx = journal.begin("fee_payment", 17_000, {"bill_id": "7748317800142", "payment_id": "1770160"})
    with pytest.raises(NotPaid):
        _issue(tmp_path, tx, pending=False)
    journal.close()


def test_cli_verify_shows_the_journal_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    journal, tx_id = _paid_tx(tmp_path, complete=True)
    tx = journal.get(tx_id)
    journal.close()
    payload = _issue(tmp_path, tx, pending=False)
    paid = next(e for e in tx.entries if e.state == TxState.PAID)
    assert kiosk_main(["receipt", "verify", payload, "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"Journal row: #{paid.seq} · {paid.hash[:16]}" in out
    assert kiosk_main(["receipt", "verify", payload, "--data-dir", str(tmp_path), "--json"]) == 0
    receipt = json.loads(capsys.readouterr().out)["receipt"]
    assert (receipt["journal_seq"], receipt["journal_hash"], receipt["version"]) == (paid.seq, paid.hash[:16], 2)


def test_cli_reprint_refuses_an_unknown_or_unfinished_transaction_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    journal, tx_id = _paid_tx(tmp_path, complete=False)
    journal.close()
    load_or_create_key(tmp_path)
    out = tmp_path / "x.png"
    assert kiosk_main(["receipt", "reprint", "kiosk-7-20990101-ffffff", "--data-dir", str(tmp_path),
                       "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "no transaction kiosk-7-20990101-ffffff" in err and len(err.strip().splitlines()) == 1
    assert kiosk_main(["receipt", "reprint", tx_id, "--data-dir", str(tmp_path), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "POSTED, not COMPLETED" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    # no journal at all
    assert kiosk_main(["receipt", "reprint", tx_id, "--data-dir", str(tmp_path / "empty"), "--out", str(out)]) == 1
    assert "no journal" in capsys.readouterr().err


def test_cli_reprint_prints_a_copy_on_the_configured_printer(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    journal, tx_id = _paid_tx(tmp_path, complete=True)
    issued = _issue(tmp_path, journal.get(tx_id), pending=False)
    journal.close()
    assert issubclass(driver_for("escpos"), ReceiptPrinter)
    with NetworkPrinterEmulator() as printer:
        (tmp_path / "kiosk.json").write_text(json.dumps({
            "kiosk_id": KIOSK, "lang": "en",
            "devices": [{"name": "printer", "type": "escpos", "connection": "network", "host": printer.host,
                         "port": printer.port, "timeout": 5}]}), encoding="utf-8")
        assert kiosk_main(["receipt", "reprint", tx_id, "--data-dir", str(tmp_path)]) == 0
        assert capsys.readouterr().out.strip() == issued
        printer.wait_for_jobs(1)
        [paper] = printer.receipts()
    assert paper.qr_codes == [issued]
    words = [r.text for r in zxingcpp.read_barcodes(paper.image.convert("L"))]
    assert issued in words
    assert paper.cuts == 1


def test_cli_reprint_without_a_printer_or_out_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    journal, tx_id = _paid_tx(tmp_path, complete=True)
    journal.close()
    load_or_create_key(tmp_path)
    assert kiosk_main(["receipt", "reprint", tx_id, "--data-dir", str(tmp_path)]) == 1
    assert "--out FILE.png" in capsys.readouterr().err


def test_cli_verify_check_journal_catches_a_cut_or_rewritten_journal(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    kiosk_dir = tmp_path / "kiosk"
    journal, tx_id = _paid_tx(kiosk_dir, complete=True)
    payload = _issue(kiosk_dir, journal.get(tx_id), pending=False)
    journal.close()
    assert kiosk_main(["receipt", "verify", payload, "--data-dir", str(kiosk_dir), "--check-journal"]) == 0
    assert "is this receipt's PAID row" in capsys.readouterr().out
    # the same key beside a journal rewritten from scratch: row 3 is another payment now
    forged = tmp_path / "forged"
    (forged / "keys").mkdir(parents=True)
    for f in (kiosk_dir / "keys").iterdir():
        (forged / "keys" / f.name).write_bytes(f.read_bytes())
    other, _ = _paid_tx(forged, complete=True)
    other.close()
    assert kiosk_main(["receipt", "verify", payload, "--data-dir", str(forged), "--check-journal", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["valid"] is True and out["journal_matches"] is False and "rewritten" in out["journal_detail"]
    # a journal cut back before the receipt's row
    cut = tmp_path / "cut"
    (cut / "keys").mkdir(parents=True)
    for f in (kiosk_dir / "keys").iterdir():
        (cut / "keys" / f.name).write_bytes(f.read_bytes())
    Journal(journal_path(cut), kiosk_id=KIOSK).close()
    assert kiosk_main(["receipt", "verify", payload, "--data-dir", str(cut), "--check-journal"]) == 1
    assert "cut back" in capsys.readouterr().out
