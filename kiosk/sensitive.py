"""The one owner of sensitive citizen data rules: card-number detection and Luhn, masked-PAN
checks, card and national-code masking, the national-code check, Persian/Arabic-Indic digits,
and log redaction. Pure: imports nothing from the project, so the back-office can use it too.
"""

from __future__ import annotations

import re

# --- digits ---------------------------------------------------------------------------------

_PERSIAN = "۰۱۲۳۴۵۶۷۸۹"
_ARABIC_INDIC = "٠١٢٣٤٥٦٧٨٩"
_TO_ASCII = str.maketrans(_PERSIAN + _ARABIC_INDIC, "0123456789" * 2)
_TO_PERSIAN = str.maketrans("0123456789" + _ARABIC_INDIC, _PERSIAN * 2)


def to_ascii_digits(text: str) -> str:
    """Persian (۰-۹) and Arabic-Indic (٠-٩) digits to ASCII; everything else unchanged."""
    return text.translate(_TO_ASCII)


def to_persian_digits(text: str | int) -> str:
    """ASCII and Arabic-Indic digits to Persian (۰-۹), as a Persian screen or receipt shows
    them; everything else unchanged. An int is written in decimal first."""
    return str(text).translate(_TO_PERSIAN)


def _compact(text: str) -> str:
    """ASCII digits of what a keypad, card or scanner gave, without spaces and dashes."""
    return to_ascii_digits(text).strip().replace(" ", "").replace("-", "")


# --- cards ----------------------------------------------------------------------------------


def luhn_ok(digits: str) -> bool:
    """ISO/IEC 7812 Luhn check of a digit string (ASCII, Persian or Arabic-Indic digits, no
    separators). False for an empty string or anything that is not all digits."""
    digits = to_ascii_digits(digits)
    if not digits or not (digits.isascii() and digits.isdigit()):
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# A card number as people write it: 16–19 digits in one run (ISO/IEC 7812 lengths), or groups
# of four split by one kind of separator, a space or a dash. \d matches Persian and
# Arabic-Indic digits as well. A digit-dash-digit mix of other shapes is NOT a card:
# transaction ids and dates ("…-01-20261128-0349…") would pass Luhn one time in ten.
# A run glued to Latin letters is part of an identifier, not a card as people write it: a
# sha256 hex digest (the journal head a settlement carries) holds 16+ digits in a row about
# one time in forty, and one in ten of those passes Luhn — refusing it would stop a
# settlement after the card was charged.
CARD_SEPARATORS = " -"
_CARD_RUN = re.compile(
    r"(?<![\dA-Za-z])(?:\d{16,19}|\d{4}(?:([ -])\d{4})(?:\1\d{4}){2}(?:\1?\d{1,3})?)(?![\dA-Za-z])")


def find_card_number(text: str) -> bool:
    """True when `text` holds a card number: 16–19 digits in one run, or in groups of four
    split by a space or a dash, that pass Luhn (Persian and Arabic-Indic digits too)."""
    for match in _CARD_RUN.finditer(text):
        digits = match.group(0).replace(" ", "").replace("-", "")
        if 16 <= len(digits) <= 19 and luhn_ok(digits):
            return True
    return False


def mask_card(number: str) -> str:
    """First 6 + last 4 ("6037991234561234" -> "603799******1234"), the PCI DSS display limit.
    Fewer than 10 digits are masked whole."""
    digits = _compact(number)
    if len(digits) < 10:
        return "*" * len(digits)
    return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]


#: what may stand for a hidden digit in a masked card number
MASK_CHARS = "*Xx•●#"
_MASKED_SEPARATORS = str.maketrans("", "", " .-")
_MASKED_SHAPE = re.compile(r"[0-9]{0,6}[" + re.escape(MASK_CHARS) + r"]+[0-9]{0,4}")


def is_masked_pan(text: str) -> bool:
    """True for a masked card number as terminals and receipts write it: at most the first 6
    and the last 4 digits visible, the middle hidden by one of MASK_CHARS, grouped by spaces,
    dots or dashes as the writer likes ("6037 99** **** 1234", "603799******1234",
    "411111 **** 1111"). Never more than 10 digits visible; a full number is refused whatever
    its grouping ("6037.9912.3456.7893")."""
    if not isinstance(text, str):
        return False
    compact = to_ascii_digits(text).strip().translate(_MASKED_SEPARATORS)
    if not 12 <= len(compact) <= 19 or _MASKED_SHAPE.fullmatch(compact) is None:
        return False
    return sum(ch.isdigit() for ch in compact) <= 10


# --- national code (کد ملی) -----------------------------------------------------------------


def national_code_ok(code: str) -> bool:
    """The national-code check: 10 digits; s = sum(d_i * (10 - i)) over the first 9,
    r = s mod 11, the last digit is r if r < 2 else 11 - r. A single repeated digit passes
    that sum but is refused. Persian digits, spaces and dashes are accepted."""
    digits = _compact(code)
    if len(digits) != 10 or not (digits.isascii() and digits.isdigit()) or len(set(digits)) == 1:
        return False
    r = sum(int(d) * (10 - i) for i, d in enumerate(digits[:9])) % 11
    return int(digits[9]) == (r if r < 2 else 11 - r)


