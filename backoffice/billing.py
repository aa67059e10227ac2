"""Read side of the gateway: look up one bill by its ids, and an owner's fee slips by national
code (+ renovation code), plate or business licence. Bill ids are checked by kiosk.bills."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from backoffice.errors import ApiError
from backoffice.identity import mask_name, normalize_code, normalize_plate
from backoffice.models import Bill, BillStatus, Owner, SlipKind
from backoffice.schemas import BillOut, FeeSlipOut, OwnerSlipsOut
from kiosk.bills import InvalidBill, parse_bill
from kiosk.sensitive import mask_national_code, national_code_ok

log = logging.getLogger("backoffice.billing")

# What each way of asking is about: a plate finds vehicle tax, a licence business tax, a
# property (national + renovation code) its renovation tax and waste charge.
PROPERTY_KINDS = (SlipKind.RENOVATION_TAX, SlipKind.WASTE_CHARGE)


def canonical_ids(bill_id: str, payment_id: str) -> tuple[str, str, int, str]:
    """(bill_id, payment_id, year, period) in canonical form, or 422 bill.invalid."""
    try:
        bill = parse_bill(bill_id, payment_id)
    except InvalidBill as exc:
        raise ApiError(422, "bill.invalid", check=exc.check) from exc
    return bill.bill_id, bill.payment_id, int(bill.year), str(bill.period)


def lookup_bill(session: Session, bill_id: str, payment_id: str) -> BillOut:
    bid, pid, year, period = canonical_ids(bill_id, payment_id)
    row = session.scalars(select(Bill).where(Bill.bill_id == bid, Bill.payment_id == pid)).one_or_none()
    if row is None:
        raise ApiError(404, "bill.not_found")
    return BillOut(
        bill_id=row.bill_id, payment_id=row.payment_id, service_type=row.service_type,
        company_code=row.company_code, amount_rials=row.amount_rials, year=year, period=period,
        payer_name=mask_name(row.payer_name), description_fa=row.description_fa, status=str(row.status),
        due_date=row.due_date,
    )


def _given(value: str | None) -> str | None:
    return value.strip() if value and value.strip() else None


def fee_slips(
    session: Session,
    *,
    national_code: str | None = None,
    renovation_code: str | None = None,
    plate: str | None = None,
    business_license: str | None = None,
) -> OwnerSlipsOut:
    """Exactly one way of asking: national code (optionally with a renovation code), plate, or
    business licence. Anything else is 422 query.invalid; no owner is 404 owner.not_found."""
    national_code, renovation_code = _given(national_code), _given(renovation_code)
    plate, business_license = _given(plate), _given(business_license)
    ways = sum(x is not None for x in (national_code, plate, business_license))
    if ways != 1 or (renovation_code is not None and national_code is None):
        raise ApiError(422, "query.invalid",
                       detail="give national_code (optionally with renovation_code), or plate, or business_license")
    query = select(Owner)
    kinds: tuple[SlipKind, ...] = tuple(SlipKind)
    if national_code is not None:
        code = normalize_code(national_code)  # ASCII digits; spaces and dashes dropped
        if not national_code_ok(code):
            raise ApiError(422, "query.invalid", detail="national_code fails its check digit")
        query = query.where(Owner.national_code == code)
        if renovation_code is not None:
            query = query.where(Owner.renovation_code == normalize_code(renovation_code))
            kinds = PROPERTY_KINDS
        who = mask_national_code(code)
    elif plate is not None:
        query = query.where(Owner.plate == normalize_plate(plate))
        kinds = (SlipKind.VEHICLE_TAX,)
        who = "plate"
    else:
        assert business_license is not None
        query = query.where(Owner.business_license == normalize_code(business_license))
        kinds = (SlipKind.BUSINESS_TAX,)
        who = "business"
    owners = list(session.scalars(query.order_by(Owner.id)))
    if not owners:
        log.info("fee slips: no owner for %s", who)
        raise ApiError(404, "owner.not_found")
    rows = session.scalars(
        select(Bill)
        .where(Bill.owner_id.in_([o.id for o in owners]), Bill.slip_kind.in_(kinds))
        # unpaid first, then oldest due first: what the citizen most likely came to pay
        .order_by(Bill.status.desc(), Bill.due_date, Bill.id)
    )
    slips = [
        FeeSlipOut(slip_id=b.id, kind=str(b.slip_kind), bill_id=b.bill_id, payment_id=b.payment_id,
                   amount_rials=b.amount_rials, period=b.period_label or "", due_date=b.due_date,
                   description_fa=b.description_fa, status=str(b.status))
        for b in rows
    ]
    log.info("fee slips for %s: %d (%d unpaid)", who, len(slips),
             sum(s.status == BillStatus.UNPAID for s in slips))
    # masked: what a person holding the slip sees of the payer (identity.mask_name)
    return OwnerSlipsOut(owner_name=mask_name(owners[0].name_fa), slips=slips)
