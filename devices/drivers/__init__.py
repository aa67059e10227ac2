"""Importing this module imports every built-in driver, which registers it (devices.base.register);
devices.registry imports this to look drivers up by config `type`."""

import devices.dispenser  # noqa: F401
import devices.pn532  # noqa: F401
import devices.printer  # noqa: F401
import devices.scanner  # noqa: F401
import devices.terminal  # noqa: F401
