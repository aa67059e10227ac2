"""Iranian utility/municipal bill identifiers: parse and validate a bill id + payment id pair
(typed, scanned as a 26-digit barcode, or read from a QR payload) into a `Bill`.

The rules are FIELD-NOTES "Iranian payment identifiers": a mod-11 check function with weights
2..7 from the right, the bill id's own check digit, and C1/C2 on the payment id.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from kiosk.errors import KioskError
from kiosk.sensitive import to_ascii_digits

log = logging.getLogger("kiosk.bills")

BILL_ID_MIN, BILL_ID_MAX = 6, 13
PAYMENT_ID_MIN, PAYMENT_ID_MAX = 6, 13
BARCODE_LEN = 26
MAX_AMOUNT_THOUSANDS = 99_999_999  # the amount field holds at most 8 digits

CHECKS = ("bill_id_format", "payment_id_format", "bill_check_digit", "payment_c1",
          "payment_c2", "barcode_format", "amount_zero")


class ServiceType(enum.IntEnum):
    """The service digit (second to last) of a bill id."""

    WATER = 1
    ELECTRICITY = 2
    GAS = 3
    FIXED_PHONE = 4
    MOBILE = 5
    MUNICIPALITY = 6
    # Libraries disagree on 7 (FIELD-NOTES); real bills carry it, so it is accepted, unnamed.
    OTHER_7 = 7
    TAX = 8
    TRAFFIC_FINE = 9

    def label(self, lang: str = "fa") -> str:
        """The name a citizen reads, in Persian ("fa", the default) or English."""
        fa, en = _SERVICE_LABELS[self]
        return fa if lang == "fa" else en


_SERVICE_LABELS: dict[ServiceType, tuple[str, str]] = {
    ServiceType.WATER: ("آب", "Water"),
    ServiceType.ELECTRICITY: ("برق", "Electricity"),
    ServiceType.GAS: ("گاز", "Gas"),
    ServiceType.FIXED_PHONE: ("تلفن ثابت", "Fixed phone"),
    ServiceType.MOBILE: ("تلفن همراه", "Mobile phone"),
    ServiceType.MUNICIPALITY: ("عوارض شهرداری", "Municipal fees"),
    ServiceType.OTHER_7: ("سایر خدمات", "Other services"),
    ServiceType.TAX: ("مالیات", "Tax"),
    ServiceType.TRAFFIC_FINE: ("جریمه رانندگی", "Traffic fine"),
}
# str digit -> ServiceType; a dict lookup is several times faster than ServiceType(int(c)).
_SERVICE_BY_DIGIT: dict[str, ServiceType] = {str(int(s)): s for s in ServiceType}


class InvalidBill(KioskError):
    """The pair does not pass the bill checks. `check` names the one that failed (see CHECKS)."""

    key = "bill.invalid"
    fa = "شناسه قبض یا شناسه پرداخت درست نیست. لطفاً ارقام را با فیش مقایسه و دوباره وارد کنید."
    en = "The bill ID or payment ID is not correct. Please compare it with your slip and enter it again."
    money = "not_charged"

    def __init__(self, check: str, detail: str = "") -> None:
        super().__init__(detail or check, check=check)
        self.check = check


class NotABill(KioskError):
    """Scanned text that is not a bill barcode, a pair of ids or a bill QR payload."""

    key = "bill.not_a_bill"
    fa = "این کد مربوط به قبض یا فیش نیست. لطفاً بارکد فیش را اسکن کنید یا «ورود دستی» را بزنید."
    en = "This code is not a bill or fee slip. Please scan your slip's barcode or choose Enter manually."
    money = "not_charged"


@dataclass(frozen=True)
class Bill:
    """A validated pair. Ids are canonical: ASCII digits, leading zeros stripped."""

    bill_id: str
    payment_id: str
    service_type: ServiceType
    company_code: str
    amount_rials: int
    year: int
    period: str  # two digits as printed ("01"): a period is a label, not a quantity

    @property
    def barcode(self) -> str:
        """The 26-digit barcode: each id zero-padded to 13 digits."""
        return self.bill_id.zfill(13) + self.payment_id.zfill(13)

    def to_dict(self) -> dict[str, Any]:
        return {"valid": True, "error": None, "bill_id": self.bill_id, "payment_id": self.payment_id,
                "service_type": int(self.service_type), "company_code": self.company_code,
                "amount_rials": self.amount_rials, "year": self.year, "period": self.period}


_new_object = object.__new__
_set_attr = object.__setattr__


def invalid_dict(check: str) -> dict[str, Any]:
    """The to_dict shape for a pair that failed `check`: nothing about it is trusted."""
    return {"valid": False, "error": check, "bill_id": None, "payment_id": None,
            "service_type": None, "company_code": None, "amount_rials": None, "year": None,
            "period": None}


# --- the check function -----------------------------------------------------------------------
# Weights 2,3,4,5,6,7 repeat every 6 digits from the right, so the weighted sum of a number is
# the sum of its 6-digit chunks' weighted sums. _CHUNK_RESIDUE[x] holds that, mod 11, for every
# chunk x < 10**6 (1 MB, built from two 1000-entry halves in about a millisecond): a check
# becomes a few big-int divisions and byte lookups, which is what makes 200k pairs/s possible
# in pure Python (a per-digit loop costs ~1 us per id).
_CHUNK = 10**6


def _three_digit_sums(weights: tuple[int, int, int]) -> list[int]:
    return [(x % 10) * weights[0] + (x // 10 % 10) * weights[1] + (x // 100) * weights[2]
            for x in range(1000)]


def _build_chunk_residues() -> bytes:
    low = _three_digit_sums((2, 3, 4))
    high = _three_digit_sums((5, 6, 7))
    rows = [bytes((r + s) % 11 for s in low) for r in range(11)]
    return b"".join(rows[h % 11] for h in high)


_CHUNK_RESIDUE = _build_chunk_residues()
_DIGIT_OF_RESIDUE: tuple[int, ...] = tuple(0 if r < 2 else 11 - r for r in range(11))
_POW10: tuple[int, ...] = tuple(10**n for n in range(BILL_ID_MAX + 1))


def _check_of(number: int) -> int:
    """f() of a non-negative int's decimal digits (leading zeros never change f)."""
    total = 0
    while number:
        number, chunk = divmod(number, _CHUNK)
        total += _CHUNK_RESIDUE[chunk]
    return _DIGIT_OF_RESIDUE[total % 11]


