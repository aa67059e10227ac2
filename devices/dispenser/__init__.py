"""Card dispenser: the contract simulator (registered as "dispenser-sim"); a serial driver comes later."""

from devices.dispenser.simulator import SimulatedDispenser

__all__ = ["SimulatedDispenser"]
