"""`kiosk receipt verify PAYLOAD` checks a receipt's signed QR payload against a kiosk's public
key and shows the journal row it witnesses; `kiosk receipt pubkey` prints this kiosk's receipt
public key (base64); `kiosk receipt reprint TX` rebuilds a completed transaction's receipt from
the journal (the same signed payload, marked as a copy) and prints it or writes a PNG."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sqlite3
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from devices.base import DeviceError
from devices.contracts import ReceiptPrinter
from devices.registry import create, driver_for
from kiosk.certificates import PREFIX as CERTIFICATE_PREFIX
from kiosk.errors import KioskError
from kiosk.fmt import format_datetime, format_rials, to_persian_digits
from kiosk.journal import Journal, JournalError, TxState, journal_path
from kiosk.paths import data_dir
from kiosk.receipt_issuer import receipt_data, render_for
from kiosk.receipts import (
    InvalidReceipt,
    VerifiedReceipt,
    build_document,
    load_key,
    load_or_create_key,
    load_public_key,
    read_public_key_file,
    verify_payload,
)
from kiosk.receipts.layout import render_full_raster
from kiosk.settings import CONFIG_FILENAME, KioskSettings, load_settings

log = logging.getLogger("kiosk.commands.receipt")

_STATUS_WORDS = {
    "paid": ("پرداخت‌شده", "paid"),
    "pending_settlement": ("ثبت‌شده، در انتظار تسویه", "recorded, settlement pending"),
    "reversed": ("بازگشت داده شد", "reversed"),
}


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    # --data-dir/--log-level go on the actions only: a sub-sub-parser's defaults would
    # overwrite values given one level up.
    parser = subparsers.add_parser("receipt", help="verify signed receipts; show the receipt key",
                                   description="Signed receipt tools (رسید).")
    actions = parser.add_subparsers(dest="receipt_action", metavar="ACTION")
    verify = actions.add_parser("verify", parents=[common], help="check a receipt's QR payload (CK2:… or the older CK1:…) or a settlement certificate's (CKC1:…)")
    verify.add_argument("payload", help="the text of the receipt's QR code")
    verify.add_argument("--pubkey", help="the kiosk's public key: a .pub file or its base64 "
                        "(default: this data dir's receipt key)")
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    verify.add_argument("--check-journal", action="store_true",
                        help="also check that this data dir's journal still holds the PAID row the receipt "
                        "witnesses (exit 1 when it does not: the journal was cut or rewritten)")
    verify.set_defaults(func=_verify)
    pubkey = actions.add_parser("pubkey", parents=[common], help="print this kiosk's receipt public key (base64)")
    pubkey.set_defaults(func=_pubkey)
    reprint = actions.add_parser("reprint", parents=[common], help="reprint a completed transaction's receipt (COPY)",
                                 description="Rebuild the receipt of a COMPLETED transaction from the journal: "
                                 "the same signed payload as the original, marked as a copy (المثنی). Prints "
                                 "to the printer kiosk.json configures, or writes a PNG with --out.")
    reprint.add_argument("tx", metavar="TX", help="the transaction id (printed on the receipt)")
    reprint.add_argument("--out", metavar="FILE.png", help="write the receipt as a PNG instead of printing")
    reprint.add_argument("--lang", choices=("fa", "en"), help="receipt language (default: kiosk.json's, else fa)")
    reprint.set_defaults(func=_reprint)
    parser.set_defaults(func=_no_action(parser))


def _no_action(parser: argparse.ArgumentParser) -> Any:
    def handler(args: argparse.Namespace) -> int:
        parser.print_usage(sys.stderr)
        return 2
    return handler


def _resolve_key(args: argparse.Namespace) -> Ed25519PublicKey:
    """--pubkey as a file or base64, else the data dir's .pub. ValueError/OSError on failure."""
    if args.pubkey:
        candidate = Path(args.pubkey).expanduser()
        if candidate.is_file():
            return load_public_key(candidate.read_text(encoding="ascii", errors="replace"))
        return load_public_key(args.pubkey)
    return read_public_key_file(data_dir(args.data_dir))


