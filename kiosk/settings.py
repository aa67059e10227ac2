"""Kiosk settings: identity, back-office endpoint, devices and timeouts, loaded from
<data_dir>/kiosk.json. A data dir without one is not configured: nothing that moves money
starts there (the demo harness builds its own settings for its embedded servers).

kiosk.json is checked against a schema made from the KioskSettings fields themselves (so a
new field is accepted the day it is added): an unknown or misspelt key, a value of the wrong
type, or a device entry without a name and a type is refused, naming the bad key."""

from __future__ import annotations

import difflib
import json
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from devices.contracts import DeviceConfig
from devices.manager import load_device_configs
from kiosk.errors import KioskError
from kiosk.service_guard import DEFAULT_MIN_FREE_BYTES

CONFIG_FILENAME = "kiosk.json"


class NotConfigured(KioskError):
    """The data dir has no kiosk.json: no terminal, no back-office, so no money may move."""

    key = "settings.not_configured"
    fa = ("این کیوسک پیکربندی نشده است ({path} وجود ندارد). هیچ پولی جابه‌جا نشد؛ "
          "تکنسین باید پیکربندی را نصب کند.")
    en = ("This kiosk is not configured ({path} does not exist). No money was moved; a "
          "technician must install its configuration (for the simulators: kiosk demo).")


class InvalidSettings(NotConfigured):
    """kiosk.json exists but is not a valid configuration: refused as a missing one is."""

    key = "settings.invalid"
    fa = ("پیکربندی کیوسک ({path}) نامعتبر است: {problem}. هیچ پولی جابه‌جا نشد؛ "
          "تکنسین باید آن را اصلاح کند.")
    en = ("The kiosk's configuration {path} is not valid: {problem}. No money was moved; a "
          "technician must correct it.")


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
    #: below this much free space on the data dir's disk a new transaction is refused, so
    #: the journal always has room to finish the ones already under way
    min_free_bytes: int = DEFAULT_MIN_FREE_BYTES  # 50 MiB
    #: how often a running kiosk resolves its own open transactions (not only at start)
    background_recovery_interval_s: float = 30.0
    # transit card top-up: the amounts offered, the limits of one top-up, the most a card may
    # hold, how long a citizen has to put a card back that left mid-write, and the file with
    # the master key the per-card keys are diversified from (hex; empty: no transit services)
    topup_presets_rials: tuple[int, ...] = (100_000, 200_000, 500_000, 1_000_000)
    topup_min_rials: int = 20_000
    topup_max_rials: int = 5_000_000
    card_max_balance_rials: int = 10_000_000
    card_wait_s: float = 60.0
    card_return_wait_s: float = 60.0
    transit_master_key_file: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Any, *, source: str = CONFIG_FILENAME) -> "KioskSettings":
        """Settings from a kiosk.json object; InvalidSettings naming the first bad key."""
        problem = schema_problem(raw, cls)
        if problem:
            raise InvalidSettings(f"{source}: {problem}", path=source, problem=problem)
        try:
            devices = tuple(load_device_configs(raw.get("devices", [])))
        except Exception as exc:  # devices' own rules (e.g. a name used twice)
            raise InvalidSettings(f"{source}: {exc}", path=source, problem=str(exc)) from exc
        hints = typing.get_type_hints(cls)
        values = {k: tuple(v) if (typing.get_origin(hints[k]) is tuple and isinstance(v, list)) else v
                  for k, v in raw.items() if k != "devices"}
        return cls(devices=devices, **values)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["devices"] = [{"name": d.name, "type": d.type, **d.options} for d in self.devices]
        return out

    @classmethod
    def load(cls, path: Path) -> "KioskSettings":
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            problem = f"not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
            raise InvalidSettings(f"{path}: {problem}", path=str(path), problem=problem) from exc
        except (OSError, UnicodeDecodeError) as exc:
            problem = f"cannot be read ({exc})"
            raise InvalidSettings(f"{path}: {problem}", path=str(path), problem=problem) from exc
        return cls.from_dict(raw, source=str(path))

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=2), encoding="utf-8")
        tmp.replace(path)


def allowed_keys(cls: type[KioskSettings] = KioskSettings) -> tuple[str, ...]:
    """The top-level keys kiosk.json may hold: the KioskSettings fields, nothing else."""
    return tuple(f.name for f in fields(cls))


def _type_problem(key: str, value: Any, expected: Any) -> str | None:
    origin = typing.get_origin(expected) or expected
    if origin is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        name = "a number"
    elif origin is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        name = "a whole number"
    elif origin is str:
        ok, name = isinstance(value, str), "a string"
    elif origin is dict:
        ok, name = isinstance(value, dict), "an object"
    elif origin is tuple or origin is list:
        ok, name = isinstance(value, list), "a list"
        args = typing.get_args(expected)
        if ok and args and args[0] is int:  # tuple[int, ...]: whole numbers only
            ok = all(isinstance(x, int) and not isinstance(x, bool) for x in value)
            name = "a list of whole numbers"
    elif origin is bool:
        ok, name = isinstance(value, bool), "true or false"
    else:  # a field type this checker does not know yet: let the dataclass have it
        return None
    if ok:
        return None
    return f"{key!r} must be {name}, not {json.dumps(value, ensure_ascii=False)[:40]}"


def _device_problem(i: int, entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return f"devices[{i}] must be an object with a 'name' and a 'type'"
    for key in ("name", "type"):
        if not isinstance(entry.get(key), str) or not entry.get(key):
            return f"devices[{i}] needs a non-empty string {key!r}"
    from devices.registry import registered_types

    known = registered_types()
    if entry["type"] not in known:
        hint = difflib.get_close_matches(entry["type"], known, n=1)
        return (f"devices[{i}] ({entry['name']!r}) has unknown type {entry['type']!r}"
                + (f" (did you mean {hint[0]!r}?)" if hint else f"; known: {', '.join(known)}"))
    return None


def schema_problem(raw: Any, cls: type[KioskSettings] | None = None) -> str | None:
    """What is wrong with a kiosk.json object, in one phrase naming the key; None when valid.
    `cls`: the settings class whose fields make the schema (KioskSettings or a subclass)."""
    cls = cls or KioskSettings
    if not isinstance(raw, dict):
        return "the file must hold one JSON object"
    allowed = allowed_keys(cls)
    for key in raw:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            return (f"unknown key {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                    + f"; allowed: {', '.join(allowed)}")
    hints = typing.get_type_hints(cls)
    for key, value in raw.items():
        problem = _type_problem(key, value, hints[key])
        if problem:
            return problem
        if key.endswith("_s") and value <= 0:
            return f"{key!r} must be more than 0 seconds"
        if key == "min_free_bytes" and value < 0:
            return f"{key!r} must be 0 or more"
    for i, entry in enumerate(raw.get("devices", [])):
        problem = _device_problem(i, entry)
        if problem:
            return problem
    return None


def load_settings(data_dir: Path) -> KioskSettings:
    """The settings of the kiosk whose data dir this is; NotConfigured when it has none,
    InvalidSettings when its kiosk.json is malformed or misspelt."""
    path = Path(data_dir) / CONFIG_FILENAME
    if not path.exists():
        raise NotConfigured(f"no {path}", path=str(path))
    return KioskSettings.load(path)
