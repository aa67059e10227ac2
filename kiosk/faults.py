"""Crash-at-a-named-point hook for fault tests.

When $KIOSK_FAULT names a point, the process dies with os._exit(99) exactly there: no
finally blocks, no flushing, as a power cut would. Points (see docs/faults.md):

  after-created    journal has CREATED; the terminal has not been asked yet
  after-paying     journal has PAYING; the terminal request is about to be sent
  after-approved   the terminal approved the sale; PAID is not journaled yet
  after-paid       terminal approved and PAID is journaled; settlement not started
  after-post-sent  the settlement post reached the back-office; its answer is not journaled
  before-receipt   the payment is POSTED; the receipt is not printed
  before-card-write  a top-up's write plan is journaled (FULFILLING); nothing written to the card
  after-card-write   the top-up is written to the card; FULFILLED is not journaled yet
  after-dispense     a card sale's blank card is at the read position (PAID); nothing planned yet
  after-card-eject   a sold card was ejected (UNCERTAIN: the hand-over); FULFILLED not journaled yet
  (a card sale reuses before-card-write: plan journaled, and after-card-write: personalised, verified)
  (a pending-load collection reuses after-created, before-card-write: plan journaled and claimed, and after-card-write)
  between-basket-settlements  a fee basket's bill is settled; the next bill is not posted yet
  after-partial-refund  the terminal refunded a refused bill's share; the refund is not journaled yet

A name that is not one of these is refused when a money-moving process starts
(`check_fault_env`), so a misspelt fault never silently runs a test without its crash.
"""

from __future__ import annotations

import os
import sys

from kiosk.errors import KioskError

POINTS = ("after-created", "after-paying", "after-approved", "after-paid", "after-post-sent",
          "before-receipt", "before-card-write", "after-card-write")
POINTS += ("after-dispense", "after-card-eject")  # buying a new transit card
POINTS += ("between-basket-settlements", "after-partial-refund")  # paying several fee slips at once
ENV = "KIOSK_FAULT"


class UnknownFaultPoint(KioskError):
    """$KIOSK_FAULT names no fault point: a usage error, refused before anything starts."""

    key = "faults.unknown_point"
    fa = "نقطهٔ خطای آزمایشی KIOSK_FAULT={name} شناخته نیست؛ نقطه‌های معتبر: {known}."
    en = "KIOSK_FAULT={name} is not a fault point; known points: {known}."


def check_fault_env() -> None:
    """Raise UnknownFaultPoint when $KIOSK_FAULT is set to a name that is not a point."""
    name = os.environ.get(ENV)
    if name and name not in POINTS:
        raise UnknownFaultPoint(f"unknown KIOSK_FAULT {name!r}", name=name, known=", ".join(POINTS))


class SimulatedCrash(BaseException):
    """Raised at a fault point armed with `crash_in_process`: the process goes on, but the
    flow stops there as if the power went — no `except Exception` catches it, so nothing the
    flow would journal next is journaled. Long soak tests use it to crash hundreds of times in
    one process; what is on disk is what a real crash leaves."""


_armed: set[str] = set()


def crash_in_process(name: str | None) -> None:
    """Arm (or, with None, disarm) an in-process crash at fault point `name`, once."""
    if name is not None and name not in POINTS:
        raise UnknownFaultPoint(f"unknown fault point {name!r}", name=name, known=", ".join(POINTS))
    _armed.clear()
    if name is not None:
        _armed.add(name)


def fault_point(name: str) -> None:
    if name in _armed:
        _armed.discard(name)
        raise SimulatedCrash(name)
    if os.environ.get(ENV) == name:
        sys.stderr.write(f"KIOSK_FAULT: crashing at {name}\n")
        sys.stderr.flush()
        os._exit(99)
