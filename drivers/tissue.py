"""The emulated patient: a simulator network driven by what the device delivers.

The device speaks µA, µs and 0.1 Hz; the network speaks model drive units (mV inside
``τ_m·dV/dt``), Hz and µs. :class:`TissueTransfer` is the documented, configurable map between
them (``docs/device-protocol.md`` §10): amplitude is multiplied by ``gain_mv_per_ua`` (default
0.04 mV/µA, so 2.5 mA gives the paper's 100 mV and the 10 mA absolute cap gives the simulator's
400 mV ceiling); pulse width and frequency pass through unchanged; polarity and E–I offset are
fixed properties of the electrode placement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import structlog

from core.errors import ConfigError
from drivers.envelope import ABS_AMP_MAX_UA
from simulator.stimulus import AMPLITUDE_RANGE_MV, Polarity, Stimulus, stimulus_for

log = structlog.get_logger()


class WindowLike(Protocol):
    """What one network window returns (``simulator.network.WindowStats``)."""

    t_end_ms: float

    def observation(self) -> dict[str, float]:
        """Scalar observations of the window."""
        ...


class NetworkLike(Protocol):
    """The stepping surface of ``simulator.network.Network``."""

    def reset(self, seed: int) -> None:
        """Re-initialise every state variable from ``seed``."""
        ...

    def advance(self, stimulus: Stimulus | None, duration_ms: float) -> WindowLike:
        """Simulate ``duration_ms`` of model time under ``stimulus``."""
        ...


@dataclass(frozen=True)
class TissueTransfer:
    """Map from device output to model stimulation.

    Args:
        gain_mv_per_ua: Model drive per µA of device amplitude (mV/µA). Must keep the device's
            absolute cap (10 mA) inside the simulator's accepted range (≤ 400 mV).
        polarity: ``desync`` or ``sync`` pulse polarity in the model.
        ei_offset_ms: E–I waveform offset in the model (ms).
    """

    gain_mv_per_ua: float = 0.04
    polarity: Polarity = "desync"
    ei_offset_ms: float = 0.0

    def __post_init__(self) -> None:
        hi = AMPLITUDE_RANGE_MV[1] / ABS_AMP_MAX_UA
        if not (math.isfinite(self.gain_mv_per_ua) and 0.0 < self.gain_mv_per_ua <= hi):
            raise ConfigError(
                f"Expected gain_mv_per_ua in (0, {hi}] (so {ABS_AMP_MAX_UA} µA stays within "
                f"{AMPLITUDE_RANGE_MV[1]} mV), actual {self.gain_mv_per_ua!r}"
            )
        if self.polarity not in ("desync", "sync"):
            raise ConfigError(f"Expected polarity 'desync' or 'sync', actual {self.polarity!r}")

    def stimulus(self, *, amp_ua: int, pw_us: int, freq_dhz: int) -> Stimulus | None:
        """The model stimulus for a device output (``None`` when the output is off)."""
        return stimulus_for(
            amplitude_mv=max(0, amp_ua) * self.gain_mv_per_ua,
            frequency_hz=freq_dhz / 10.0,
            pulse_width_us=float(pw_us),
            polarity=self.polarity,
            ei_offset_ms=self.ei_offset_ms,
        )


def make_network(n_e: int, n_i: int, threads: int | str = 1) -> NetworkLike:
    """Build the simulator's FTSTS network with ``n_e`` excitatory and ``n_i`` inhibitory cells.

    ``threads`` integrate it (``Network.threads``: an integer or ``"auto"``; the same results
    on any count).
    """
    from simulator.config import NetworkConfig
    from simulator.network import Network

    return Network(NetworkConfig(n_e=n_e, n_i=n_i), threads=threads)


class Tissue:
    """A network advanced window by window under the device's output.

    Args:
        network: The network (``simulator.network.Network`` or anything with its surface).
        transfer: Device-to-model map.
        window_ms: Model time per window; the emulator runs one window per ``window_ms`` of
            wall-clock time.
        seed: Seed for ``network.reset``.
    """

    def __init__(
        self,
        network: NetworkLike,
        transfer: TissueTransfer | None = None,
        window_ms: float = 20.0,
        seed: int = 0,
    ) -> None:
        if not (math.isfinite(window_ms) and 1.0 <= window_ms <= 1000.0):
            raise ConfigError(f"Expected window_ms in [1, 1000], actual {window_ms!r}")
        self.network = network
        self.transfer = transfer or TissueTransfer()
        self.window_ms = window_ms
        self.network.reset(seed)
        self.t_ms = 0.0
        self.windows = 0
        self.last_observation: dict[str, float] | None = None

    def step(self, *, amp_ua: int, pw_us: int, freq_dhz: int) -> dict[str, float]:
        """Advance one window with the given device output and return its observation."""
        stats = self.network.advance(
            self.transfer.stimulus(amp_ua=amp_ua, pw_us=pw_us, freq_dhz=freq_dhz), self.window_ms
        )
        self.t_ms = float(stats.t_end_ms)
        self.windows += 1
        self.last_observation = stats.observation()
        return self.last_observation
