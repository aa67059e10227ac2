"""Kiosk settings: identity, back-office endpoint, devices and timeouts, loaded from
<data_dir>/kiosk.json. A data dir without one is not configured: nothing that moves money
starts there (the demo harness builds its own settings for its embedded servers)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from devices.contracts import DeviceConfig
from devices.manager import load_device_configs
from kiosk.errors import KioskError

CONFIG_FILENAME = "kiosk.json"


class NotConfigured(KioskError):
    """The data dir has no kiosk.json: no terminal, no back-office, so no money may move."""

    key = "settings.not_configured"
    fa = ("این کیوسک پیکربندی نشده است ({path} وجود ندارد). هیچ پولی جابه‌جا نشد؛ "
          "تکنسین باید پیکربندی را نصب کند.")
    en = ("This kiosk is not configured ({path} does not exist). No money was moved; a "
          "technician must install its configuration (for the simulators: kiosk demo).")


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


def load_settings(data_dir: Path) -> KioskSettings:
    """The settings of the kiosk whose data dir this is; NotConfigured when it has none."""
    path = Path(data_dir) / CONFIG_FILENAME
    if not path.exists():
        raise NotConfigured(f"no {path}", path=str(path))
    return KioskSettings.load(path)
