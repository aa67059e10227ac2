"""Crash-at-a-named-point hook for fault tests.

When $KIOSK_FAULT names a point, the process dies with os._exit(99) exactly there: no
finally blocks, no flushing, as a power cut would. Points (see docs/faults.md):

  after-created    journal has CREATED; the terminal has not been asked yet
  after-paying     journal has PAYING; the terminal request is about to be sent
  after-paid       terminal approved and PAID is journaled; settlement not started
  after-post-sent  the settlement post reached the back-office; its answer is not journaled
  before-receipt   the payment is POSTED; the receipt is not printed
"""

from __future__ import annotations

import os
import sys

POINTS = ("after-created", "after-paying", "after-paid", "after-post-sent", "before-receipt")


def fault_point(name: str) -> None:
    if os.environ.get("KIOSK_FAULT") == name:
        sys.stderr.write(f"KIOSK_FAULT: crashing at {name}\n")
        sys.stderr.flush()
        os._exit(99)
