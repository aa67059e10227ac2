"""Device abstraction layer: contracts, manager, drivers and emulators. No Kivy, no kiosk/."""
