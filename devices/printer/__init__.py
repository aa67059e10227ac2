"""printer drivers and emulators."""
