"""Serial stimulator driver, device wire protocol, device emulator and bridge.

Layers (each importable on its own):

* codec: :mod:`drivers.cobs`, :mod:`drivers.framing` (header, CRC-16, streaming decoder),
  :mod:`drivers.messages` (payload structs), :mod:`drivers.sensing` (the STATUS sensed block),
  :mod:`drivers.envelope` (limits and checks);
* host: :class:`~drivers.base.StimulatorABC` and
  :class:`~drivers.serial_stimulator.SerialStimulator`;
* device: :mod:`drivers.firmware` (state machine), :mod:`drivers.emulator` with
  :mod:`drivers.ports`, :mod:`drivers.faults` and :mod:`drivers.tissue`;
* service: :mod:`drivers.bridge` (protocol backend), :mod:`drivers.shutdown` (STOP at once on
  SIGINT/SIGTERM, also mid-step) and the CLIs :mod:`drivers.cli` (``neuroloop-driver``) and
  :mod:`drivers.emulator_cli` (``neuroloop-device-emulator``).

The normative protocol description is ``docs/device-protocol.md``.
"""

from drivers.base import StimulatorABC
from drivers.envelope import DeviceEnvelope, check_envelope, setpoint_problem
from drivers.framing import BadFrame, Frame, FrameDecoder, decode_block, encode_frame
from drivers.messages import DeviceState, FaultBits, MsgType, NackCode, StopReason
from drivers.serial_stimulator import SerialStimulator

__all__ = [
    "BadFrame",
    "DeviceEnvelope",
    "DeviceState",
    "FaultBits",
    "Frame",
    "FrameDecoder",
    "MsgType",
    "NackCode",
    "SerialStimulator",
    "StimulatorABC",
    "StopReason",
    "check_envelope",
    "decode_block",
    "encode_frame",
    "setpoint_problem",
]
