"""Kiosk settings: identity, back-office endpoint, devices and timeouts. Loaded from
<data_dir>/kiosk.json when present; the demo writes its own for the embedded servers."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from devices.contracts import DeviceConfig
from devices.manager import load_device_configs


@dataclass(frozen=True)
class KioskSettings:
    kiosk_id: str = "kiosk-dev"
    backoffice_url: str = "http://127.0.0.1:8700"
    backoffice_token: str = ""
    devices: tuple[DeviceConfig, ...] = ()
    lang: str = "fa"
    scan_timeout_s: float = 60.0
    pay_timeout_s: float = 90.0
    status_timeout_s: float = 15.0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "KioskSettings":
        devices = tuple(load_device_configs(raw.get("devices", [])))
        known = {f for f in cls.__dataclass_fields__} - {"devices"}
        return cls(devices=devices, **{k: v for k, v in raw.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["devices"] = [{"name": d.name, "type": d.type, **d.options} for d in self.devices]
        return out

    @classmethod
    def load(cls, path: Path) -> "KioskSettings":
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=2), encoding="utf-8")
        tmp.replace(path)
