"""scanner drivers and emulators."""
