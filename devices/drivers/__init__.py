"""Importing this module registers every built-in driver with the registry in devices.base."""

import devices.dispenser  # noqa: F401
import devices.pn532  # noqa: F401
import devices.printer  # noqa: F401
import devices.scanner  # noqa: F401
import devices.terminal  # noqa: F401
