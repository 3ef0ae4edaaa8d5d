"""The simulator as an in-process backend: :class:`simulator.network.Network` called directly.

No process, no socket: each ``step`` runs one window of the network in this thread. Fast tests
and the benchmark use it; it enforces the same handshake order and refuses a setpoint outside the
configured envelope exactly as the server does, so a test against it is a real test.
"""

from __future__ import annotations

import math

import structlog

from controller.backends.base import BackendInfo, BackendObservation
from core.errors import BackendUnavailableError, ProtocolError, SafetyLimitError
from protocol.envelope.config import SafetyEnvelope
from protocol.envelope.setpoint import Setpoint
from simulator.config import NetworkConfig
from simulator.network import OBSERVATION_FIELDS, Network
from simulator.stimulus import Stimulus
from simulator.warmup import warm_up


class InProcessSimBackend:
    """Runs the FTSTS network in this process.

    Args:
        config: Network parameters (small networks for tests: ``NetworkConfig(n_e=160, n_i=40)``).
        seed: Seed used by :meth:`reset` when none is given.
        polarity: ``desync`` (the paper's Fig 3 waveform) or ``sync``.
    """

    def __init__(
        self, config: NetworkConfig | None = None, seed: int = 0, polarity: str = "desync"
    ) -> None:
        self.network = Network(config)
        self.default_seed = seed
        self.polarity = polarity
        self._envelope: SafetyEnvelope | None = None
        self._open = False
        self._seq = 0
        self._stopped = False
        self.stop_reasons: list[str] = []
        self.applied: list[Setpoint | None] = []
        self._log = structlog.get_logger("controller.backends.inprocess")

    def hello(self, client_name: str) -> BackendInfo:
        """Open the (only) session."""
        if self._open:
            raise ProtocolError(
                "Expected one hello per session, actual a second hello", "bad_state"
            )
        self._open = True
        warm_s = self._warm_up()
        self._log.info("backend_hello", client=client_name, warm_up_s=round(warm_s, 3))
        return BackendInfo(
            "sim", "InProcessSimBackend", OBSERVATION_FIELDS, "model", 20.0, True, lockstep=True
        )

    def configure(self, envelope: SafetyEnvelope, period_ms: float) -> str:
        """Accept a model-domain envelope."""
        self._require_open()
        if envelope.domain != "model":
            raise ProtocolError(
                f"Expected a 'model' envelope for the simulator, actual {envelope.domain!r}",
                "envelope_rejected",
            )
        self._envelope = envelope
        return envelope.sha256()

    def reset(self, seed: int | None) -> None:
        """Draw a new network; stimulation off."""
        self._require_open()
        self.network.reset(self.default_seed if seed is None else seed)
        self._seq = 0
        self._stopped = False

    def step(self, setpoint: Setpoint, duration_ms: float, timeout_s: float) -> BackendObservation:
        """Run one window with ``setpoint`` (checked against the envelope again)."""
        self._require_open()
        if self._envelope is None:
            raise ProtocolError("Expected configure before step, actual none", "bad_state")
        stim: Stimulus | None = None
        if setpoint.is_on and not self._stopped:
            self._check(setpoint, self._envelope)
            stim = Stimulus(
                setpoint.amplitude,
                frequency_hz=setpoint.frequency_hz,
                pulse_width_us=setpoint.pulse_width_us,
                polarity="sync" if self.polarity == "sync" else "desync",
            )
        stats = self.network.advance(stim, duration_ms)
        self._seq += 1
        self.applied.append(setpoint if stim is not None else None)
        return BackendObservation(
            self._seq,
            stats.t_end_ms,
            duration_ms,
            stats.observation(),
            setpoint if stim is not None else None,
        )

    def stop(self, reason: str) -> None:
        """Stimulation off until the next reset."""
        self._stopped = True
        self.stop_reasons.append(reason)

    def close(self) -> None:
        """End the session."""
        self._open = False

    @staticmethod
    def _warm_up() -> float:
        """Compile every kernel a session uses (announced, with progress) before the first tick."""
        return warm_up()

    def _require_open(self) -> None:
        if not self._open:
            raise BackendUnavailableError("Expected an open session (hello first), actual none")

    @staticmethod
    def _check(sp: Setpoint, env: SafetyEnvelope) -> None:
        for name, value, lo, hi in (
            ("amplitude_mv", sp.amplitude, 0.0, env.amplitude_max),
            ("frequency_hz", sp.frequency_hz, env.frequency_min_hz, env.frequency_max_hz),
            ("pulse_width_us", sp.pulse_width_us, env.pulse_width_min_us, env.pulse_width_max_us),
        ):
            if not (math.isfinite(value) and lo <= value <= hi):
                raise SafetyLimitError(f"Expected {name} in [{lo}, {hi}], actual {value}")
