"""Receipt printer: Persian layout to raster, the ESC/POS driver, a decoder and a 9100 emulator."""

from devices.printer import escpos_driver  # noqa: F401  (registers the "escpos" driver)
