"""Demo data for the reference back-office: Tehran owners with fee slips of the four kinds,
utility bills, a pending transit top-up for the demo card, and kiosk (and optionally
integration/gate) credentials. Every bill/payment id pair is built with kiosk.bills so it
passes the kiosk's own checks. Seeding again adds nothing, except that the demo owner is
topped up to DEMO_MIN_UNPAID unpaid slips when demos have paid the rest, and the demo card
gets a new pending load when a demo has collected the last one."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterator

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from backoffice.auth import put_kiosk, put_service_token
from backoffice.db import lock_for_seeding, make_engine, upgrade
from backoffice.identity import normalize_code, normalize_plate
from backoffice.models import Bill, BillStatus, Owner, OwnerKind, ServiceRole, SlipKind, TransitPendingLoad, utcnow
from backoffice.transit import PENDING_LOAD_SCOPE, request_hash
from backoffice.transit_schemas import PendingLoadIn
from kiosk.bills import make_bill_id, make_payment_id, parse_bill
from kiosk.sensitive import to_persian_digits

# The first demo citizen: found by any of these, with >= 40 unpaid slips across all four kinds.
DEMO_NATIONAL_CODE = "0084137258"
DEMO_RENOVATION_CODE = "3-178-39-7-0-0-0"
DEMO_PLATE = "۲۲ ب ۳۶۵ ایران ۱۰"
DEMO_BUSINESS_LICENSE = "1402-0063918"
# FIELD-NOTES' worked examples, seeded as unpaid utility bills
DEMO_PHONE_BILL = ("7748317800142", "1770160")
DEMO_WATER_BILL = ("2050327604613", "1070189")

MUNICIPALITY_SERVICE = 6
COMPANY_OF: dict[SlipKind, str] = {
    SlipKind.RENOVATION_TAX: "201", SlipKind.BUSINESS_TAX: "202",
    SlipKind.WASTE_CHARGE: "203", SlipKind.VEHICLE_TAX: "204",
}
BASE_AMOUNT: dict[SlipKind, int] = {
    SlipKind.RENOVATION_TAX: 1_850_000, SlipKind.BUSINESS_TAX: 3_200_000,
    SlipKind.WASTE_CHARGE: 420_000, SlipKind.VEHICLE_TAX: 1_150_000,
}
KIND_FA: dict[SlipKind, str] = {
    SlipKind.RENOVATION_TAX: "عوارض نوسازی", SlipKind.BUSINESS_TAX: "عوارض کسب و پیشه",
    SlipKind.WASTE_CHARGE: "بهای خدمات پسماند", SlipKind.VEHICLE_TAX: "عوارض خودرو",
}
MONTHS_FA = ("فروردین", "اردیبهشت", "خرداد", "تیر", "مرداد", "شهریور",
             "مهر", "آبان", "آذر", "دی", "بهمن", "اسفند")
# 1 Farvardin of each Jalali year in the Gregorian calendar
NOWRUZ = {1403: dt.date(2024, 3, 20), 1404: dt.date(2025, 3, 21), 1405: dt.date(2026, 3, 21)}
# Every demo run pays one of the demo owner's slips; a seed keeps at least this many unpaid by
# adding top-up batches of this many slips (subscriber codes "<owner>9<batch:04d><i>", a
# second digit 9 that the base slips, numbered by kind 1-4, never use).
DEMO_MIN_UNPAID = 5
MAX_TOPUP_BATCH = 9999
# The demo transit card (its serial; the kiosk demo's virtual card carries it) and the top-up
# paid elsewhere that `kiosk demo --script collect-pending` collects. Each collection applies
# it; the next seed adds another (external refs "demo-<serial>-<n>").
DEMO_CARD_SERIAL = "9364010001"  # the demo card of devices/transit_card/demo.py (one value, two packages)
DEMO_PENDING_LOAD_RIALS = 50_000
DEMO_PENDING_SOURCE = "demo"


@dataclass(frozen=True)
class SeedSummary:
    kiosks_changed: int
    owners_added: int
    bills_added: int
    demo_unpaid_slips: int  # unpaid slips of DEMO_NATIONAL_CODE after seeding
    pending_loads_added: int = 0  # the demo card's pending top-up, when it had none left
    services_changed: int = 0  # integration and gate credentials created or changed


@dataclass(frozen=True)
class _DemoOwner:
    number: int  # part of each slip's subscriber code; unique per owner
    kind: OwnerKind
    name_fa: str
    national_code: str | None
    renovation_code: str | None
    plate: str | None
    business_license: str | None
    slips: tuple[tuple[SlipKind, int], ...]  # (kind, how many months)
    paid_first: int = 0  # how many of its oldest slips are already paid
    paid_kinds: tuple[SlipKind, ...] = ()  # kinds whose slips are all paid (a certificate can be issued)


OWNERS: tuple[_DemoOwner, ...] = (
    _DemoOwner(1, OwnerKind.NATIONAL, "علی رضایی", DEMO_NATIONAL_CODE, DEMO_RENOVATION_CODE, DEMO_PLATE,
               DEMO_BUSINESS_LICENSE, tuple((k, 12) for k in SlipKind)),
    _DemoOwner(2, OwnerKind.NATIONAL, "زهرا محمدی", "0029163846", "6-2104-17-0-0-0", None, None,
               ((SlipKind.RENOVATION_TAX, 6), (SlipKind.WASTE_CHARGE, 6))),
    _DemoOwner(3, OwnerKind.PLATE, "حسین کریمی", "4451270936", None, "۴۵ ج ۷۸۱ ایران ۲۰", None,
               ((SlipKind.VEHICLE_TAX, 4),)),
    _DemoOwner(4, OwnerKind.BUSINESS, "نانوایی سنگکی مهدی احمدی", "0075612488", None, None, "1399-0412775",
               ((SlipKind.BUSINESS_TAX, 4), (SlipKind.WASTE_CHARGE, 4))),
    _DemoOwner(5, OwnerKind.NATIONAL, "مریم حسینی", "1293847569", "11-305-22-4-0-0-0", None, None,
               ((SlipKind.RENOVATION_TAX, 4), (SlipKind.WASTE_CHARGE, 4)), paid_first=2),
    # issue 9: owners whose slips of a kind are all paid (a settlement certificate is issued),
    # and a property with exactly three unpaid renovation slips (a basket of three)
    _DemoOwner(6, OwnerKind.NATIONAL, "رضا احمدی", "0062314572", "5-221-14-3-0-0-0", None, None,
               ((SlipKind.RENOVATION_TAX, 4), (SlipKind.WASTE_CHARGE, 2)),
               paid_kinds=(SlipKind.RENOVATION_TAX, SlipKind.WASTE_CHARGE)),
    _DemoOwner(7, OwnerKind.BUSINESS, "کافه نارنج سارا موسوی", "0241785960", None, None, "1401-0098812",
               ((SlipKind.BUSINESS_TAX, 3),), paid_kinds=(SlipKind.BUSINESS_TAX,)),
    _DemoOwner(8, OwnerKind.PLATE, "امیر حسین‌زاده", "1135602840", None, "۶۸ د ۲۱۴ ایران ۴۴", None,
               ((SlipKind.VEHICLE_TAX, 2),), paid_kinds=(SlipKind.VEHICLE_TAX,)),
    _DemoOwner(9, OwnerKind.NATIONAL, "نرگس جعفری", "3389140727", "8-77-301-2-0-0-0", "۱۳ س ۵۲۷ ایران ۶۶", None,
               ((SlipKind.RENOVATION_TAX, 3), (SlipKind.VEHICLE_TAX, 2))),
)
# issue 9's seeded cases, by what a demo or test wants to show
PAID_RENOVATION_CODE = "5-221-14-3-0-0-0"  # every renovation slip paid: a certificate
PAID_BUSINESS_LICENSE = "1401-0098812"  # every business slip paid: a certificate
PAID_PLATE = "۶۸ د ۲۱۴ ایران ۴۴"  # every vehicle slip paid
PAID_NATIONAL_CODE = "0062314572"  # every waste-charge slip paid
BASKET_RENOVATION_CODE = "8-77-301-2-0-0-0"  # exactly three unpaid renovation slips
BASKET_PLATE = "۱۳ س ۵۲۷ ایران ۶۶"  # two unpaid vehicle slips
UNPAID_BUSINESS_LICENSE = "1399-0412775"  # four unpaid business slips (the bakery)
UNPAID_NATIONAL_CODE = "0029163846"  # six unpaid waste-charge slips

# (bill_id, payment_id, payer, description) — utility bills that are not municipal fee slips
UTILITY_BILLS: tuple[tuple[str, str, str, str], ...] = (
    (*DEMO_PHONE_BILL, "رضا نوری", "قبض تلفن ثابت"),
    (*DEMO_WATER_BILL, "فاطمه صادقی", "قبض آب و فاضلاب"),
)


def _months(count: int) -> Iterator[tuple[int, int]]:
    """`count` Jalali (year, month) pairs ending with Shahrivar 1404, oldest first."""
    index = 1404 * 12 + 5  # Shahrivar 1404 as a month number
    for i in range(index - count + 1, index + 1):
        yield i // 12, i % 12 + 1


def _month_start(year: int, month: int) -> dt.date:
    days = (month - 1) * 31 if month <= 7 else 186 + (month - 7) * 30
    return NOWRUZ[year] + dt.timedelta(days=days)


def _due(year: int, month: int) -> dt.date:
    """Fees fall due at the end of the month after the period (the start of the one after)."""
    y, m = (year, month + 2) if month <= 10 else (year + 1, month - 10)
    return _month_start(y, m) - dt.timedelta(days=1)


def _slip(owner: _DemoOwner, kind: SlipKind, subscriber: str, jy: int, jm: int, amount: int,
          status: BillStatus) -> dict[str, object]:
    label = f"{MONTHS_FA[jm - 1]} {to_persian_digits(jy)}"
    bill_id = make_bill_id(subscriber, COMPANY_OF[kind], MUNICIPALITY_SERVICE)
    canonical = parse_bill(bill_id, make_payment_id(bill_id, amount, jy % 10, jm))
    return {
        "bill_id": canonical.bill_id, "payment_id": canonical.payment_id, "service_type": MUNICIPALITY_SERVICE,
        "company_code": COMPANY_OF[kind], "amount_rials": amount, "status": status,
        "payer_name": owner.name_fa, "due_date": _due(jy, jm),
        "description_fa": f"{KIND_FA[kind]} — {label}", "slip_kind": kind, "period_label": label,
    }


def _slips_of(owner: _DemoOwner) -> Iterator[dict[str, object]]:
    for kind_no, (kind, count) in enumerate(owner.slips, start=1):
        for seq, (jy, jm) in enumerate(_months(count), start=1):
            amount = BASE_AMOUNT[kind] + 10_000 * ((owner.number * 7 + seq) % 9)
            subscriber = f"{owner.number}{list(SlipKind).index(kind) + 1}{kind_no}{seq:03d}"
            paid = kind in owner.paid_kinds or (seq <= owner.paid_first and kind_no == 1)
            status = BillStatus.PAID if paid else BillStatus.UNPAID
            yield _slip(owner, kind, subscriber, jy, jm, amount, status)


def _topup_slips(owner: _DemoOwner, batch: int) -> Iterator[dict[str, object]]:
    """Top-up batch `batch` (1..MAX_TOPUP_BATCH): DEMO_MIN_UNPAID unpaid slips over the four
    kinds and the last year's months. Deterministic, so two seeders make the same rows."""
    months = list(_months(12))
    kinds = tuple(SlipKind)
    for i in range(DEMO_MIN_UNPAID):
        kind = kinds[(batch + i) % len(kinds)]
        jy, jm = months[(batch + i) % len(months)]
        amount = BASE_AMOUNT[kind] + 10_000 * ((batch + i) % 9)
        yield _slip(owner, kind, f"{owner.number}9{batch:04d}{i}", jy, jm, amount, BillStatus.UNPAID)


