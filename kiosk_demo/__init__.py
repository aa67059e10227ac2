"""The demo harness: wires the reference back-office and the device simulators on loopback so
`make run` and `kiosk demo` work on one machine with nothing else. It may import everything
(kiosk, devices, backoffice); nothing in kiosk/, devices/ or backoffice/ imports it. The
`kiosk demo` sub-command reaches the CLI through the `city_kiosk.commands` entry point."""
