"""`kiosk bill BILL_ID PAYMENT_ID` / `kiosk bill --barcode DIGITS`: check a bill pair offline and
show what it says. Exit 0 valid, 1 invalid, 2 usage error."""

from __future__ import annotations

import argparse
import json
import sys

from kiosk.bills import Bill, InvalidBill, invalid_dict, parse_barcode, parse_bill
from kiosk.identifiers import to_ascii_digits, to_persian_digits


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "bill", parents=[common],
        usage="kiosk bill BILL_ID PAYMENT_ID [--json]\n       kiosk bill --barcode DIGITS [--json]",
        help="check a bill id + payment id pair (or its 26-digit barcode)",
        description="Check a bill (شناسه قبض + شناسه پرداخت) with the kiosk's own rules.")
    parser.add_argument("ids", nargs="*", metavar="ID", help="BILL_ID PAYMENT_ID")
    parser.add_argument("--barcode", metavar="DIGITS", help="the 26-digit barcode instead of the two ids")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.set_defaults(func=lambda args: _run(parser, args))


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if (args.barcode is None) == (len(args.ids) != 2) or (args.barcode is not None and args.ids):
        parser.print_usage(sys.stderr)
        print("kiosk bill: give either BILL_ID PAYMENT_ID or --barcode DIGITS", file=sys.stderr)
        return 2
    try:
        if args.barcode is not None:
            bill = parse_barcode(to_ascii_digits(args.barcode))
        else:
            bill = parse_bill(to_ascii_digits(args.ids[0]), to_ascii_digits(args.ids[1]))
    except InvalidBill as exc:
        if args.json:
            print(json.dumps(invalid_dict(exc.check), ensure_ascii=False))
        else:
            print(f"قبض نامعتبر / Invalid bill ({exc.check})")
            print(f"  {exc.message('fa')}")
            print(f"  {exc.message('en')}")
        return 1
    if args.json:
        print(json.dumps(bill.to_dict(), ensure_ascii=False))
    else:
        print(_summary(bill))
    return 0


def _summary(bill: Bill) -> str:
    amount_fa = to_persian_digits(f"{bill.amount_rials:,}").replace(",", "\u066c")
    service = bill.service_type
    return "\n".join([
        "قبض معتبر است / Bill is valid",
        f"  شناسه قبض / Bill ID:         {bill.bill_id}",
        f"  شناسه پرداخت / Payment ID:   {bill.payment_id}",
        f"  نوع خدمت / Service:          {service.label('fa')} / {service.label('en')} ({int(service)})",
        f"  کد شرکت / Company code:      {bill.company_code}",
        f"  مبلغ / Amount:               {amount_fa} ریال / {bill.amount_rials:,} rials",
        f"  سال و دوره / Year, period:   {bill.year}, {bill.period}",
        f"  بارکد / Barcode:             {bill.barcode}",
    ])
