"""A recorded session served as a protocol backend.

:class:`ReplayBackend` subclasses :class:`protocol.backend.Backend`, so every rule of the
protocol applies to it as to the simulator or a device: one controlling client, the session
state machine, every stimulus checked against the advertised ranges and the configured
envelope, a safe stop on every fault. Each ``step`` answers with the next recorded observation,
in order, whatever the stimulus (the recording cannot react to a new policy; it shows what the
new policy or envelope would have *commanded* on real data).

What it advertises:

* stimulation parameters in the recorded envelope's domain with the domain's absolute caps
  (``amplitude_mv`` for the model domain, ``amplitude_ma`` for the physical one, plus
  ``frequency_hz`` and ``pulse_width_us``), so a new envelope inside the caps is accepted;
* the recorded observation fields, except that the fields measuring the charge the *recorded*
  session delivered (``charge_mv_ms``, ``delivered_charge_uc``) are served as
  ``recorded_charge_mv_ms`` and ``recorded_delivered_charge_uc`` (:data:`RECORDED_CHARGE_FIELDS`):
  a replay stimulates nothing, so a controller must not account the recorded session's charge
  as its own. Without those fields the control loop accounts the charge its own applied
  setpoints command (``2 · amplitude · width · f · window``), which is what the summary of a
  replay run reports, as "charge commanded";
* one step duration only, the recorded control period ``T``.

Pace: ``fast`` answers at once; ``recorded`` holds each answer until the recorded round trip of
that tick has passed (a real-time controller then sees the session's latencies, including its
late observations). After the last observation a step is refused (``out_of_range``) with the
number of recorded steps, and stimulation stops as on any refusal.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import structlog

from controller.replay.session import Session
from core.clock import TimeSource
from core.errors import ConfigError, RecordingError
from protocol.backend import Backend, StepResult
from protocol.envelope.config import MODEL_CAPS, PHYSICAL_CAPS
from protocol.schema import Capabilities, ConfigValue, ParamSpec

ReplayPace = Literal["recorded", "fast"]
PACES: tuple[str, ...] = ("recorded", "fast")
#: Recorded observation fields that measure the recorded session's delivered charge, and the
#: names a replay serves them under.
RECORDED_CHARGE_FIELDS: dict[str, str] = {
    "charge_mv_ms": "recorded_charge_mv_ms",
    "delivered_charge_uc": "recorded_delivered_charge_uc",
}


@dataclass(frozen=True)
class ReplayStep:
    """One recorded window: its observation and the round trip it took when recorded."""

    fields: dict[str, float]
    t_model_ms: float
    duration_ms: float
    round_trip_s: float


def replay_steps(session: Session) -> list[ReplayStep]:
    """The session's observations in order, with their recorded round trips.

    Raises:
        RecordingError: The observations do not all carry the same fields.
    """
    steps: list[ReplayStep] = []
    names: tuple[str, ...] | None = None
    for t in session.ticks:
        obs = t.observation
        if obs is None:
            break
        fields = {
            RECORDED_CHARGE_FIELDS.get(str(k), str(k)): float(v) for k, v in obs["fields"].items()
        }
        if names is None:
            names = tuple(fields)
        elif tuple(fields) != names:
            raise RecordingError(
                f"Expected every observation of {session.path} to carry fields {list(names)}, "
                f"actual {list(fields)} at tick {t.tick}"
            )
        if t.timing is not None and isinstance(t.timing.get("step_ms"), int | float):
            round_trip_s = float(t.timing["step_ms"]) / 1000.0
        elif t.command_mono_ns is not None and t.observation_mono_ns is not None:
            round_trip_s = (t.observation_mono_ns - t.command_mono_ns) / 1e9
        else:
            round_trip_s = 0.0
        steps.append(
            ReplayStep(
                fields,
                float(obs["t_model_ms"]),
                float(obs["duration_ms"]),
                max(0.0, round_trip_s),
            )
        )
    if not steps:
        raise RecordingError(f"Expected at least one observation in {session.path}, actual none")
    return steps


def replay_capabilities(session: Session, steps: list[ReplayStep]) -> Capabilities:
    """What a replay of ``session`` advertises (see the module docstring)."""
    domain = session.meta["envelope"].get("domain")
    if domain == "model":
        caps, amp = MODEL_CAPS, ("amplitude_mv", "mV")
    elif domain == "physical":
        caps, amp = PHYSICAL_CAPS, ("amplitude_ma", "mA")
    else:
        raise RecordingError(
            f"Expected the header envelope domain 'model' or 'physical', actual {domain!r}"
        )
    period = session.period_ms
    return Capabilities(
        stim_params=(
            ParamSpec(amp[0], amp[1], "amplitude", 0.0, caps.amplitude_max),
            ParamSpec(
                "frequency_hz", "Hz", "frequency", caps.frequency_min_hz, caps.frequency_max_hz
            ),
            ParamSpec(
                "pulse_width_us",
                "us",
                "pulse_width",
                caps.pulse_width_min_us,
                caps.pulse_width_max_us,
            ),
        ),
        observation_fields=tuple(steps[0].fields),
        control_period_ms=period,
        min_duration_ms=period,
        max_duration_ms=period,
        supports_spikes=False,
    )


class ReplayBackend(Backend):
    """Serve a recorded session's observations in order.

    Args:
        session: The session to serve.
        pace: ``fast`` or ``recorded`` (see the module docstring).
        session_timeout_s: A session with no request for this long ends.
        clock: Monotonic clock in s (:mod:`core.clock`; a FakeClock in tests).
        sleep: Sleep function used by the recorded pace (injectable for tests).
    """

    kind = "replay"

    def __init__(
        self,
        session: Session,
        *,
        pace: ReplayPace = "fast",
        session_timeout_s: float = 2.0,
        clock: TimeSource = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if pace not in PACES:
            raise ConfigError(f"Expected pace in {list(PACES)}, actual {pace!r}")
        self.session = session
        self.pace = pace
        self.steps = replay_steps(session)
        self._caps = replay_capabilities(session, self.steps)
        slowest = max(s.round_trip_s for s in self.steps)
        asked_timeout_s = session_timeout_s
        if pace == "recorded" and slowest >= session_timeout_s:
            # A recorded round trip longer than the session timeout would end the session
            # while the step is still being held back.
            session_timeout_s = min(3600.0, math.ceil(slowest * 2.0 + 1.0))
        super().__init__(session_timeout_s=session_timeout_s, clock=clock)
        self._sleep = sleep
        self._cursor = 0
        self._log = structlog.get_logger().bind(backend="ReplayBackend", kind="replay")
        if session_timeout_s != asked_timeout_s:
            self._log.warning(
                "session_timeout_raised",
                asked_s=asked_timeout_s,
                used_s=session_timeout_s,
                reason=f"the slowest recorded round trip is {slowest:.3f} s",
            )
        recorded = session.summary() or {}
        self._log.info(
            "replay_loaded",
            session=str(session.path),
            steps=len(self.steps),
            period_ms=session.period_ms,
            pace=pace,
            recorded_policy=str(session.meta.get("policy", {}).get("name", "unknown")),
            recorded_charge=_charge_text(recorded),
        )

    @property
    def position(self) -> int:
        """Steps served since the last reset."""
        return self._cursor

    def capabilities(self) -> Capabilities:
        """The recording's fields and period in its envelope domain's units."""
        return self._caps

    def _on_configure(self, options: Mapping[str, ConfigValue], control_period_ms: float) -> None:
        """No options; the period is checked against the recorded one by the base class."""

    def _on_reset(self, seed: int | None) -> float:
        self._cursor = 0
        first = self.steps[0]
        return first.t_model_ms - first.duration_ms

    def _on_step(
        self, stimulus: Mapping[str, float] | None, duration_ms: float, want_spikes: bool
    ) -> StepResult:
        if self._cursor >= len(self.steps):
            n = len(self.steps)
            raise ConfigError(
                f"Expected at most {n} steps (the recording holds {n} observations, "
                f"{n * self.session.period_ms / 1000.0:g} s of control time), actual step "
                f"{n + 1}; run the controller with --duration <= "
                f"{n * self.session.period_ms / 1000.0:g}"
            )
        start = self._clock()
        step = self.steps[self._cursor]
        self._cursor += 1
        if self.pace == "recorded":
            remaining = step.round_trip_s - (self._clock() - start)
            if remaining > 0.0:
                self._sleep(remaining)
        return StepResult(step.fields, step.t_model_ms)

    def _on_stop(self, reason: str) -> None:
        """Nothing to switch off: a recording delivers no stimulation."""


def _charge_text(summary: Mapping[str, object]) -> str:
    """The recorded session's charge as its summary states it (``"not recorded"`` otherwise)."""
    charge = summary.get("charge_delivered")
    if not isinstance(charge, int | float):
        return "not recorded"
    return f"{charge:.6g} {summary.get('charge_unit', '')}".strip()