def _find_owner(session: Session, spec: _DemoOwner) -> Owner | None:
    query = select(Owner).where(Owner.name_fa == spec.name_fa)
    if spec.national_code:
        query = query.where(Owner.national_code == spec.national_code)
    return session.scalars(query).first()


def _unpaid_of(session: Session, owner: Owner) -> int:
    return int(session.scalar(select(func.count(Bill.id)).where(
        Bill.owner_id == owner.id, Bill.status == BillStatus.UNPAID)) or 0)


def _seed_pending_load(session: Session) -> int:
    """A pending load for the demo card unless it still has one not applied; 1 when added."""
    demo = select(TransitPendingLoad).where(TransitPendingLoad.card_serial == DEMO_CARD_SERIAL,
                                            TransitPendingLoad.source == DEMO_PENDING_SOURCE)
    rows = session.scalars(demo).all()
    if any(row.applied_at is None for row in rows):
        return 0
    body = PendingLoadIn(card_serial=DEMO_CARD_SERIAL, amount_rials=DEMO_PENDING_LOAD_RIALS,
                         source=DEMO_PENDING_SOURCE, external_ref=f"demo-{DEMO_CARD_SERIAL}-{len(rows) + 1}")
    session.add(TransitPendingLoad(card_serial=body.card_serial, amount_rials=body.amount_rials, source=body.source,
                                   external_ref=body.external_ref, created_by="seed",
                                   request_sha256=request_hash(PENDING_LOAD_SCOPE, body.canonical()),
                                   created_at=utcnow()))
    return 1


