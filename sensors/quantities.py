"""Quantities, their canonical units and unit conversion.

Every value stored by cityops is in the canonical unit of its quantity; conversion happens once,
at the boundary (the payload decoder). Physical limits are what no working sensor can report:
a value outside them is a sensor fault, not a process alarm.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Utility(StrEnum):
    WATER = "water"
    POWER = "power"
    GAS = "gas"


@dataclass(frozen=True, slots=True)
class Quantity:
    name: str
    unit: str  # canonical unit
    physical_min: float
    physical_max: float
    # accepted unit spellings -> (scale, offset) so that canonical = value * scale + offset
    conversions: tuple[tuple[str, float, float], ...] = ()

    def to_canonical(self, value: float, unit: str | None) -> float:
        """Convert ``value`` given in ``unit`` to the canonical unit; ``None`` means canonical."""
        if unit is None or unit == self.unit:
            return value
        for spelling, scale, offset in self.conversions:
            if spelling == unit:
                return value * scale + offset
        raise UnknownUnitError(self.name, unit)


class UnknownUnitError(ValueError):
    def __init__(self, quantity: str, unit: str) -> None:
        super().__init__(f"unit {unit!r} is not accepted for {quantity}")
        self.quantity = quantity
        self.unit = unit


# canonical units: pressure [kPa], flow [L/s], level [m], voltage [V], current [A],
# frequency [Hz], active power [kW], loading [%], gas flow [m3/h], gas concentration [%LEL],
# temperature [degC]
QUANTITIES: dict[str, Quantity] = {
    q.name: q
    for q in (
        Quantity(
            "pressure",
            "kPa",
            -100.0,
            10_000.0,
            (
                ("Pa", 0.001, 0.0),
                ("MPa", 1000.0, 0.0),
                ("bar", 100.0, 0.0),
                ("m", 9.80665, 0.0),
                ("mH2O", 9.80665, 0.0),
                ("psi", 6.894757, 0.0),
            ),
        ),
        Quantity(
            "flow",
            "L/s",
            -10_000.0,
            10_000.0,
            (("m3/s", 1000.0, 0.0), ("m3/h", 1 / 3.6, 0.0), ("L/min", 1 / 60, 0.0)),
        ),
        Quantity("level", "m", -1.0, 200.0, (("cm", 0.01, 0.0), ("mm", 0.001, 0.0))),
        Quantity("voltage", "V", 0.0, 1_200_000.0, (("kV", 1000.0, 0.0), ("mV", 0.001, 0.0))),
        Quantity("current", "A", -100_000.0, 100_000.0, (("kA", 1000.0, 0.0), ("mA", 0.001, 0.0))),
        Quantity("frequency", "Hz", 0.0, 100.0),
        Quantity(
            "active_power",
            "kW",
            -1_000_000.0,
            1_000_000.0,
            (("W", 0.001, 0.0), ("MW", 1000.0, 0.0)),
        ),
        Quantity("loading", "%", 0.0, 1000.0),
        Quantity("gas_flow", "m3/h", -100_000.0, 100_000.0, (("L/s", 3.6, 0.0),)),
        Quantity("gas_concentration", "%LEL", 0.0, 100.0),
        Quantity("temperature", "degC", -60.0, 150.0, (("K", 1.0, -273.15), ("Cel", 1.0, 0.0))),
    )
}


def quantity(name: str) -> Quantity:
    return QUANTITIES[name]


# each quantity's name as people read it (the data dictionary, the pages' labels)
QUANTITY_NAMES: dict[str, dict[str, str]] = {
    "zh": {
        "pressure": "压力",
        "flow": "流量",
        "level": "液位",
        "voltage": "电压",
        "current": "电流",
        "frequency": "频率",
        "active_power": "有功功率",
        "loading": "负载率",
        "gas_flow": "燃气流量",
        "gas_concentration": "可燃气体浓度",
        "temperature": "温度",
    },
    "en": {
        "pressure": "Pressure",
        "flow": "Flow",
        "level": "Level",
        "voltage": "Voltage",
        "current": "Current",
        "frequency": "Frequency",
        "active_power": "Active power",
        "loading": "Loading",
        "gas_flow": "Gas flow",
        "gas_concentration": "Gas concentration",
        "temperature": "Temperature",
    },
}
