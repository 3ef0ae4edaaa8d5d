"""The fixed-rate control loop: observe, decide (policy → envelope), command, on a monotonic clock.

Tick ``k`` is scheduled at ``t0 + k·T``. At each tick the loop sends the decided setpoint and
waits for the window's observation. Then, per hil-safety-protocol §2.3 E:

* observation within ``T`` of the tick start: the policy runs on it, the governor turns its
  output into the next setpoint;
* later than ``T`` (a deadline miss): the policy is skipped and the last setpoint is held;
* later than ``2·T``: safe stop, fault latched, the run ends;
* no observation within the watchdog ``W`` or the backend unreachable: safe stop, alarm,
  the run ends; nothing restarts on its own.

These deadlines protect tissue that lives on in real time (a device). A *lockstep* backend
(:attr:`BackendInfo.lockstep`: a simulator, a replay) advances model time only inside ``step``,
so its tissue waits while the controller or the host is slow and a late observation is as
fresh, in model time, as an early one. Against such a backend a late step is counted
(``late_steps``) and reported, the policy runs as usual, and only a stall longer than
``LoopSettings.lockstep_stall_s`` (or a lost backend) stops the run. The envelope then runs on
control time ``k·T``, so a run gives the same commands however busy the host is.

With ``pace="fast"`` (lockstep backends only) the loop does not sleep and deadlines do not
apply; the control time given to the envelope is then ``k·T`` as well.

The loop measures per-tick latency (tick start → next setpoint ready), policy+envelope
overhead, the backend round trip, and the period jitter. The clock is injectable, so every
path is testable without waiting.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import structlog

from controller.backends.base import BackendConnection, BackendInfo, BackendObservation
from controller.clock import Clock, MonotonicClock
from controller.envelope.governor import Decision, SafetyGovernor
from controller.estop import EStop
from controller.policies.base import Policy
from controller.recorder import NullRecorder, TickRecorder
from controller.summary import SummaryBuilder
from controller.tick import ControlTick, open_session
from core.errors import (
    BackendUnavailableError,
    ConfigError,
    NeuroLoopError,
    RecordingError,
    TransportTimeoutError,
)

Pace = Literal["realtime", "fast"]


@dataclass(frozen=True)
class LoopSettings:
    """How the loop runs.

    Args:
        period_ms: Control period ``T``.
        duration_s: Run length in control time (ticks = duration / T).
        pace: ``realtime`` (paced on the clock, deadlines enforced) or ``fast`` (simulator).
        seed: Backend seed for ``reset`` (``None``: the backend's default).
        fast_timeout_s: Longest wait for one observation with ``pace="fast"``.
        lockstep_stall_s: Longest wait for one observation from a lockstep backend with
            ``pace="realtime"`` (at least the envelope's watchdog): a stall, not a late step.
        client_name: Name sent in the handshake.
        tail_s: The last ``tail_s`` of the run are stimulation-free: the policy is no longer
            asked and the governor ramps the output off, while the loop keeps observing (the
            tail of a training or evaluation episode). 0: the policy acts to the end.
    """

    period_ms: float = 20.0
    duration_s: float = 10.0
    pace: Pace = "realtime"
    seed: int | None = None
    fast_timeout_s: float = 30.0
    lockstep_stall_s: float = 5.0
    client_name: str = "neuroloop-controller"
    tail_s: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.period_ms) and 1.0 <= self.period_ms <= 10_000.0):
            raise ConfigError(f"Expected period_ms in [1, 10000], actual {self.period_ms}")
        if not (math.isfinite(self.duration_s) and self.duration_s > 0.0):
            raise ConfigError(f"Expected duration_s > 0, actual {self.duration_s}")
        if self.pace not in ("realtime", "fast"):
            raise ConfigError(f"Expected pace realtime|fast, actual {self.pace!r}")
        for name in ("fast_timeout_s", "lockstep_stall_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ConfigError(f"Expected {name} > 0, actual {value}")
        if not (math.isfinite(self.tail_s) and 0.0 <= self.tail_s < self.duration_s):
            raise ConfigError(
                f"Expected tail_s in [0, duration_s {self.duration_s}), actual {self.tail_s}"
            )

    @property
    def tail_from_s(self) -> float:
        """Control time from which the run is stimulation-free (``duration_s`` without tail)."""
        return self.duration_s - self.tail_s

    @property
    def ticks(self) -> int:
        """Number of ticks in the run."""
        return max(1, round(self.duration_s * 1000.0 / self.period_ms))


@dataclass
class RunResult:
    """How a run ended, with the accumulated statistics."""

    info: BackendInfo
    ticks: int
    end_reason: str
    fault: str | None
    stats: SummaryBuilder
    last_model_ms: float
    fault_detail: str | None = None


class ControlLoop:
    """Runs a policy against a backend inside the safety envelope.

    Args:
        backend: The backend (already constructed, not yet opened).
        policy: The policy.
        governor: The safety governor (not yet armed).
        settings: Period, duration, pace, seed.
        clock: Time source (:class:`MonotonicClock` by default; a manual clock in tests).
        recorder: Where ticks are recorded.
        estop: Stop flag set by signals.
        on_tick: Called with the tick number after every completed tick (progress display).
    """

    def __init__(
        self,
        backend: BackendConnection,
        policy: Policy,
        governor: SafetyGovernor,
        settings: LoopSettings,
        clock: Clock | None = None,
        recorder: TickRecorder | None = None,
        estop: EStop | None = None,
        on_tick: Callable[[int], None] | None = None,
    ) -> None:
        self.backend = backend
        self.policy = policy
        self.governor = governor
        self.settings = settings
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self.recorder: TickRecorder = recorder if recorder is not None else NullRecorder()
        self.estop = estop if estop is not None else EStop()
        self.on_tick = on_tick
        self.stats = SummaryBuilder()
        self.stopped = False
        self.fault_detail: str | None = None
        self._lockstep = False
        self._in_tail = False
        self.tick = ControlTick(backend, governor, settings.period_ms)
        self._log = structlog.get_logger("controller.loop")

    def open(self) -> BackendInfo:
        """Handshake: hello, checks, configure with the envelope, reset."""
        s = self.settings
        info = open_session(
            self.backend,
            self.governor.envelope,
            s.period_ms,
            client_name=s.client_name,
            required_fields=self.policy.required_fields,
            user=f"policy {self.policy.name!r}",
            fast=s.pace == "fast",
        )
        self.backend.reset(s.seed)
        self.policy.reset()
        return info

    def run(self) -> RunResult:
        """Open the backend, run every tick, and stop stimulation however the run ends."""
        info = self.open()
        self._lockstep = info.lockstep
        self.stats.lockstep = info.lockstep
        # Which deadline rules apply is a fact of the run: a replay re-runs it under the same.
        self.recorder.event(
            "backend", {"kind": info.kind, "name": info.name, "lockstep": info.lockstep}
        )
        self._log.info(
            "run_start",
            backend=info.kind,
            policy=self.policy.name,
            ticks=self.settings.ticks,
            deadlines="lockstep: late steps counted" if info.lockstep else "real time: enforced",
        )
        end_reason, fault, ticks, t_model = "completed", None, 0, 0.0
        try:
            end_reason, fault, ticks, t_model = self._ticks()
        finally:
            self.governor.flush_log()
            self.stop_backend(fault or end_reason)
        return RunResult(info, ticks, end_reason, fault, self.stats, t_model, self.fault_detail)

    def stop_backend(self, reason: str) -> None:
        """Stop stimulation once (never raises; a lost backend stops on its own lease)."""
        if self.stopped:
            return
        self.stopped = True
        try:
            self.backend.stop(reason)
        except NeuroLoopError as err:
            self._log.error("stop_failed", reason=reason, error=str(err))
        try:
            self.recorder.event("stop", {"reason": reason})
        except RecordingError as err:  # e.g. an at-exit stop after the recording was closed
            self._log.warning("stop_not_recorded", reason=reason, error=str(err))

    def _ticks(self) -> tuple[str, str | None, int, float]:
        s, gov, clock, stats = self.settings, self.governor, self.clock, self.stats
        period_s = s.period_ms / 1000.0
        # Deadlines apply to real-time tissue only; a lockstep backend's tissue waits.
        realtime = s.pace == "realtime"
        deadlines = realtime and not self._lockstep
        watchdog_s = gov.envelope.watchdog_periods * period_s
        if deadlines:
            timeout_s = watchdog_s
        elif realtime:
            timeout_s = max(s.lockstep_stall_s, watchdog_s)
        else:
            timeout_s = s.fast_timeout_s
        t0 = clock.now()
        scheduled = t0
        tick = self.tick
        decision = tick.start()
        prev_start: float | None = None
        t_model = 0.0
        for k in range(s.ticks):
            if self.estop.requested:
                reason = self.estop.reason or "estop"
                self._fault(reason, f"Operator stop ({reason}) before tick {k}")
                return reason, reason, k, t_model
            if realtime:
                clock.sleep_until(scheduled)
            start = clock.now()
            if realtime:
                stats.wake_late_s.append(start - scheduled)
                if prev_start is not None:
                    stats.period_error_s.append(start - prev_start - period_s)
            prev_start = start
            t_ctl = start - t0 if deadlines else k * period_s
            self.recorder.command(k, t_ctl, decision)
            try:
                obs = tick.apply(decision, timeout_s)
            except (TransportTimeoutError, BackendUnavailableError) as err:
                detail = f"Expected an observation within {timeout_s * 1000:.6g} ms, actual: {err}"
                self._log.critical("alarm_backend_unreachable", tick=k, error=str(err))
                self._fault("backend_unreachable", detail)
                return "fault", "backend_unreachable", k, t_model
            except NeuroLoopError as err:
                # Refused stimulus, backend fault, protocol error: stop, never retry.
                self._fault("backend_error", f"Expected a valid observation, actual: {err}")
                return "fault", "backend_error", k, t_model
            t_obs = clock.now()
            age_s = t_obs - start
            stats.step_s.append(age_s)
            t_model = obs.t_model_ms
            self._account(obs, decision)
            self.recorder.observation(k, obs)
            if realtime and not deadlines and age_s > period_s:
                self._late_step(k, age_s, period_s)
            if deadlines and age_s > 2.0 * period_s:
                detail = (
                    f"Expected the observation within 2·T = {2 * s.period_ms:g} ms, actual "
                    f"{age_s * 1000:.3f} ms"
                )
                self._fault("deadline_2t", detail)
                stats.deadline_misses += 1
                return "fault", "deadline_2t", k + 1, t_model
            t_next = (start + period_s - t0) if deadlines else (k + 1) * period_s
            if deadlines and age_s > period_s:
                stats.deadline_misses += 1
                detail = (
                    f"Expected the observation within T = {s.period_ms:g} ms, actual "
                    f"{age_s * 1000:.3f} ms; policy skipped, last setpoint held"
                )
                decision = gov.hold(t_next, "late_observation", detail)
                raw: Any = None
            else:
                decision, raw = self._decide(obs, t_next)
            if raw is not None:
                self.recorder.action(k, raw)
            t_ready = clock.now()
            stats.latency_s.append(t_ready - start)
            stats.overhead_s.append(t_ready - t_obs)
            self.recorder.timing(
                k,
                step_ms=age_s * 1000.0,
                overhead_ms=(t_ready - t_obs) * 1000.0,
                latency_ms=(t_ready - start) * 1000.0,
            )
            if decision.fault is not None:
                detail = "; ".join(f.detail for f in decision.findings) or decision.fault
                self.fault_detail = detail
                self.recorder.event("fault", {"reason": decision.fault, "detail": detail})
                self.stop_backend(decision.fault)
                return "fault", decision.fault, k + 1, t_model
            if self.on_tick is not None:
                self.on_tick(k)
            scheduled += period_s
            if realtime and scheduled < clock.now():
                stats.overruns += 1
                scheduled = clock.now()
        return "completed", None, s.ticks, t_model

    def _decide(self, obs: BackendObservation, t_next: float) -> tuple[Decision, Any]:
        gov = self.governor
        if self.settings.tail_s > 0.0 and t_next >= self.settings.tail_from_s - 1e-9:
            # the stimulation-free tail: the envelope ramps the output off, nothing is asked
            if not self._in_tail:
                self._in_tail = True
                self._log.info("tail_started", t_s=t_next, tail_s=self.settings.tail_s)
                self.recorder.event("tail", {"t_s": t_next, "tail_s": self.settings.tail_s})
            return self.tick.command(gov.envelope.off_setpoint(), t_next), None
        fields = self.tick.fields(obs)  # the backend's fields and the delivered dose
        held = gov.check_observation(fields, self.policy.required_fields, t_next)
        if held is not None:
            return held, None
        try:
            raw = self.policy.act(fields, obs.t_model_ms)
        except Exception as err:  # a broken policy is an invalid action, not a crash
            self._log.error("policy_error", error=repr(err))
            raw = err
        return self.tick.command(raw, t_next), raw

    def _account(self, obs: BackendObservation, decision: Decision) -> None:
        on = obs.applied is not None and obs.applied.is_on
        charge = self.tick.last_charge  # counted when the window was applied
        self.stats.add_window(dict(obs.fields), on, float(charge))
        self.stats.model_time_ms = obs.t_model_ms

    def _late_step(self, tick: int, age_s: float, period_s: float) -> None:
        """Count a late observation from a lockstep backend (logged once per run)."""
        stats = self.stats
        stats.late_steps += 1
        if stats.late_steps == 1:
            self._log.info(
                "late_step",
                tick=tick,
                step_ms=round(age_s * 1000.0, 3),
                period_ms=round(period_s * 1000.0, 6),
                detail="the lockstep backend's model time waited, so the run is unaffected; "
                "late steps are counted in the summary",
            )

    def _fault(self, reason: str, detail: str) -> None:
        self.fault_detail = detail
        self.governor.fault(reason, detail)
        self.recorder.event("fault", {"reason": reason, "detail": detail})
        self.stop_backend(reason)
