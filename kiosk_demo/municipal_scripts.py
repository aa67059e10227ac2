"""The demo's municipal scripts, one entry each (the same shape as the transit scripts): look
up and print fee slips, pay several at once, a settlement certificate, a traffic-zone permit.
The answers use the seeded demo owner (backoffice.seed) so a fresh data dir always has slips."""

from __future__ import annotations

from typing import Any

from backoffice.seed import DEMO_NATIONAL_CODE
from kiosk.scripted_ui import ScriptedUI
from kiosk_demo.transit_scripts import Ran, TransitScript

# the demo plate "۲۲ ب ۳۶۵ ایران ۱۰" as the citizen types it: digits, the letter from the
# picker (ب is the picker's second letter), digits, region
_PLATE = {"slips.plate_two": "22", "slips.plate_letter": "#1", "slips.plate_three": "365", "slips.plate_region": "10"}


async def _slips(ctx: Any, env: Any, ui: ScriptedUI) -> Ran:
    from kiosk.flows.fee_slips import FeeSlipsFlow

    result = await FeeSlipsFlow(ctx, ui).run()
    return result, {"fee_type": result.fee_type, "slips_listed": result.slips_listed,
                    "slips_chosen": [s.bill_id for s in result.chosen], "slips_printed": list(result.printed),
                    **_basket_summary(result.basket)}


def _basket_summary(basket: Any) -> dict[str, Any]:
    if basket is None:
        return {}
    bills = getattr(basket, "bills", None) or ()
    return {"bills": [b.to_dict() if hasattr(b, "to_dict") else str(b) for b in bills]}


async def _certificate(ctx: Any, env: Any, ui: ScriptedUI) -> Ran:
    from kiosk.flows.certificate import CertificateFlow

    result = await CertificateFlow(ctx, ui).run()
    return result, result.summary()


async def _permit(ctx: Any, env: Any, ui: ScriptedUI) -> Ran:
    from kiosk.flows.traffic_permit import TrafficPermitFlow

    result = await TrafficPermitFlow(ctx, ui).run()
    return result, result.summary()


MUNICIPAL_SCRIPTS: dict[str, TransitScript] = {
    "slips-print": TransitScript(
        "look up the demo owner's waste-charge slips by national code and print two of them",
        {"slips.choose_type": "waste_charge", "slips.enter_national_code": DEMO_NATIONAL_CODE,
         "slips.choose": "first:2", "slips.what_next": "print"}, _slips, expected_state=None),
    "slips-pay": TransitScript(
        "look up the demo car's vehicle-tax slips by plate and pay two of them with one card payment",
        {"slips.choose_type": "vehicle_tax", **_PLATE, "slips.choose": "first:2", "slips.what_next": "pay",
         "basket.confirm": True}, _slips),
    "certificate": TransitScript(
        "ask for a settlement certificate of the demo bakery (business tax): pay its outstanding slips, then print "
        "the signed certificate", {"cert.choose_type": "business_tax", "slips.enter_business_license": "13990412775",
                        "cert.outstanding": True, "basket.confirm": True}, _certificate),
    "traffic-permit": TransitScript(
        "buy today's traffic-zone permit for the demo car: plate, day, price, pay, recorded, receipt",
        {**_PLATE, "permit.choose_date": "#0", "permit.confirm": True}, _permit),
}
