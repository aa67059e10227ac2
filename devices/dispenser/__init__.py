"""dispenser drivers and emulators."""
