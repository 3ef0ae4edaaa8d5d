"""A trivial backend for tests and benchmarks: it echoes the stimulus as its observation.

Shipped with the code (a fake beats a mock): it speaks the full protocol through the real
:class:`~protocol.backend.Backend` base class, so every rule is exercised, while its own step
costs nothing. Run it with ``python -m protocol.loopback --bind ADDR``.

Its knobs, as ``configure`` options:

* ``seed`` (int): seed of the spike generator (``numpy.random.Generator``).
* ``spikes_per_step`` (int, 0–100000): spikes made per window when asked for.
* ``nan_after_steps`` (int, 0 = never): from that step on, report a NaN observation, to
  exercise the backend-fault path.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from collections.abc import Mapping

import numpy as np

from core.clock import TimeSource
from core.errors import ConfigError
from core.logs import configure_from_args
from protocol.backend import Backend, StepResult
from protocol.envelope.config import SafetyEnvelope, validate
from protocol.envelope.wire import envelope_to_wire
from protocol.schema import Capabilities, ConfigValue, ParamSpec, SpikeWindow
from protocol.serve_cli import EPILOG, add_serve_arguments, run_backend

LOOPBACK_CAPABILITIES = Capabilities(
    stim_params=(
        ParamSpec("amplitude_mv", "mV", "amplitude", 0.0, 10.0),
        ParamSpec("frequency_hz", "Hz", "frequency", 1.0, 250.0),
        ParamSpec("pulse_width_us", "us", "pulse_width", 10.0, 1000.0),
    ),
    observation_fields=("amplitude_mv", "frequency_hz", "pulse_width_us", "step_index"),
    control_period_ms=20.0,
    min_duration_ms=0.1,
    max_duration_ms=10_000.0,
    supports_spikes=True,
    config_options=("seed", "spikes_per_step", "nan_after_steps"),
)


#: A model-domain envelope inside the loopback's ranges, for tests and benchmarks. Like every
#: envelope it has a soft start: after ``reset`` the first step is off, and an off step of
#: 100 ms lets the next step reach ``amplitude_max`` (5 mV).
LOOPBACK_ENVELOPE = validate(
    SafetyEnvelope(
        name="loopback",
        domain="model",
        amplitude_unit="mV",
        amplitude_min=0.0,
        amplitude_max=5.0,
        frequency_min_hz=1.0,
        frequency_max_hz=250.0,
        pulse_width_min_us=10.0,
        pulse_width_max_us=1000.0,
        charge_per_phase_max=5.0,
        electrode_area_cm2=0.0,
        charge_density_max_uc_cm2=0.0,
        interphase_gap_us=0.0,
        recharge_margin_us=100.0,
        amplitude_up_per_s=4000.0,
        amplitude_down_per_s=20000.0,
        frequency_step_hz=100.0,
        pulse_width_step_us=495.0,
        soft_start_s=0.1,
        lease_periods=2.5,
        watchdog_periods=3.0,
        invalid_streak_to_fault=3,
    ),
    "loopback envelope",
)
#: :data:`LOOPBACK_ENVELOPE` as sent in ``configure`` to a loopback backend.
LOOPBACK_WIRE_ENVELOPE = envelope_to_wire(LOOPBACK_ENVELOPE, LOOPBACK_CAPABILITIES)


def _int_option(
    options: Mapping[str, ConfigValue], name: str, lo: int, hi: int, default: int
) -> int:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"Expected option {name} as an integer in [{lo}, {hi}], actual {value!r}")
    return value


class LoopbackBackend(Backend):
    """Echo backend: the observation repeats the applied stimulus (zeros when off)."""

    kind = "loopback"

    def __init__(
        self, *, session_timeout_s: float = 2.0, clock: TimeSource = time.monotonic
    ) -> None:
        super().__init__(session_timeout_s=session_timeout_s, clock=clock)
        self.stop_calls: list[str] = []
        self._seed = 0
        self._spikes_per_step = 0
        self._nan_after = 0
        self._rng = np.random.default_rng(0)
        self._t_ms = 0.0
        self._steps = 0

    def capabilities(self) -> Capabilities:
        """The fixed loopback capabilities."""
        return LOOPBACK_CAPABILITIES

    def _on_configure(self, options: Mapping[str, ConfigValue], control_period_ms: float) -> None:
        self._seed = _int_option(options, "seed", 0, 2**63 - 1, 0)
        self._spikes_per_step = _int_option(options, "spikes_per_step", 0, 100_000, 0)
        self._nan_after = _int_option(options, "nan_after_steps", 0, 2**31, 0)

    def _on_reset(self, seed: int | None) -> float:
        self._rng = np.random.default_rng(self._seed if seed is None else seed)
        self._t_ms = 0.0
        self._steps = 0
        return self._t_ms

    def _on_step(
        self, stimulus: Mapping[str, float] | None, duration_ms: float, want_spikes: bool
    ) -> StepResult:
        t0 = self._t_ms
        self._t_ms += duration_ms
        self._steps += 1
        fields = dict.fromkeys(LOOPBACK_CAPABILITIES.observation_fields, 0.0)
        if stimulus is not None:
            fields.update(stimulus)
        fields["step_index"] = float(self._steps)
        if self._nan_after and self._steps >= self._nan_after:
            fields["amplitude_mv"] = float("nan")
        spikes = None
        if want_spikes:
            n = self._spikes_per_step
            times = np.sort(self._rng.uniform(t0, self._t_ms, n))
            ids = self._rng.integers(0, 2000, n, dtype=np.int32)
            spikes = SpikeWindow.from_arrays(times, ids)
        return StepResult(fields, self._t_ms, spikes)

    def _on_stop(self, reason: str) -> None:
        self.stop_calls.append(reason)


def main(argv: list[str] | None = None) -> int:
    """Serve a loopback backend (``python -m protocol.loopback --bind ADDR``)."""
    parser = argparse.ArgumentParser(
        prog="python -m protocol.loopback",
        description=textwrap.fill(
            "Serve the loopback test backend: it answers every protocol request and echoes "
            "each stimulus back as the observation, at no simulation cost. Used by the "
            "protocol tests and bench/bench_protocol.py.",
            width=92,
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_serve_arguments(parser)
    args = parser.parse_args(argv)
    configure_from_args(args)
    try:
        backend = LoopbackBackend(session_timeout_s=args.session_timeout_s)
    except ConfigError as err:
        parser.error(str(err))
    return run_backend(backend, args)


if __name__ == "__main__":
    sys.exit(main())