def check_digit(digits: str) -> int:
    """FIELD-NOTES f(s): r = sum(d_i * w_i) mod 11 with w = 2..7 repeating from the right;
    0 if r < 2 else 11 - r. Raises ValueError on anything but ASCII digits."""
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"check_digit needs ASCII digits, got {digits!r}")
    return _DIGIT_OF_RESIDUE[sum(int(d) * (2 + i % 6) for i, d in enumerate(reversed(digits))) % 11]


# --- parsing ------------------------------------------------------------------------------------
def parse_bill(bill_id: str, payment_id: str) -> Bill:
    """Validate a typed pair. Surrounding whitespace and leading zeros are ignored; Persian
    digits are not converted here (parse_scanned does that). Raises InvalidBill."""
    raw_bill = bill_id.strip()
    raw_pay = payment_id.strip()
    bill = raw_bill.lstrip("0")
    pay = raw_pay.lstrip("0")
    # isascii() too: str.isdigit() is also true for Persian and superscript digits. The raw
    # length may reach 13 with zero padding (as in the barcode), never more.
    if not (len(raw_bill) <= BILL_ID_MAX and len(bill) >= BILL_ID_MIN and bill.isdigit()
            and bill.isascii()):
        raise InvalidBill("bill_id_format")
    service = _SERVICE_BY_DIGIT.get(bill[-2])
    if service is None:  # service digit 0 names no service
        raise InvalidBill("bill_id_format")
    # 5 digits is year+period+C1+C2 with no amount: checked below, then refused as amount_zero.
    if not (len(raw_pay) <= PAYMENT_ID_MAX and len(pay) >= PAYMENT_ID_MIN - 1 and pay.isdigit()
            and pay.isascii()):
        raise InvalidBill("payment_id_format")
    b_num = int(bill)
    p_num = int(pay)
    b_body, b_check = divmod(b_num, 10)
    p_body, c2 = divmod(p_num, 10)
    amount_period, c1 = divmod(p_body, 10)
    # _check_of unrolled: a bill body has <= 12 digits and amount+year+period <= 11, so two
    # chunks each; the loop and call are a measurable share of a 5 us budget.
    hi, lo = divmod(b_body, _CHUNK)
    if _DIGIT_OF_RESIDUE[(_CHUNK_RESIDUE[hi] + _CHUNK_RESIDUE[lo]) % 11] != b_check:
        raise InvalidBill("bill_check_digit")
    hi, lo = divmod(amount_period, _CHUNK)
    if _DIGIT_OF_RESIDUE[(_CHUNK_RESIDUE[hi] + _CHUNK_RESIDUE[lo]) % 11] != c1:
        raise InvalidBill("payment_c1")
    if _check_of(b_num * _POW10[len(pay) - 1] + p_body) != c2:
        raise InvalidBill("payment_c2")
    if p_num < 100_000:
        raise InvalidBill("amount_zero")
    # Built without the frozen dataclass __init__ (7 object.__setattr__ calls, ~1.2 us): every
    # field is checked above, and the instance is as frozen as any other Bill.
    result = _new_object(Bill)
    _set_attr(result, "__dict__", {
        "bill_id": bill, "payment_id": pay, "service_type": service, "company_code": bill[-5:-2],
        "amount_rials": p_num // 100_000 * 1000, "year": p_num // 10_000 % 10,
        "period": pay[-4:-2]})
    return result


