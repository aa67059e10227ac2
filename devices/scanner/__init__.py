"""QR/barcode scanners: camera (OpenCV + zxing-cpp/pyzbar) and serial drivers, registered as
"camera" and "serial-scanner", plus the serial scanner emulator on a pty."""

from devices.scanner import camera, serial_scanner  # noqa: F401  (runs @register)
from devices.scanner.camera import CameraScanner
from devices.scanner.decode import DEFAULT_FORMATS, FrameDecoder, load_image
from devices.scanner.emulator import SerialScannerEmulator
from devices.scanner.serial_scanner import SerialScanner

__all__ = ["DEFAULT_FORMATS", "CameraScanner", "FrameDecoder", "SerialScanner",
           "SerialScannerEmulator", "load_image"]
