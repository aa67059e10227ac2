"""Driver registration is lazy (issue 10, Performance): config `type` -> "module:Class" in
devices.drivers.BUILTIN, the module imported on the type's first lookup, so `kiosk ui` pays only
for the drivers its kiosk.json names (no OpenCV for a serial scanner, nothing before a lookup)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from devices.base import Device, register
from devices.drivers import BUILTIN
from devices.registry import driver_for, registered_types

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("cv2", "numpy", "zxingcpp", "pyzbar", "cryptography", "escpos", "requests", "serial")
DRIVER_MODULES = sorted(target.partition(":")[0] for target in BUILTIN.values())


def _fresh(code: str) -> dict:
    """Run `code` in a fresh interpreter (nothing imported by this test process) and return the
    JSON it prints last."""
    prelude = "import json, sys\n"
    out = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_loading_settings_and_listing_the_types_imports_no_driver(tmp_path: Path) -> None:
    conf = {"kiosk_id": "k-1", "devices": [{"name": "scanner", "type": "serial-scanner",
                                            "options": {"port": "/dev/null"}}]}
    (tmp_path / "kiosk.json").write_text(json.dumps(conf), encoding="utf-8")
    got = _fresh(f"""
        from pathlib import Path
        import devices.manager
        from devices.registry import registered_types
        from kiosk.settings import load_settings
        settings = load_settings(Path({str(tmp_path)!r}))
        print(json.dumps({{"types": registered_types(),
                           "devices": [d.type for d in settings.devices],
                           "loaded": sorted(m for m in sys.modules
                                            if m in {DRIVER_MODULES!r} or m.split(".")[0] in {HEAVY!r})}}))
    """)
    assert got["devices"] == ["serial-scanner"]
    assert got["types"] == sorted(BUILTIN)  # every built-in type known without importing one
    assert got["loaded"] == []


def test_looking_a_serial_scanner_up_brings_neither_opencv_nor_the_other_drivers() -> None:
    got = _fresh(f"""
        from devices.registry import driver_for
        cls = driver_for("serial-scanner")
        print(json.dumps({{"cls": cls.__module__ + ":" + cls.__name__, "name": cls.driver_name,
                           "loaded": sorted({{m if m in {DRIVER_MODULES!r} else m.split(".")[0]
                                             for m in sys.modules
                                             if m in {DRIVER_MODULES!r} or m.split(".")[0] in {HEAVY!r}}})}}))
    """)
    assert got["cls"] == BUILTIN["serial-scanner"] and got["name"] == "serial-scanner"
    # pyserial is the serial scanner's own; the camera's OpenCV, numpy and zxing stay out
    assert got["loaded"] == ["devices.scanner.serial_scanner", "serial"]


def test_the_camera_driver_still_comes_with_opencv_when_it_is_looked_up() -> None:
    got = _fresh("""
        from devices.registry import driver_for
        cls = driver_for("camera")
        print(json.dumps({"name": cls.driver_name, "cv2": "cv2" in sys.modules}))
    """)
    assert got == {"name": "camera", "cv2": True}


@pytest.mark.parametrize("type_name", sorted(BUILTIN))
def test_every_builtin_type_resolves_to_the_class_its_module_registers(type_name: str) -> None:
    cls = driver_for(type_name)
    module, _, name = BUILTIN[type_name].partition(":")
    assert (cls.__module__, cls.__name__) == (module, name)
    assert cls.driver_name == type_name and issubclass(cls, Device)
    assert driver_for(type_name) is cls  # the second lookup: the same class, no second import


def test_an_unknown_type_is_a_key_error_naming_every_known_type() -> None:
    with pytest.raises(KeyError) as info:
        driver_for("escpso")
    message = str(info.value)
    assert "unknown device type 'escpso'" in message
    for type_name in BUILTIN:
        assert repr(type_name) in message


def test_a_driver_registered_by_another_module_is_found_and_listed() -> None:
    from devices.base import _REGISTRY
    from devices.dispenser.simulator import SimulatedDispenser

    @register("test-lazy-plugin")
    class PluginDispenser(SimulatedDispenser):
        pass

    try:
        assert driver_for("test-lazy-plugin") is PluginDispenser
        assert "test-lazy-plugin" in registered_types()
        assert set(BUILTIN) <= set(registered_types())
    finally:
        del _REGISTRY["test-lazy-plugin"]


def test_the_scanner_package_names_still_import_from_the_package() -> None:
    got = _fresh("""
        import devices.scanner as s
        before = "cv2" in sys.modules
        from devices.scanner import SerialScanner, SerialScannerEmulator
        mid = "cv2" in sys.modules
        from devices.scanner import CameraScanner, FrameDecoder
        print(json.dumps({"before": before, "mid": mid, "after": "cv2" in sys.modules,
                          "names": sorted(n for n in s.__all__ if getattr(s, n, None) is not None)}))
    """)
    assert got["before"] is False and got["mid"] is False and got["after"] is True
    assert got["names"] == sorted(["DEFAULT_FORMATS", "CameraScanner", "FrameDecoder", "SerialScanner",
                                   "SerialScannerEmulator", "load_image"])


def test_the_printer_terminal_and_pn532_drivers_import_without_their_heavy_libraries() -> None:
    """`kiosk ui` imports these drivers (and kiosk.receipts, which encodes with the printer's)
    on its way to the attract screen: zxing-cpp comes at the first QR (numpy never), cryptography's
    X.509 at the first certificate read or made, python-escpos's printers at the first job or
    transport, the virtual PN532 at the first use of its name."""
    got = _fresh("""
        import devices.printer.escpos_driver, devices.printer.qr, devices.printer.profile
        import devices.terminal.driver, devices.terminal.tls, devices.pn532.driver, devices.pn532
        import kiosk.receipts.document, kiosk.receipts.layout
        from devices.registry import driver_for
        for t in ("escpos", "nexo-http", "pn532-uart"):
            driver_for(t)
        heavy = ("numpy", "zxingcpp", "cv2", "cryptography.x509", "escpos.printer", "escpos.escpos",
                 "devices.pn532.virtual")
        before = sorted(m for m in heavy if m in sys.modules)
        from devices.pn532 import VirtualPN532
        from devices.printer.qr import qr_matrix
        from devices.terminal.tls import fingerprint_of, generate_self_signed
        import tempfile
        from pathlib import Path
        with tempfile.TemporaryDirectory() as tmp:
            cert = generate_self_signed(Path(tmp), common_name="t")
            pinned = fingerprint_of((Path(tmp) / "cert.pem").read_bytes()) == cert.fingerprint
        rows = len(qr_matrix("https://example.org/r/1"))
        print(json.dumps({"before": before, "after": sorted(m for m in heavy if m in sys.modules),
                          "virtual": VirtualPN532.__module__, "pinned": pinned, "rows": rows}))
    """)
    assert got["before"] == []
    # the same names still work, each bringing its library along when used; a QR's modules go
    # from zxing-cpp to Pillow without numpy (~14 MB of the kiosk's peak for one receipt)
    assert got["after"] == ["cryptography.x509", "devices.pn532.virtual", "zxingcpp"]
    assert got["virtual"] == "devices.pn532.virtual" and got["pinned"] is True
    assert got["rows"] >= 21 + 8  # a version-1 QR and its quiet zone at least


def test_encoding_a_job_brings_python_escpos_printers_in_through_escpos_env(tmp_path: Path) -> None:
    got = _fresh("""
        from devices.contracts import PrintJob
        from devices.printer.escpos_driver import job_to_escpos_bytes
        before = "escpos.printer" in sys.modules
        data = job_to_escpos_bytes(PrintJob(parts=[("qr", "https://example.org/r/2")]))
        print(json.dumps({"before": before, "after": "escpos.printer" in sys.modules,
                          "init": data.startswith(b"\\x1b@"), "qr": b"\\x1d(k" in data,
                          "numpy": "numpy" in sys.modules}))
    """)
    assert got == {"before": False, "after": True, "init": True, "qr": True, "numpy": False}
