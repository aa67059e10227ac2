"""Bill validation throughput: parse_bill pairs/s on one core over a fixed mix of valid and
invalid pairs, against a same-run baseline loop that only does int(bill) + int(payment)."""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kiosk.bills import InvalidBill, make_bill_id, make_payment_id, parse_bill

TARGET_PAIRS_PER_S = 200_000
N_PAIRS = 20_000
INVALID_SHARE = 0.3
ROUNDS = 7


def make_pairs(n: int, seed: int = 1404) -> list[tuple[str, str]]:
    """Valid pairs from the issuers' rules, ~30% with one digit changed (mostly caught)."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        bill_id = make_bill_id(str(rng.randint(1, 10 ** rng.randint(1, 8) - 1)),
                               f"{rng.randint(0, 999):03d}", rng.randint(1, 9))
        payment_id = make_payment_id(bill_id, rng.randint(1, 10 ** rng.randint(1, 7) - 1) * 1000,
                                     rng.randint(0, 9), rng.randint(1, 12))
        if rng.random() < INVALID_SHARE:
            i = rng.randrange(len(payment_id))
            payment_id = payment_id[:i] + str((int(payment_id[i]) + 1) % 10) + payment_id[i + 1:]
        pairs.append((bill_id, payment_id))
    return pairs


def validate_all(pairs: list[tuple[str, str]]) -> int:
    valid = 0
    for bill_id, payment_id in pairs:
        try:
            parse_bill(bill_id, payment_id)
            valid += 1
        except InvalidBill:
            pass  # an invalid pair is a result being measured, not a failure
    return valid


def baseline_all(pairs: list[tuple[str, str]]) -> int:
    total = 0
    for bill_id, payment_id in pairs:
        total += int(bill_id) + int(payment_id)
    return total


def best_rate(fn: Callable[[list[tuple[str, str]]], int], pairs: list[tuple[str, str]]) -> float:
    """Pairs/s of the fastest of ROUNDS runs: the machine is shared, the minimum time is the
    least disturbed one."""
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.perf_counter()
        fn(pairs)
        best = min(best, time.perf_counter() - start)
    return len(pairs) / best


def main() -> None:
    pairs = make_pairs(N_PAIRS)
    valid = validate_all(pairs)  # warm-up, and the mix actually measured
    interleaved = []
    # Alternate the two loops so a burst of load elsewhere hits both alike.
    for _ in range(3):
        interleaved.append((best_rate(validate_all, pairs), best_rate(baseline_all, pairs)))
    rate = max(r for r, _ in interleaved)
    base = max(b for _, b in interleaved)
    print(json.dumps({
        "bench": "bills",
        "pairs": len(pairs),
        "valid_pairs": valid,
        "invalid_pairs": len(pairs) - valid,
        "parse_bill_pairs_per_s": round(rate),
        "baseline_int_sum_pairs_per_s": round(base),
        "ratio_to_baseline": round(rate / base, 3),
        "target_pairs_per_s": TARGET_PAIRS_PER_S,
        "meets_target": rate >= TARGET_PAIRS_PER_S,
        "python": sys.version.split()[0],
    }))


if __name__ == "__main__":
    main()
