"""terminal drivers and emulators."""
