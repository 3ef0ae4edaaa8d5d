"""What an implant senses of the network: LFP proxy, artefact, sampling, units, features.

``docs/simulator.md#sensing`` documents the model and every default; :class:`Sensor` is the
entry point and :class:`SensingConfig` its parameters.
"""

from simulator.sensing.config import SENSED_FIELDS, SensingConfig
from simulator.sensing.sensor import Sensor

__all__ = ["SENSED_FIELDS", "SensingConfig", "Sensor"]
