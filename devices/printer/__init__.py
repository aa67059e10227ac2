"""Receipt printer: the ESC/POS driver (encodes rendered raster jobs and sends them), a decoder
and 9100/pty emulators. Layout and fonts belong to the kiosk (kiosk/receipts)."""

from devices.printer import escpos_env  # noqa: F401  (first: python-escpos must import through it)
from devices.printer import escpos_driver  # noqa: F401  (registers the "escpos" driver)
