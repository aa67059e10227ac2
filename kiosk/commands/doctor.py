"""`kiosk doctor [--json] [--level internal|external]`: open every configured device, run its
health check, and print state, identity, consumables and last error per device.

Uses the kiosk's configuration (<data_dir>/kiosk.json); a data dir without one is refused.
The demo's simulated devices are checked by `kiosk demo --script doctor`. Each row says
whether the device is a simulator (`simulated`), so a technician never mistakes one for
the hardware."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from devices.base import DeviceState, HealthLevel
from devices.contracts import DeviceConfig
from kiosk.paths import data_dir
from kiosk.settings import KioskSettings, NotConfigured, load_settings


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("doctor", parents=[common], help="check every configured device", description=__doc__)
    p.add_argument("--json", action="store_true")
    p.add_argument("--level", choices=[HealthLevel.INTERNAL.value, HealthLevel.EXTERNAL.value],
                   default=HealthLevel.EXTERNAL.value, help="external (default) talks to each device")
    p.set_defaults(func=handle)


#: a driver type with this suffix is a simulator by construction (e.g. dispenser-sim)
SIM_TYPE_SUFFIX = "-sim"


def is_simulated(config: DeviceConfig, settings: KioskSettings) -> bool:
    """A simulator: by its driver type, by `"simulator": true` in its config entry (a real
    driver pointed at an emulator, e.g. `kiosk sim terminal`), or because the settings are
    the demo's embedded environment, where every device is one."""
    return (config.type.endswith(SIM_TYPE_SUFFIX) or config.options.get("simulator") is True
            or settings.extra.get("embedded") is True)


async def diagnose(settings: KioskSettings, level: HealthLevel) -> list[dict[str, Any]]:
    """Open every configured device, run its health check at `level`, one row per device."""
    from devices.manager import DeviceManager

    manager = DeviceManager(list(settings.devices))
    await manager.start()
    try:
        reports = {r.device: r for r in await manager.check_health(level)}
        configs = {c.name: c for c in settings.devices}
        rows = []
        for name, status in manager.status_map().items():
            row = status.to_dict()
            config = configs.get(name)
            row["simulated"] = bool(config and is_simulated(config, settings))
            report = reports.get(name)
            row["health"] = {"level": str(level), "ok": bool(report and report.ok),
                             "detail": report.detail if report else "not checked"}
            rows.append(row)
        return rows
    finally:
        await manager.stop()


def handle(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(data_dir(args.data_dir))
    except NotConfigured as exc:
        print(f"kiosk doctor: {exc.message('en')}", file=sys.stderr)
        return 1
    rows = asyncio.run(diagnose(settings, HealthLevel(args.level)))
    return report(rows, as_json=args.json)


def report(rows: list[dict[str, Any]], *, as_json: bool) -> int:
    """Print the rows (a table or JSON); 0 when every device is online and healthy."""
    if as_json:
        print(json.dumps(rows, ensure_ascii=False))
    else:
        for r in rows:
            ident = r["identity"]
            sim = "simulator" if r.get("simulated") else "-"
            print(f"{r['name']:<11} {r['class']:<15} {r['state']:<14} {sim:<10} {ident.get('vendor', '')} "
                  f"{ident.get('model', '')} {ident.get('serial', '')} fw {ident.get('firmware', '') or '-'}")
            if r["consumables"]:
                print(f"{'':<11} consumables: {r['consumables']}")
            if not r["health"]["ok"]:
                print(f"{'':<11} health: {r['health']['detail']}")
            if r["last_error"]:
                print(f"{'':<11} last error: {r['last_error']['message']}")
    healthy = all(r["state"] == DeviceState.ONLINE and r["health"]["ok"] for r in rows)
    return 0 if rows and healthy else 1
