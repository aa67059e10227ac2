"""Settlement certificates: signed with the kiosk's receipt key under their own prefix,
verified offline (and by `kiosk receipt verify`), refused when altered, expired, of another
kiosk, or carrying a full identifier."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk.certificates import (
    PREFIX,
    CertificateData,
    InvalidCertificate,
    build_certificate_document,
    sign_certificate,
    verify_certificate,
)
from kiosk.receipts import load_or_create_key
from kiosk.receipts.layout import QR, render
from kiosk.tickets import load_ticket_signer

AS_OF = dt.datetime(2026, 11, 30, 9, 30, tzinfo=dt.UTC)


def cert(**changes: object) -> CertificateData:
    base = dict(certificate_id="CERT-000123", kiosk_id="kiosk-demo-01", fee_type="business_tax",
                identifier_masked="14*******18", owner_masked="ن*** س*** م*** ا***", as_of=AS_OF,
                valid_until=dt.date(2026, 12, 30), slips_checked=4)
    base.update(changes)
    return CertificateData(**base)  # type: ignore[arg-type]


@pytest.fixture()
def signed(tmp_path: Path) -> tuple[str, object]:
    signer = load_ticket_signer(tmp_path)
    return sign_certificate(cert(), signer), signer.public_key


def test_a_signed_certificate_verifies_and_reads_back(signed: tuple[str, object]) -> None:
    payload, key = signed
    assert payload.startswith(PREFIX) and len(payload) < 400  # fits a QR a phone reads
    got = verify_certificate(payload, {"kiosk-demo-01": key}, now=AS_OF)
    assert got == cert()


def test_an_altered_certificate_is_refused(signed: tuple[str, object], tmp_path: Path) -> None:
    payload, key = signed
    body, _, sig = payload[len(PREFIX):].partition(".")
    other = sign_certificate(cert(valid_until=dt.date(2030, 1, 1)), load_ticket_signer(tmp_path / "other"))
    forged_body = other[len(PREFIX):].partition(".")[0]
    with pytest.raises(InvalidCertificate) as err:
        verify_certificate(f"{PREFIX}{forged_body}.{sig}", {"kiosk-demo-01": key}, now=AS_OF)
    assert err.value.reason == "signature"
    with pytest.raises(InvalidCertificate) as err:
        verify_certificate(f"{PREFIX}{body}x.{sig}", {"kiosk-demo-01": key}, now=AS_OF)
    assert err.value.reason == "format"


def test_expired_and_unknown_kiosk_and_receipt_payloads_are_refused(signed: tuple[str, object]) -> None:
    payload, key = signed
    with pytest.raises(InvalidCertificate) as err:
        verify_certificate(payload, {"kiosk-demo-01": key}, now=dt.datetime(2027, 1, 1, tzinfo=dt.UTC))
    assert err.value.reason == "expired"
    with pytest.raises(InvalidCertificate) as err:
        verify_certificate(payload, {"another-kiosk": key}, now=AS_OF)
    assert err.value.reason == "unknown_kiosk"
    with pytest.raises(InvalidCertificate) as err:  # a receipt's payload is not a certificate
        verify_certificate("CK2:AAAA.BBBB", {"kiosk-demo-01": key}, now=AS_OF)
    assert err.value.reason == "format"


def test_a_certificate_never_carries_a_full_national_code() -> None:
    with pytest.raises(ValueError):
        cert(identifier_masked="0084137258")


def test_the_printed_certificate_carries_its_payload_as_a_qr(signed: tuple[str, object]) -> None:
    payload, _ = signed
    doc = build_certificate_document(cert(), payload, "fa")
    assert [b.data for b in doc.blocks if isinstance(b, QR)] == [payload]
    assert render(doc, width_dots=576).parts  # lays out on 80 mm paper
    assert "Settlement certificate" in [getattr(b, "text", "") for b in build_certificate_document(cert(), payload, "en").blocks]


def test_kiosk_receipt_verify_accepts_a_certificate(tmp_path: Path) -> None:
    signer = load_ticket_signer(tmp_path)
    assert load_or_create_key(tmp_path).public_key is not None
    payload = sign_certificate(cert(valid_until=dt.date.today() + dt.timedelta(days=30)), signer)
    run = subprocess.run([sys.executable, "-m", "kiosk.cli", "receipt", "verify", payload, "--json",
                          "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["certificate"]["certificate_id"] == "CERT-000123"
    tampered = payload[:-3] + ("AAA" if payload[-3:] != "AAA" else "BBB")
    run = subprocess.run([sys.executable, "-m", "kiosk.cli", "receipt", "verify", tampered, "--json",
                          "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and json.loads(run.stdout)["valid"] is False
