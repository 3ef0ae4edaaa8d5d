"""Fittable channel parameters: names, bounds, log scaling and the unit-cube mapping.

A parameter is addressed as ``<location>.<range variable>``, for example ``soma.gnabar_hh`` or
``dend.g_pas``, where the location is a section name or a section-list name of the model.
Optimisers work in the unit cube ``[0, 1]^n``; :class:`ParameterSpace` maps it to physical values,
linearly or logarithmically per parameter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.errors import ConfigError

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ParameterSpec:
    """One fittable parameter.

    Attributes:
        location: Section or section-list name (``soma``, ``dend``).
        variable: Range variable including its mechanism suffix (``gnabar_hh``, ``g_pas``).
        low: Lower bound in the variable's NEURON unit.
        high: Upper bound in the variable's NEURON unit.
        log: Search in log space (recommended for conductances spanning decades).
    """

    location: str
    variable: str
    low: float
    high: float
    log: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low >= self.high:
            raise ConfigError(
                f"Parameter {self.name}: expected finite bounds with low < high, "
                f"actual low={self.low}, high={self.high}"
            )
        if self.log and self.low <= 0:
            raise ConfigError(
                f"Parameter {self.name}: log scaling needs low > 0, actual low={self.low}; "
                "set log: false or give a positive lower bound"
            )

    @property
    def name(self) -> str:
        """The address ``location.variable``."""
        return f"{self.location}.{self.variable}"

    def from_unit(self, u: float) -> float:
        """Map ``u`` in [0, 1] to a physical value."""
        u = min(max(u, 0.0), 1.0)
        if self.log:
            return float(
                math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
            )
        return float(self.low + u * (self.high - self.low))

    def to_unit(self, value: float) -> float:
        """Map a physical value to [0, 1] (values outside the bounds map outside [0, 1])."""
        if self.log:
            return (math.log(value) - math.log(self.low)) / (
                math.log(self.high) - math.log(self.low)
            )
        return (value - self.low) / (self.high - self.low)


def parse_parameter_name(name: str) -> tuple[str, str]:
    """Split ``location.variable`` into its two parts.

    Raises:
        ConfigError: If the name is not of that form.
    """
    location, dot, variable = name.partition(".")
    if not dot or not location or not variable or "." in variable:
        raise ConfigError(
            f"Expected a parameter name of the form <section or list>.<range variable> "
            f"(e.g. soma.gnabar_hh), actual {name!r}"
        )
    return location, variable


class ParameterSpace:
    """An ordered set of parameters with vectorised unit-cube mapping.

    Args:
        specs: The parameters, in the order optimisers see them.
    """

    def __init__(self, specs: Sequence[ParameterSpec]) -> None:
        if not specs:
            raise ConfigError("Expected at least one parameter to fit, actual none")
        names = [s.name for s in specs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"Expected unique parameter names, actual duplicates {duplicates}")
        self.specs: tuple[ParameterSpec, ...] = tuple(specs)

    @property
    def names(self) -> list[str]:
        """Parameter names in order."""
        return [s.name for s in self.specs]

    @property
    def dim(self) -> int:
        """Number of parameters."""
        return len(self.specs)

    def from_unit(self, u: Sequence[float] | FloatArray) -> dict[str, float]:
        """Map a unit-cube vector to ``{name: physical value}``."""
        if len(u) != self.dim:
            raise ConfigError(f"Expected a vector of {self.dim} values, actual {len(u)}")
        return {s.name: s.from_unit(float(x)) for s, x in zip(self.specs, u, strict=True)}

    def to_unit(self, values: Mapping[str, float]) -> FloatArray:
        """Map ``{name: physical value}`` to a unit-cube vector."""
        missing = [n for n in self.names if n not in values]
        if missing:
            raise ConfigError(f"Expected values for every parameter, missing {missing}")
        return np.array([s.to_unit(values[s.name]) for s in self.specs], dtype=np.float64)

    def to_dict(self) -> list[dict[str, object]]:
        """Serialisable description (for checkpoints and reports)."""
        return [{"name": s.name, "low": s.low, "high": s.high, "log": s.log} for s in self.specs]
