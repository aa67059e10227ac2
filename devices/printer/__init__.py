"""Receipt printer: the ESC/POS driver (encodes rendered raster jobs and sends them), a decoder
and 9100/pty emulators. Layout and fonts belong to the kiosk (kiosk/receipts).

Nothing is imported here: the "escpos" driver is registered lazily (devices.drivers.BUILTIN), and
a module that imports python-escpos imports devices.printer.escpos_env first itself."""