def parse_barcode(digits: str) -> Bill:
    """The 26-digit barcode: [:13] is the bill id, [13:] the payment id, each zero-padded.
    Raises InvalidBill (check "barcode_format" when it is not 26 ASCII digits)."""
    code = digits.strip()
    if len(code) != BARCODE_LEN or not (code.isascii() and code.isdigit()):
        raise InvalidBill("barcode_format")
    return parse_bill(code[:13], code[13:])


_BILL_KEYS = ("bill_id", "billid", "bill")
_PAYMENT_KEYS = ("payment_id", "payid", "payment", "pay_id", "paymentid")
_SEPARATORS = ",-;|/\u060c"  # \u060c is the Arabic comma a Persian keyboard types


def parse_scanned(text: str) -> Bill:
    """What a scanner or camera hands over: a 26-digit barcode, the two ids separated by
    whitespace, comma, newline or dash, or a QR payload `bill_id=…&payment_id=…` (also as a
    URL's query; keys billid/payid/payment accepted). Persian/Arabic-Indic digits are read as
    ASCII. Raises NotABill when the text is none of these, InvalidBill when it is one that
    fails its checks."""
    body = to_ascii_digits(text).strip().strip("\x00\ufeff").strip()
    if not body:
        raise NotABill("empty scan")
    if "=" in body:
        return _parse_query(body)
    compact = body.replace(" ", "")
    if len(compact) == BARCODE_LEN and compact.isascii() and compact.isdigit():
        return parse_barcode(compact)
    unified = body
    for sep in _SEPARATORS:
        unified = unified.replace(sep, " ")
    parts = unified.split()
    if (len(parts) == 2 and all(p.isascii() and p.isdigit() and len(p) <= BILL_ID_MAX for p in parts)):
        return parse_bill(parts[0], parts[1])
    log.info("scanned text is not a bill (%d chars)", len(body))
    raise NotABill("not a bill barcode, id pair or bill QR payload")


def _parse_query(body: str) -> Bill:
    query = urlsplit(body).query if "?" in body else body
    fields: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        fields.setdefault(name.strip().lower(), value.strip())
    bill = next((fields[k] for k in _BILL_KEYS if k in fields), None)
    pay = next((fields[k] for k in _PAYMENT_KEYS if k in fields), None)
    if bill is None or pay is None:
        raise NotABill("a key=value payload without bill and payment ids")
    return parse_bill(bill, pay)


# --- building (back-office seed, tests) ---------------------------------------------------------
def make_bill_id(subscriber: str, company: str, service: int) -> str:
    """subscriber (1-8 digits) + company (up to 3 digits, zero-padded) + service (1-9) + check.
    Leading zeros are stripped. Raises ValueError when the parts cannot make a bill id."""
    if not (subscriber.isascii() and subscriber.isdigit() and 1 <= len(subscriber) <= 8):
        raise ValueError(f"subscriber must be 1-8 digits, got {subscriber!r}")
    if not (company.isascii() and company.isdigit() and 1 <= len(company) <= 3):
        raise ValueError(f"company code must be up to 3 digits, got {company!r}")
    if not 1 <= int(service) <= 9:
        raise ValueError(f"service type must be 1-9, got {service!r}")
    body = (subscriber + company.zfill(3) + str(int(service))).lstrip("0")
    bill_id = body + str(check_digit(body))
    if len(bill_id) < BILL_ID_MIN:
        raise ValueError("subscriber code is zero: the bill id would be shorter than 6 digits")
    return bill_id


def make_payment_id(bill_id: str, amount_rials: int, year: int, period: int) -> str:
    """amount/1000 + year digit + 2-digit period + C1 + C2, for the given bill id.
    Raises ValueError unless amount is a positive multiple of 1000 with at most 8 digits
    in thousands, year is 0-9 and period 0-99."""
    bill = bill_id.strip().lstrip("0")
    if not (bill.isascii() and bill.isdigit() and BILL_ID_MIN <= len(bill) <= BILL_ID_MAX):
        raise ValueError(f"not a bill id: {bill_id!r}")
    if amount_rials <= 0 or amount_rials % 1000:
        raise ValueError(f"amount must be a positive multiple of 1000 rials, got {amount_rials}")
    if amount_rials // 1000 > MAX_AMOUNT_THOUSANDS:
        raise ValueError(f"amount too large for a payment id: {amount_rials}")
    if not (0 <= year <= 9 and 0 <= period <= 99):
        raise ValueError(f"year must be 0-9 and period 0-99, got {year}, {period}")
    body = f"{amount_rials // 1000}{year}{period:02d}"
    c1 = str(check_digit(body))
    return body + c1 + str(check_digit(bill + body + c1))
