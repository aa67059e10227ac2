"""pn532 drivers and emulators."""
