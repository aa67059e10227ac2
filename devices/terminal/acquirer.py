"""Acquirer profiles: what the bank behind the terminal puts in an approval, and how rials go
on the wire. nexo leaves these to the acquirer, so they are configuration (the terminal's
`acquirer` option), not rules hard-coded in the parser. See docs/payment-terminal.md.

Amounts. ISO 4217 gives IRR an exponent of 2 (the dinar, 1/100 rial), but no minor unit has
circulated for decades and Iranian acquirers (Shaparak) settle whole rials. nexo amounts
are decimals in the currency's major unit, so a fee of 1,200,000 rials travels as
`RequestedAmount: 1200000` under every profile; what a profile decides is whether a fraction
may appear (never, for IRR) and the largest amount the kiosk sends. The largest is the
Terminal API schema's RequestedAmount maximum unless the acquirer's own limit is lower.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from devices.base import InvalidData

#: TerminalAPI-v1.json (Adyen/adyen-openapi): AmountsReq.RequestedAmount "maximum": 99999999.999999
SCHEMA_MAX_AMOUNT = 99_999_999


@dataclass(frozen=True)
class AcquirerProfile:
    name: str
    #: exact number of digits of the retrieval reference number, or None for any identifier
    rrn_digits: int | None
    rrn_required: bool
    #: exact number of digits of the system trace audit number, or None for any
    stan_digits: int | None
    stan_required: bool
    max_amount_rials: int = SCHEMA_MAX_AMOUNT

    def check_rrn(self, rrn: str) -> str | None:
        """None when `rrn` is acceptable, else why not."""
        if not rrn:
            return "RRN missing" if self.rrn_required else None
        if self.rrn_digits is not None:
            if len(rrn) != self.rrn_digits or not (rrn.isascii() and rrn.isdigit()):
                return f"RRN must be {self.rrn_digits} digits"
        elif not _IDENTIFIER.fullmatch(rrn):
            return "RRN is not a printable identifier of at most 64 characters"
        return None

    def check_stan(self, stan: str) -> str | None:
        if not stan:
            return "STAN missing" if self.stan_required else None
        if self.stan_digits is not None:
            if len(stan) != self.stan_digits or not (stan.isascii() and stan.isdigit()):
                return f"STAN must be {self.stan_digits} digits"
        elif not _IDENTIFIER.fullmatch(stan):
            return "STAN is not a printable identifier of at most 64 characters"
        return None


_IDENTIFIER = re.compile(r"[\x21-\x7e]{1,64}")

PROFILES: dict[str, AcquirerProfile] = {
    # Shaparak (Iran's card switch, ISO 8583 based): RRN is field 37, 12 digits; STAN is
    # field 11, 6 digits. Both are printed on every Iranian card receipt and both are what a
    # bank's dispute desk asks for, so an approval without them is not accepted.
    "shaparak": AcquirerProfile("shaparak", rrn_digits=12, rrn_required=True, stan_digits=6, stan_required=True),
    # Adyen's Terminal API: AcquirerTransactionID.TransactionID is Adyen's own reference (not
    # digits only), and no STAN is sent (payment-sync-success.json in adyen-java-api-library).
    "adyen": AcquirerProfile("adyen", rrn_digits=None, rrn_required=False, stan_digits=None, stan_required=False),
}


def profile_named(name: str, *, device: str = "terminal") -> AcquirerProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise InvalidData(f"{device}: unknown acquirer profile {name!r}; known: {', '.join(sorted(PROFILES))}",
                          device=device, error_code="config") from None
