"""Payment terminal: the nexo Sale-to-POI driver (registered as "nexo-http") and its simulator."""

from devices.terminal.driver import NexoTerminal, NoResponse

__all__ = ["NexoTerminal", "NoResponse"]