def _describe(receipt: VerifiedReceipt) -> list[str]:
    fa_status, en_status = _STATUS_WORDS.get(receipt.status, (receipt.status, receipt.status))
    rows = [
        ("مبلغ", "Amount", format_rials(receipt.amount_rials, "fa"), format_rials(receipt.amount_rials, "en")),
        ("وضعیت", "Status", fa_status, en_status),
        ("شناسه قبض", "Bill ID", to_persian_digits(receipt.bill_id), receipt.bill_id),
        ("شناسه پرداخت", "Payment ID", to_persian_digits(receipt.payment_id), receipt.payment_id),
        ("کد رهگیری", "Tracking code", to_persian_digits(receipt.tracking_code) or "-", receipt.tracking_code or "-"),
        ("شماره مرجع", "Reference number", to_persian_digits(receipt.rrn) or "-", receipt.rrn or "-"),
        ("تاریخ", "Date", format_datetime(receipt.at, "fa"), format_datetime(receipt.at, "en") + " Tehran"),
        ("شماره تراکنش", "Transaction", receipt.tx_id, receipt.tx_id),
        ("کیوسک", "Kiosk", receipt.kiosk_id, receipt.kiosk_id),
    ]
    if receipt.version >= 2:
        # v2 signs only what was fixed at payment: the tracking code is printed, not signed
        rows[4] = ("کد رهگیری", "Tracking code", "امضا نشده؛ با شماره تراکنش از شهرداری بپرسید",
                   "not signed; ask the municipality with the transaction number")
        witness = f"#{receipt.journal_seq} · {receipt.journal_hash}"
        rows.append(("ردیف دفتر تراکنش‌ها", "Journal row", witness, witness))
    lines = ["رسید معتبر است / The receipt is valid"]
    lines += [f"{fa_label} / {en_label}: {fa_value} / {en_value}" for fa_label, en_label, fa_value, en_value in rows]
    return lines


def _verify(args: argparse.Namespace) -> int:
    try:
        key = _resolve_key(args)
    except FileNotFoundError:
        print("کلید عمومی رسید پیدا نشد؛ آن را با --pubkey بدهید. / "
              "No receipt public key in the data dir: pass one with --pubkey.", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"کلید عمومی نامعتبر است. / The public key is not valid: {exc}", file=sys.stderr)
        return 2
    if args.payload.strip().startswith(CERTIFICATE_PREFIX):
        return _verify_certificate(args, key)
    try:
        receipt = verify_payload(args.payload, key)
    except InvalidReceipt as exc:
        log.info("receipt did not verify: %s", exc.reason, extra={"event": "receipt_invalid"})
        if args.json:
            print(json.dumps({"valid": False, "reason": exc.reason, **exc.to_dict()}, ensure_ascii=False))
        else:
            print(exc.message("fa"))
            print(exc.message("en"))
            print(f"reason: {exc.reason}")
        return 1
    witness = _check_witness(receipt, data_dir(args.data_dir)) if args.check_journal else None
    if args.json:
        out: dict[str, Any] = {"valid": True, "receipt": receipt.to_dict()}
        if witness is not None:
            out["journal_matches"], out["journal_detail"] = witness
        print(json.dumps(out, ensure_ascii=False))
    else:
        print("\n".join(_describe(receipt)))
        if witness is not None:
            print(("دفتر تراکنش‌ها با رسید می‌خواند / " if witness[0] else
                   "دفتر تراکنش‌ها با رسید نمی‌خواند / ") + witness[1])
    return 0 if witness is None or witness[0] else 1


def _verify_certificate(args: argparse.Namespace, key: Ed25519PublicKey) -> int:
    """A settlement certificate (CKC1:) is checked with the same kiosk key as a receipt; the
    key stands for the kiosk named inside (the verifier chose it, as for a receipt)."""
    from kiosk.certificates import InvalidCertificate, describe, peek_kiosk_id, verify_certificate

    try:
        cert = verify_certificate(args.payload, {peek_kiosk_id(args.payload): key})
    except InvalidCertificate as exc:
        if args.json:
            print(json.dumps({"valid": False, "reason": exc.reason, **exc.to_dict()}, ensure_ascii=False))
        else:
            print(exc.message("fa"))
            print(exc.message("en"))
            print(f"reason: {exc.reason}")
        return 1
    if args.json:
        print(json.dumps({"valid": True, "certificate": cert.to_dict()}, ensure_ascii=False))
    else:
        print("\n".join(describe(cert)))
    return 0


def _check_witness(receipt: VerifiedReceipt, root: Path) -> tuple[bool, str]:
    """Does the journal here still hold the row this receipt witnesses: same seq, the same
    transaction's PAID row, amount, and a hash that begins with the receipt's prefix?"""
    if receipt.version < 2:
        return False, "a version 1 receipt carries no journal row to check"
    path = journal_path(root)
    if not path.exists():
        return False, f"no journal in {root}"
    try:
        journal = _open_journal(path)
        try:
            rows = [e for e in journal.entries(after_seq=receipt.journal_seq - 1, limit=1)
                    if e.seq == receipt.journal_seq]
        finally:
            journal.close()
    except (JournalError, sqlite3.Error) as exc:
        return False, f"cannot read the journal: {exc}"
    seq = receipt.journal_seq
    if not rows:
        return False, f"the journal has no row #{seq}: it was cut back after this receipt was printed"
    row = rows[0]
    if (row.tx_id, str(row.state), row.amount_rials) != (receipt.tx_id, "PAID", receipt.amount_rials) \
            or not row.hash.startswith(receipt.journal_hash):
        return False, f"journal row #{seq} is not this receipt's payment: the journal was rewritten"
    return True, f"journal row #{seq} is this receipt's PAID row (hash {row.hash[:16]}…)"