def mask_name(name: str) -> str:
    """What a person holding a slip may see of the payer: the first letter of each word, then
    *** ("علی رضایی" -> "ع*** ر***"). The one masking rule for owner names."""
    return " ".join(word[0] + "***" for word in name.split()) or "***"


def mask_code(code: str) -> str:
    """A renovation code or business licence for screens, logs and certificates: first 2 and
    last 2 characters ("3178397000" -> "31******00"); short codes are all stars."""
    return code[:2] + "*" * (len(code) - 4) + code[-2:] if len(code) >= 8 else "****"


def mask_plate(plate: str) -> str:
    """A canonical plate with its three-digit serial hidden ("22 ب *** ایران 10")."""
    parts = plate.split(" ")
    if len(parts) == 5:
        parts[2] = "***"
        return " ".join(parts)
    return "****"


def mask_national_code(code: str) -> str:
    """First 3 + last 3 digits ("0012345679" -> "001****679"): tells logs apart, identifies
    no one. Shorter than 7 digits: "****"."""
    digits = _compact(code)
    return digits[:3] + "****" + digits[-3:] if len(digits) >= 7 else "****"


# --- redaction (the last net in logs and stored error texts) --------------------------------

# A grouped card number: four groups of four (and an optional short fifth) split by one
# kind of separator, space, dash or dot. No Luhn here: a log line loses nothing by masking
# a number that only looks like a card.
_GROUPED = re.compile(r"(?<!\d)(\d{4})([ .-])(\d{4})\2(\d{4})\2(\d{4})(?:\2(\d{1,3}))?(?!\d)")
# Any run of 14 or more digits (bill ids stop at 13; a 26-digit barcode is masked too).
_LONG_RUN = re.compile(r"(?<!\d)\d{14,}(?!\d)")
# A lone 10-digit run: masked when it passes the national-code check.
_TEN_RUN = re.compile(r"(?<!\d)\d{10}(?!\d)")


_ANY_DIGIT = re.compile(r"\d")


def _mask_run(digits: str) -> str:
    return digits[:6] + "******" + digits[-4:]


def _mask_grouped(m: re.Match[str]) -> str:
    digits = m.group(1) + m.group(3) + m.group(4) + m.group(5) + (m.group(6) or "")
    return _mask_run(digits)


def _mask_ten(m: re.Match[str]) -> str:
    run = m.group(0)
    # masked in the digits it was written in, as _mask_run does for cards
    return run[:3] + "****" + run[-3:] if national_code_ok(run) else run


def redact(text: str) -> str:
    """Free text with card-like digits masked to first6******last4 (any run of 14+ digits, or
    4-4-4-4 groups split by a space, dash or dot) and full national codes masked to
    first3****last3. Persian and Arabic-Indic digits are caught too; other text is unchanged.
    For logs and stored error texts; the journal refuses such data outright."""
    if _ANY_DIGIT.search(text) is None:
        return text
    text = _GROUPED.sub(_mask_grouped, text)
    text = _LONG_RUN.sub(lambda m: _mask_run(m.group(0)), text)
    return _TEN_RUN.sub(_mask_ten, text)


# --- the net for data about to be stored (journal rows, outbox payloads) ---------------------

# Keys whose value may never be stored, whatever it looks like.
SECRET_KEY = re.compile(r'"(?:pin|pin_block|password|cvv2?)":', re.IGNORECASE)
# Identity keys whose value may only be stored masked: a run of 10+ digits means it is not.
UNMASKED_IDENTITY = re.compile(
    r'"(?:national_code|national_id|card_number|pan)":"[^"]*\d{10}', re.IGNORECASE)

# The cheap superset test run before the regexes. For ASCII text it maps digits to "0" and
# capitals to lower case and drops the card separators: every text a regex above can match
# then holds ten "0" in a row (a 10-digit identity run or a 16-19 digit card run, separators
# gone) or one of the secret key prefixes. Text that passes cannot match, so the regexes only
# run when it fails, and their verdict is the one that counts. Non-ASCII text (Persian
# digits, case folds of ſ/K) always takes the full scan.
_PRECHECK = bytes.maketrans(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                            b"0000000000abcdefghijklmnopqrstuvwxyz")
_PRECHECK_DROP = CARD_SEPARATORS.encode("ascii")


def unstorable_reason(json_text: str) -> str | None:
    """Why canonical JSON text may not be stored (a PIN/password/CVV key, an unmasked
    national code or card number under an identity key, a full card number anywhere), or
    None when it holds nothing sensitive."""
    if json_text.isascii():
        folded = json_text.encode("ascii").translate(_PRECHECK, _PRECHECK_DROP)
        if not (b"0000000000" in folded or b'"pin' in folded or b'"password' in folded
                or b'"cvv' in folded):
            return None
    if SECRET_KEY.search(json_text):
        return "a PIN, password or CVV may never be stored"
    if UNMASKED_IDENTITY.search(json_text):
        return "a national code or card number must be masked (e.g. first6…last4)"
    if find_card_number(json_text):
        return "data holds a full card number; store a masked form"
    return None


__all__ = [
    "CARD_SEPARATORS",
    "MASK_CHARS",
    "find_card_number",
    "is_masked_pan",
    "luhn_ok",
    "mask_card",
    "mask_national_code",
    "national_code_ok",
    "redact",
    "unstorable_reason",
    "to_ascii_digits",
    "to_persian_digits",
]
