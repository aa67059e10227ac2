"""Benchmark: a transit card balance read (select + auth + read both purse copies) through the
real PN532 driver and the virtual PN532 paced at 115200 baud; baselines in the same run: the
same sequence unpaced, and the theoretical wire time of the bytes exchanged.

Prints one JSON object. Target: p50 <= 60 ms at 115200 baud.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time

from devices.pn532.driver import PN532Reader
from devices.pn532.virtual import VirtualPN532
from devices.transit_card import CardKeys, TransitCard
from devices.transit_card.demo import issue_virtual_card

MASTER = b"bench master key, 32 bytes long!"
UID = bytes.fromhex("04c0ffee")
BAUD = 115200
TARGET_P50_MS = 60.0
ITERATIONS = 150
WARMUP = 10


async def measure(baud: int | None) -> tuple[list[float], float]:
    """Latencies (ms) of read_balance, and wire bytes (both directions) per read."""
    with VirtualPN532(baud=baud) as virtual:
        virtual.place(issue_virtual_card(UID, MASTER, 250_000, "1000000001"))
        reader = PN532Reader("bench", port=virtual.port, baudrate=BAUD, timeout=1.0)
        await reader.open()
        card = TransitCard(reader, CardKeys(MASTER))
        for _ in range(WARMUP):
            await card.read_balance()
        before = virtual.bytes_in + virtual.bytes_out
        samples = []
        for _ in range(ITERATIONS):
            t0 = time.perf_counter()
            balance = await card.read_balance()
            samples.append((time.perf_counter() - t0) * 1000)
            assert balance.balance == 250_000
        per_read = (virtual.bytes_in + virtual.bytes_out - before) / ITERATIONS
        await reader.close()
    return samples, per_read


def p(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q) - 1]


def main() -> None:
    paced, wire_bytes = asyncio.run(measure(BAUD))
    unpaced, _ = asyncio.run(measure(None))
    paced_p50, unpaced_p50 = statistics.median(paced), statistics.median(unpaced)
    wire_ms = wire_bytes * 10 / BAUD * 1000  # 8N1: 10 bits a byte
    result = {
        "bench": "pn532_read_balance",
        "sequence": "InListPassiveTarget + 2x(auth A + READ value + READ record) + READ identity",
        "baud": BAUD,
        "iterations": ITERATIONS,
        "paced_p50_ms": round(paced_p50, 2),
        "paced_p95_ms": round(p(paced, 95), 2),
        "unpaced_p50_ms": round(unpaced_p50, 2),
        "unpaced_p95_ms": round(p(unpaced, 95), 2),
        "wire_bytes_per_read": round(wire_bytes, 1),
        "wire_time_ms": round(wire_ms, 2),
        "ratio_paced_to_unpaced": round(paced_p50 / unpaced_p50, 2),
        "ratio_paced_to_wire_time": round(paced_p50 / wire_ms, 2),
        "target_p50_ms": TARGET_P50_MS,
        "meets_target": paced_p50 <= TARGET_P50_MS,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