def _fail(message_fa: str, message_en: str) -> int:
    print(f"{message_fa} / {message_en}", file=sys.stderr)
    return 1


def _open_journal(path: Path) -> Journal:
    """Read-only when the journal offers it (a reprint never writes the journal)."""
    open_readonly = getattr(Journal, "open_readonly", None)
    return open_readonly(path) if open_readonly is not None else Journal(path)


def _settings(root: Path) -> KioskSettings | None:
    return load_settings(root) if (root / CONFIG_FILENAME).exists() else None


def _kiosk_id_from_tx(tx_id: str) -> str:
    """Without kiosk.json: journal ids are "<kiosk_id>-<yyyymmdd>-<hex>"."""
    parts = tx_id.rsplit("-", 2)
    return parts[0] if len(parts) == 3 and parts[0] else tx_id


async def _print_on(settings: KioskSettings, document: Any) -> str:
    """Print on the first configured receipt printer; its name, or "" when none is set up."""
    for cfg in settings.devices:
        try:
            is_printer = issubclass(driver_for(cfg.type), ReceiptPrinter)
        except KeyError:
            continue
        if not is_printer:
            continue
        printer = create(cfg)
        assert isinstance(printer, ReceiptPrinter)
        await printer.open()
        try:
            await printer.print_job(await render_for(printer, document))
        finally:
            await printer.close()
        return cfg.name
    return ""


def _reprint(args: argparse.Namespace) -> int:
    root = data_dir(args.data_dir)
    path = journal_path(root)
    if not path.exists():
        return _fail(f"دفتر تراکنشی در {root} نیست", f"no journal in {root}")
    try:
        journal = _open_journal(path)
        try:
            tx = journal.get(args.tx)
        finally:
            journal.close()
    except JournalError as exc:
        if type(exc).__name__ == "UnknownTransaction":
            return _fail(f"تراکنش {args.tx} در دفتر نیست", f"no transaction {args.tx} in the journal")
        return _fail(exc.message("fa"), exc.message("en"))
    except sqlite3.Error as exc:
        return _fail("دفتر تراکنش‌ها خوانده نشد", f"cannot read the journal {path}: {exc}")
    if tx.state != TxState.COMPLETED:
        return _fail(f"تراکنش {tx.tx_id} کامل نشده است ({tx.state})؛ رسید فقط برای تراکنش کامل چاپ می‌شود",
                     f"transaction {tx.tx_id} is {tx.state}, not COMPLETED; only a completed one is reprinted")
    try:
        settings = _settings(root)
        signer = load_key(root)
    except KioskError as exc:
        return _fail(exc.message("fa"), exc.message("en"))
    except (OSError, ValueError) as exc:
        return _fail("پیکربندی کیوسک خوانده نشد", f"cannot read {root / CONFIG_FILENAME}: {exc}")
    kiosk_id = settings.kiosk_id if settings else _kiosk_id_from_tx(tx.tx_id)
    lang = args.lang or (settings.lang if settings else "fa")
    data = receipt_data(tx, kiosk_id=kiosk_id, pending=False)
    payload = signer.sign(data)
    document = build_document(data, payload, lang=lang, copy=True)
    if args.out:
        try:
            render_full_raster(document).save(args.out, format="PNG")
        except (OSError, ValueError) as exc:
            return _fail(f"فایل {args.out} نوشته نشد", f"cannot write {args.out}: {exc}")
        print(payload)
        return 0
    if settings is None:
        return _fail("چاپگری پیکربندی نشده است؛ با --out FILE.png تصویر رسید را بنویسید",
                     "no printer configured (no kiosk.json): pass --out FILE.png")
    try:
        printed_on = asyncio.run(_print_on(settings, document))
    except DeviceError as exc:
        return _fail("رسید چاپ نشد", f"the receipt was not printed: {exc}")
    if not printed_on:
        return _fail("در kiosk.json چاپگر رسید نیست؛ با --out FILE.png تصویر رسید را بنویسید",
                     "kiosk.json configures no receipt printer: pass --out FILE.png")
    print(payload)
    return 0


def _pubkey(args: argparse.Namespace) -> int:
    signer = load_or_create_key(data_dir(args.data_dir))
    print(signer.public_key_b64)
    return 0
