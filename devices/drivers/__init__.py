"""The built-in drivers by config `type`: where each one lives, as "module:Class", imported only
when a device of that type is looked up (devices.registry.driver_for).

Nothing here is imported eagerly: a kiosk with a serial scanner and no camera never loads OpenCV,
and `kiosk ui` does not pay for numpy, zxing-cpp or cryptography before its first frame unless a
configured device needs them. A driver module still registers its class with
`devices.base.register` when imported; the registry checks that the class it finds here is the one
registered under that type, so this table and the decorators cannot drift apart unnoticed.
"""

from __future__ import annotations

#: config `type` -> "package.module:ClassName" of its built-in driver
BUILTIN: dict[str, str] = {
    "camera": "devices.scanner.camera:CameraScanner",
    "dispenser-sim": "devices.dispenser.simulator:SimulatedDispenser",
    "escpos": "devices.printer.escpos_driver:EscposPrinter",
    "nexo-http": "devices.terminal.driver:NexoTerminal",
    "pn532-uart": "devices.pn532.driver:PN532Reader",
    "serial-scanner": "devices.scanner.serial_scanner:SerialScanner",
}

__all__ = ["BUILTIN"]