def _seed(session: Session, kiosks: dict[str, str],
          services: dict[str, tuple[ServiceRole, str]] | None = None) -> SeedSummary:
    # one seeder at a time: a demo and a test may seed the same database at once
    lock_for_seeding(session)
    kiosks_changed = sum(put_kiosk(session, kid, token) for kid, token in kiosks.items())
    services_changed = sum(put_service_token(session, name, role, token)
                           for name, (role, token) in (services or {}).items())
    existing = {(b, p) for b, p in session.execute(select(Bill.bill_id, Bill.payment_id))}
    owners_added = bills_added = 0
    for spec in OWNERS:
        owner = _find_owner(session, spec)
        if owner is None:
            owner = Owner(
                kind=spec.kind, name_fa=spec.name_fa, national_code=spec.national_code,
                renovation_code=normalize_code(spec.renovation_code) if spec.renovation_code else None,
                plate=normalize_plate(spec.plate) if spec.plate else None,
                business_license=normalize_code(spec.business_license) if spec.business_license else None,
            )
            session.add(owner)
            session.flush()
            owners_added += 1
        for slip in _slips_of(spec):
            if (slip["bill_id"], slip["payment_id"]) in existing:
                continue
            session.add(Bill(owner_id=owner.id, **slip))
            bills_added += 1
    for bill_id, payment_id, payer, description in UTILITY_BILLS:
        if (bill_id, payment_id) in existing:
            continue
        bill = parse_bill(bill_id, payment_id)
        session.add(Bill(bill_id=bill.bill_id, payment_id=bill.payment_id, service_type=int(bill.service_type),
                         company_code=bill.company_code, amount_rials=bill.amount_rials,
                         status=BillStatus.UNPAID, payer_name=payer, due_date=dt.date(2025, 12, 21),
                         description_fa=description))
        bills_added += 1
    session.flush()
    demo_owner = _find_owner(session, OWNERS[0])
    assert demo_owner is not None
    unpaid = _unpaid_of(session, demo_owner)
    batch = 1
    while unpaid < DEMO_MIN_UNPAID and batch <= MAX_TOPUP_BATCH:
        for slip in _topup_slips(OWNERS[0], batch):
            if (slip["bill_id"], slip["payment_id"]) not in existing:
                session.add(Bill(owner_id=demo_owner.id, **slip))
                bills_added += 1
                unpaid += 1
        batch += 1
    pending_added = _seed_pending_load(session)
    session.flush()
    return SeedSummary(kiosks_changed, owners_added, bills_added, _unpaid_of(session, demo_owner), pending_added,
                       services_changed)


def seed_demo(target: str | Engine | Session, kiosks: dict[str, str],
              services: dict[str, tuple[ServiceRole, str]] | None = None) -> SeedSummary:
    """Seed the demo data and kiosk credentials ({kiosk_id: token}) and commit; `services`
    adds integration and gate credentials ({name: (role, token)}).

    `target` is a database URL (migrated first), an Engine, or a Session (committed here)."""
    if isinstance(target, Session):
        summary = _seed(target, kiosks, services)
        target.commit()
        return summary
    engine = target
    if isinstance(target, str):
        upgrade(target)
        engine = make_engine(target)
    assert isinstance(engine, Engine)
    try:
        with Session(engine) as session, session.begin():
            return _seed(session, kiosks, services)
    finally:
        if isinstance(target, str):
            engine.dispose()
