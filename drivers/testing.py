"""Fakes and helpers shipped with the drivers for tests (ours and downstream ones).

* :class:`ToyNetwork`: a tiny deterministic stand-in with the simulator network's surface
  (``reset(seed)``, ``advance(stimulus, duration_ms)`` → window with ``observation()``), whose
  synchrony falls while stimulation is on, for tests that must not pay for the real kernel.
* :func:`running_emulator`: an emulator on a real pty (or loopback TCP) in a thread, closed on
  exit.
* :func:`serving_bridge`: the serial bridge over a driver, served on a loopback ZeroMQ port in
  a thread (a controller connects to the endpoint it yields).
* :func:`wait_until`: poll a condition with a deadline; never waits forever.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from core.errors import DeviceTimeoutError
from drivers.base import StimulatorABC
from drivers.bridge import SerialBackend
from drivers.device_caps import FirmwareConfig
from drivers.emulator import DeviceEmulator
from drivers.faults import FaultConfig, FaultInjector
from drivers.firmware import DeviceFirmware
from drivers.ports import EmulatorPort, PtyPort, TcpPort
from drivers.tissue import Tissue
from protocol.server import serving
from simulator.stimulus import Stimulus


@dataclass
class ToyWindow:
    """One window of :class:`ToyNetwork`."""

    t_end_ms: float
    values: dict[str, float]

    def observation(self) -> dict[str, float]:
        """The window's observation (the simulator's keys)."""
        return dict(self.values)


class ToyNetwork:
    """Deterministic toy tissue: synchrony relaxes towards 0.2 under stimulation, 0.8 without.

    Its observation has the simulator network's fields, the sensed ones included (LFP band
    powers that grow with synchrony, a 34 Hz peak, the units' synchrony and rate).

    Args:
        relax_per_window: Fraction of the gap to the target closed each window.
    """

    def __init__(self, relax_per_window: float = 0.2) -> None:
        self.relax = relax_per_window
        self.t_ms = 0.0
        self.synchrony = 0.8
        self._rng = np.random.default_rng(0)

    def reset(self, seed: int) -> None:
        """Start over with noise from ``seed``."""
        self._rng = np.random.default_rng(seed)
        self.t_ms = 0.0
        self.synchrony = 0.8

    def advance(self, stimulus: Stimulus | None, duration_ms: float) -> ToyWindow:
        """Relax synchrony towards the target of this window's stimulation."""
        on = stimulus is not None and stimulus.is_on
        target = 0.2 if on else 0.8
        self.synchrony += self.relax * (target - self.synchrony)
        self.synchrony = float(np.clip(self.synchrony + self._rng.normal(0.0, 0.005), 0.0, 1.0))
        self.t_ms += duration_ms
        charge = 0.0
        if stimulus is not None and on:
            pulses = duration_ms * stimulus.frequency_hz / 1000.0
            charge = 2.0 * stimulus.charge_per_phase_mv_ms * pulses
        values = {
            "synchrony": self.synchrony,
            "mean_v_e_mv": 15.0,
            "sd_v_e_mv": 2.0,
            "mean_v_i_mv": 14.0,
            "sd_v_i_mv": 1.5,
            "weight_mv": 260.0,
            "rate_e_hz": 40.0,
            "rate_i_hz": 60.0,
            "chi": self.synchrony,
            "charge_mv_ms": charge,
            # What an implant senses (the fields of simulator.sensing): LFP power that grows
            # with synchrony around a 34 Hz peak, and the recorded units.
            "lfp_beta_uv2": 1.0 + 40.0 * self.synchrony**2,
            "lfp_band_uv2": 2.0 + 80.0 * self.synchrony**2,
            "lfp_peak_hz": 34.0,
            "lfp_peak_uv2": 0.5 + 20.0 * self.synchrony**2,
            "units_synchrony": self.synchrony,
            "units_rate_hz": 40.0,
        }
        return ToyWindow(self.t_ms, values)


def wait_until(
    predicate: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.005
) -> None:
    """Poll ``predicate`` until it holds.

    Raises:
        DeviceTimeoutError: If it does not hold within ``timeout_s`` (naming ``what``).
    """
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise DeviceTimeoutError(f"Expected {what} within {timeout_s} s, actual not yet")
        time.sleep(poll_s)


@contextmanager
def running_emulator(
    *,
    tcp: bool = False,
    tissue: Tissue | None = None,
    faults: FaultConfig | None = None,
    firmware: FirmwareConfig | None = None,
    seed: int = 0,
    tick_ms: float = 1.0,
) -> Iterator[DeviceEmulator]:
    """An emulator serving on a fresh pty (or 127.0.0.1 TCP port) in a daemon thread.

    Yields:
        The running emulator; ``emulator.port.url`` is what the driver opens.
    """
    port: EmulatorPort = TcpPort(0) if tcp else PtyPort()
    emulator = DeviceEmulator(
        port,
        DeviceFirmware(firmware, seed=seed, now_s=time.monotonic()),
        tissue,
        FaultInjector(faults, seed=seed),
        tick_ms=tick_ms,
    )
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.close()


@contextmanager
def serving_bridge(
    driver: StimulatorABC, step_mode: str = "latest", session_timeout_s: float = 2.0
) -> Iterator[str]:
    """Serve ``driver`` through :class:`~drivers.bridge.SerialBackend` on ``tcp://127.0.0.1``.

    Yields the endpoint (:func:`protocol.server.serving`). The driver stays open: close it
    yourself.
    """
    backend = SerialBackend(driver, session_timeout_s=session_timeout_s, step_mode=step_mode)
    with serving(backend) as endpoint:
        yield endpoint
