"""Driver lookup by config `type`. Built-in drivers are named in devices.drivers.BUILTIN as
"module:Class" and imported on their first lookup, so a process pays only for the drivers its
configuration uses; a driver registered with `devices.base.register` by any other module (a
plug-in, a test double) is found as well. This module sits above both base and drivers."""

from __future__ import annotations

import importlib

from devices.base import _REGISTRY, Device
from devices.contracts import DeviceConfig
from devices.drivers import BUILTIN


def registered_types() -> list[str]:
    """Every type config may name: the built-in table and whatever registered itself. Imports
    no driver."""
    return sorted(set(BUILTIN) | set(_REGISTRY))


def _load_builtin(type_name: str, target: str) -> type[Device]:
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)  # the import system's own lock: once
    cls = getattr(module, class_name, None)
    if cls is None or _REGISTRY.get(type_name) is not cls:
        # the table names a class its module does not register under that type: a packaging
        # mistake, said plainly rather than handing out an unregistered class
        raise LookupError(f"driver table names {target!r} for type {type_name!r}, "
                          f"but that module registered {getattr(_REGISTRY.get(type_name), '__name__', None)!r}")
    return cls


def driver_for(type_name: str) -> type[Device]:
    """The driver class for a config `type` (its module imported on first use); KeyError naming
    the known types otherwise."""
    cls = _REGISTRY.get(type_name)
    if cls is not None:
        return cls
    target = BUILTIN.get(type_name)
    if target is None:
        raise KeyError(f"unknown device type {type_name!r}; known: {registered_types()}")
    return _load_builtin(type_name, target)


def create(config: DeviceConfig) -> Device:
    """A driver instance for one config entry (not opened yet)."""
    return driver_for(config.type)(config.name, **config.options)


__all__ = ["create", "driver_for", "registered_types"]
