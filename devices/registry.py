"""Driver lookup by config `type`: importing this module imports every built-in driver (they
register themselves with `devices.base.register`), so it sits above both base and drivers."""

from __future__ import annotations

from devices import drivers  # noqa: F401  (importing registers every built-in driver)
from devices.base import _REGISTRY, Device
from devices.contracts import DeviceConfig


def driver_for(type_name: str) -> type[Device]:
    """The driver class for a config `type`; KeyError naming the known types otherwise."""
    try:
        return _REGISTRY[type_name]
    except KeyError:
        raise KeyError(f"unknown device type {type_name!r}; known: {sorted(_REGISTRY)}") from None


def registered_types() -> list[str]:
    return sorted(_REGISTRY)


def create(config: DeviceConfig) -> Device:
    """A driver instance for one config entry (not opened yet)."""
    return driver_for(config.type)(config.name, **config.options)


__all__ = ["create", "driver_for", "registered_types"]
