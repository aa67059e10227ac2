"""QR/barcode scanners: camera (OpenCV + zxing-cpp/pyzbar) and serial drivers, registered as
"camera" and "serial-scanner", plus the serial scanner emulator on a pty.

The names below are imported on first use (PEP 562), not with the package: the serial scanner
and its emulator must not bring OpenCV and numpy in (devices.registry imports only the driver a
configuration names)."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "CameraScanner": "devices.scanner.camera",
    "DEFAULT_FORMATS": "devices.scanner.decode",
    "FrameDecoder": "devices.scanner.decode",
    "load_image": "devices.scanner.decode",
    "SerialScannerEmulator": "devices.scanner.emulator",
    "SerialScanner": "devices.scanner.serial_scanner",
}

__all__ = ["DEFAULT_FORMATS", "CameraScanner", "FrameDecoder", "SerialScanner",
           "SerialScannerEmulator", "load_image"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
