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

A name that is not one of these is refused when a money-moving process starts
(`check_fault_env`), so a misspelt fault never silently runs a test without its crash.
"""

from __future__ import annotations

import os
import sys

from kiosk.errors import KioskError

POINTS = ("after-created", "after-paying", "after-approved", "after-paid", "after-post-sent",
          "before-receipt", "before-card-write", "after-card-write")
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


def fault_point(name: str) -> None:
    if os.environ.get(ENV) == name:
        sys.stderr.write(f"KIOSK_FAULT: crashing at {name}\n")
        sys.stderr.flush()
        os._exit(99)
