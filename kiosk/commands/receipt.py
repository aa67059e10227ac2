"""`kiosk receipt verify PAYLOAD` checks a receipt's signed QR payload against a kiosk's public
key; `kiosk receipt pubkey` prints this kiosk's receipt public key (base64)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kiosk.fmt import format_datetime, format_rials, to_persian_digits
from kiosk.paths import data_dir
from kiosk.receipts import (
    InvalidReceipt,
    VerifiedReceipt,
    load_or_create_key,
    load_public_key,
    read_public_key_file,
    verify_payload,
)

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
    verify = actions.add_parser("verify", parents=[common], help="check a receipt's QR payload (CK1:…)")
    verify.add_argument("payload", help="the text of the receipt's QR code")
    verify.add_argument("--pubkey", help="the kiosk's public key: a .pub file or its base64 "
                        "(default: this data dir's receipt key)")
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    verify.set_defaults(func=_verify)
    pubkey = actions.add_parser("pubkey", parents=[common], help="print this kiosk's receipt public key (base64)")
    pubkey.set_defaults(func=_pubkey)
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
    if args.json:
        print(json.dumps({"valid": True, "receipt": receipt.to_dict()}, ensure_ascii=False))
    else:
        print("\n".join(_describe(receipt)))
    return 0


def _pubkey(args: argparse.Namespace) -> int:
    signer = load_or_create_key(data_dir(args.data_dir))
    print(signer.public_key_b64)
    return 0
