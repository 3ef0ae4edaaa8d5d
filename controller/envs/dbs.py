"""``DBSEnv``: closed-loop stimulation of a neural model as a gymnasium environment.

One episode (see :class:`~controller.envs.config.SimConfig`): ``reset`` simulates the
unstimulated lead-in and returns the observation of its last window; each ``step`` runs one
control tick of the controller (:class:`controller.tick.ControlTick`): the agent's normalised
action passes through the controller's :class:`SafetyGovernor` (the same envelope, action map,
ramps and soft start the real-time controller applies, so nothing outside the envelope reaches
the model and training sees what deployment will deliver), the setpoint goes to the model for
one control period, and the window's scaled observation and reward
(:mod:`controller.envs.reward`) come back. The last step also simulates the stimulation-free
tail and ends the episode (``terminated``); ``truncated`` is never set.

The model is a backend connection (:mod:`controller.envs.models`): the simulator in process
(default), a simulator server, the serial bridge to a device, a replay. A backend that reports
spikes gives the tail's synchrony from spikes (the offline Kuramoto R of E cells); one that
does not (a device, a replay) runs the tail in control periods and averages their
``synchrony`` observations.

Every random draw is seeded: ``reset(seed=s)`` runs the network from seed ``s`` (or
``options["network_seed"]``); a reset without a seed draws the next network seed from the
environment's ``np_random``, so a seeded first reset fixes the whole sequence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
import numpy.typing as npt
import structlog

from controller.backends.base import BackendConnection, BackendInfo, BackendObservation
from controller.envelope.action import ActionMap
from controller.envelope.governor import SafetyGovernor
from controller.envs import reward as rw
from controller.envs.config import SimConfig
from controller.envs.models import ENV_CLIENT_NAME, LocalNetworkModel, ModelWindow
from controller.envs.render import EpisodeTrace, render_frame
from controller.envs.spaces import ACTION_MAP, OBSERVATION_NAMES, observation_set, scale_observation
from controller.tick import ControlTick, open_session
from core.errors import ConfigError, NeuroLoopError, SafetyFaultError
from protocol.envelope.config import SafetyEnvelope, load_envelope
from protocol.envelope.setpoint import Setpoint
from simulator.synchrony import epoch_mean, order_parameter

ObsArray = npt.NDArray[np.float32]
MAX_SEED = 2**63 - 1
#: Deadline of one step beyond its window length (a simulator runs faster than real time; a
#: device in real time).
STEP_SLACK_S = 10.0


def action_map_for(envelope: SafetyEnvelope) -> ActionMap:
    """The agent's action map for ``envelope``.

    Model domain: :data:`~controller.envs.spaces.ACTION_MAP` (10–200 mV, 5–180 Hz,
    50–500 µs). Physical domain (a device): the envelope's own amplitude, frequency and
    pulse-width ranges, so every action is a setting the device accepts.
    """
    if envelope.domain == "model":
        return ACTION_MAP
    return ActionMap(
        ACTION_MAP.names,
        (envelope.amplitude_min, envelope.frequency_min_hz, envelope.pulse_width_min_us),
        (envelope.amplitude_max, envelope.frequency_max_hz, envelope.pulse_width_max_us),
    )


def tail_synchrony(
    times_ms: npt.NDArray[np.float64],
    neurons: npt.NDArray[np.int32],
    n_e: int,
    start_ms: float,
    stop_ms: float,
) -> float:
    """Mean offline Kuramoto R of E cells over ``[start_ms, stop_ms)``.

    ``times_ms`` should include the spikes of the window before ``start_ms`` so that each
    neuron's first inter-spike interval of the tail is bracketed.

    Raises:
        SafetyFaultError: R is undefined over the whole tail (too few E cells fire).
    """
    t, r, _ = order_parameter(times_ms, neurons, n_e, stop_ms, 1.0, t_start_ms=start_ms)
    value = epoch_mean(t, r, start_ms, stop_ms)
    if not math.isfinite(value):
        raise SafetyFaultError(
            f"Expected a defined order parameter over the tail [{start_ms:g}, {stop_ms:g}) ms, "
            "actual none (fewer than half of the E cells fired twice)"
        )
    return value


class DBSEnv(gym.Env[ObsArray, ObsArray]):
    """Closed-loop deep-brain stimulation of a neural model.

    Args:
        sim_config: Episode timing, envelope and reward (default :class:`SimConfig`).
        model_class: Builds the model, a backend connection, from ``model_params`` (default:
            the in-process FTSTS network; :class:`~controller.envs.remote.RemoteModel` for a
            simulator server; any :class:`~controller.backends.base.BackendConnection`).
        model_params: Keyword arguments of ``model_class``.
        render_mode: ``None``, ``rgb_array`` or ``human``.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array", "human"], "render_fps": 4}  # noqa: RUF012

    def __init__(
        self,
        sim_config: SimConfig | None = None,
        model_class: Callable[..., BackendConnection] = LocalNetworkModel,
        model_params: dict[str, Any] | None = None,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(
                f"Expected render_mode in {self.metadata['render_modes']} or None, "
                f"actual {render_mode!r}"
            )
        self.sim_config = sim_config if sim_config is not None else SimConfig()
        if not isinstance(self.sim_config, SimConfig):
            raise ConfigError(f"Expected sim_config as a SimConfig, actual {sim_config!r}")
        self.render_mode = render_mode
        self.envelope: SafetyEnvelope = load_envelope(self.sim_config.envelope)
        self.action_map = action_map_for(self.envelope)
        self.model: BackendConnection = model_class(**(model_params or {}))
        # The agent sees its observation set; the reward also reads the weight and synchrony
        # (the oracle set's fields) and counts model charge (mV·ms): a physical backend must
        # report its tissue's.
        self.features = observation_set(self.sim_config.observations, self.envelope.domain)
        required = tuple(dict.fromkeys((*OBSERVATION_NAMES, *(f.field for f in self.features))))
        if self.envelope.domain != "model":
            required = (*required, "charge_mv_ms")
        try:
            self.backend_info: BackendInfo = open_session(
                self.model,
                self.envelope,
                self.sim_config.control_period_ms,
                client_name=ENV_CLIENT_NAME,
                required_fields=required,
                user="the environment",
                # its reward reads the simulator's truth by design; the agent's own view is
                # checked by the observation set (measurable: LFP features and dose)
                unobservable_log="debug",
            )
        except BaseException:
            self.model.close()
            raise
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(ACTION_MAP.size,), dtype=np.float32)
        n_obs = len(self.features)
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(n_obs,), dtype=np.float32)
        self._log = structlog.get_logger().bind(env=type(self).__name__)
        self.tick: ControlTick | None = None
        self.trace = EpisodeTrace()
        self.network_seed: int | None = None
        self._k = 0
        self._done = True
        self._closed = False
        self._weight_mv = math.nan
        self._charge_mv_ms = 0.0
        self._figure: Any = None

    @property
    def governor(self) -> SafetyGovernor | None:
        """The current episode's governor (``None`` before the first reset)."""
        return self.tick.governor if self.tick is not None else None

    @property
    def n_e(self) -> int | None:
        """Excitatory neurons of the model, when it says (spike-based tail and raster)."""
        n_e = getattr(self.model, "n_e", None)
        return int(n_e) if n_e is not None else None

    # ------------------------------------------------------------------ gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[ObsArray, dict[str, Any]]:
        """Start an episode: new network from the seed, unstimulated lead-in, first observation.

        Args:
            seed: Network seed (also seeds ``np_random``).
            options: ``{"network_seed": int}`` overrides the network seed.
        """
        super().reset(seed=seed)
        opts = dict(options or {})
        unknown = sorted(set(opts) - {"network_seed"})
        if unknown:
            raise ConfigError(f"Expected reset options from ['network_seed'], actual {unknown}")
        if "network_seed" in opts:
            net_seed = opts["network_seed"]
        elif seed is not None:
            net_seed = seed
        else:
            net_seed = int(self.np_random.integers(0, 2**31 - 1))
        if isinstance(net_seed, bool) or not isinstance(net_seed, int | np.integer):
            raise ConfigError(f"Expected an integer network seed, actual {net_seed!r}")
        if not 0 <= int(net_seed) <= MAX_SEED:
            raise ConfigError(f"Expected a network seed in [0, 2**63 - 1], actual {net_seed!r}")
        cfg = self.sim_config
        self.network_seed = int(net_seed)
        self.model.reset(self.network_seed)
        governor = SafetyGovernor(self.envelope, cfg.period_s, self.action_map)
        self.tick = ControlTick(self.model, governor, cfg.control_period_ms)
        # The last lead-in period below is off: the governor's first (idle) setpoint, from
        # whose start the soft start runs, as in the controller's loop.
        idle = self.tick.start()
        self.trace = EpisodeTrace(keep_spikes=cfg.keep_spikes or self.render_mode is not None)
        self._k = 0
        self._charge_mv_ms = 0.0
        want = self.trace.keep_spikes
        if cfg.onset_ms > cfg.control_period_ms:
            for window in self._off_windows(idle.setpoint, cfg.onset_ms - cfg.control_period_ms,
                                            want):  # fmt: skip
                self.trace.add_spikes(window)
        # The last lead-in period is its own window, so the first observation describes one
        # control period like every later one (an onset of 0 still observes one period).
        window = self._window(self.tick.apply(idle, self._timeout_s(cfg.control_period_ms),
                                              self._spikes(want)))  # fmt: skip
        self.trace.add_spikes(window)
        seen = self._with_dose(window.fields)
        obs = scale_observation(seen, self.features)
        self._weight_mv = float(window.fields["weight_mv"])
        self.trace.add_window(window, None, 0.0)
        self._done = False
        self._log.debug("episode_reset", network_seed=self.network_seed, t_ms=window.t_end_ms)
        info = {
            "network_seed": self.network_seed,
            "t_ms": window.t_end_ms,
            "weight_mv": self._weight_mv,
            "synchrony": float(window.fields["synchrony"]),
            "fields": seen,
        }
        return obs, info

    def step(self, action: ObsArray) -> tuple[ObsArray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Apply one normalised action for one control period (the last step runs the tail)."""
        arr = np.asarray(action, dtype=np.float64)
        if arr.shape != (ACTION_MAP.size,) or not all(map(math.isfinite, arr.tolist())):
            self._log.error("action_fault", action=arr.tolist(), reason="non-finite or mis-shaped")
            self._done = True
            raise SafetyFaultError(
                f"Expected a finite action of shape ({ACTION_MAP.size},), actual {arr.tolist()}"
            )
        return self._advance(arr)

    def step_setpoint(
        self, setpoint: Setpoint
    ) -> tuple[ObsArray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Like :meth:`step` for a physical setpoint (scripted baselines such as open-loop FTSTS).

        The setpoint goes through the same envelope as an agent's action, so a baseline and a
        policy are scored on equal terms.
        """
        if not isinstance(setpoint, Setpoint):
            raise ConfigError(f"Expected a Setpoint, actual {type(setpoint).__name__}")
        return self._advance(setpoint)

    def _advance(
        self, request: npt.NDArray[np.float64] | Setpoint
    ) -> tuple[ObsArray, SupportsFloat, bool, bool, dict[str, Any]]:
        tick = self.tick
        if self._done or tick is None:
            raise ConfigError("Expected reset() before step() (the episode is over or unstarted)")
        cfg = self.sim_config
        decision = tick.command(request, (self._k + 1) * cfg.period_s)
        if decision.fault is not None:
            self._done = True
            raise SafetyFaultError(f"Expected no envelope fault, actual {decision.fault}")
        terminal = self._k + 1 >= cfg.n_steps
        want = self._spikes(self.trace.keep_spikes or terminal)
        try:
            observed = tick.apply(decision, self._timeout_s(cfg.control_period_ms), want)
        except NeuroLoopError:
            self._done = True
            raise
        window = self._window(observed)
        seen = self._with_dose(window.fields)
        obs = scale_observation(seen, self.features)
        charge = self._charge(observed)
        weight_after = float(window.fields["weight_mv"])
        synchrony = float(window.fields["synchrony"])
        self._charge_mv_ms += charge
        self.trace.add_spikes(window)
        self.trace.add_window(window, decision.setpoint, charge)
        rcfg = cfg.reward
        charge_term = rw.charge_cost(charge, cfg.controlled_s, rcfg)
        sync_term = rw.sync_cost(min(1.0, max(0.0, synchrony)), cfg.period_s, cfg.controlled_s,
                                 rcfg)  # fmt: skip
        shaping_term = rw.shaping(self._weight_mv, weight_after, terminal, rcfg)
        tail_term = 0.0
        info: dict[str, Any] = {
            "t_ms": window.t_end_ms,
            "setpoint": decision.setpoint.as_dict(),
            "held": decision.held,
            "findings": [f.reason for f in decision.findings],
            "charge_mv_ms": charge,
            "weight_mv": weight_after,
            "synchrony": synchrony,
            "fields": seen,
        }
        if terminal:
            tail, r_tail = self._tail(window, decision.setpoint)
            tail_term = rw.tail_penalty(r_tail, rcfg)
            seen = self._with_dose(tail.fields)
            obs = scale_observation(seen, self.features)
            info.update(
                r_tail=r_tail,
                total_charge_mv_ms=self._charge_mv_ms,
                weight_end_mv=float(tail.fields["weight_mv"]),
                t_ms=tail.t_end_ms,
                fields=seen,
            )
            self._done = True
        terms = rw.RewardTerms(charge_term, tail_term, sync_term, shaping_term)
        info["reward_terms"] = terms.as_dict()
        self._weight_mv = weight_after
        self._k += 1
        if self.render_mode == "human":
            self.render()
        return obs, terms.total, terminal, False, info

    # ------------------------------------------------------------------ model windows
    def _spikes(self, want: bool) -> bool:
        """Ask for spikes only from a backend that reports them."""
        return want and self.backend_info.supports_spikes

    def _timeout_s(self, duration_ms: float) -> float:
        """Deadline of one step: the model's handshake deadline plus twice the window."""
        base = float(getattr(self.model, "timeout_s", STEP_SLACK_S))
        return base + 2.0 * duration_ms / 1000.0

    def _window(self, observed: BackendObservation) -> ModelWindow:
        return ModelWindow.of(observed)

    def _with_dose(self, fields: Mapping[str, float]) -> dict[str, float]:
        """``fields`` with the episode's delivered dose (what the agent observes)."""
        tick = self.tick
        if tick is None:
            return dict(fields)
        return {**fields, tick.dose_field: tick.dose}

    def _charge(self, observed: BackendObservation) -> float:
        """Model charge of a window (mV·ms): the envelope's account, or a device's tissue's."""
        if self.envelope.domain == "model" and self.tick is not None:
            return self.tick.last_charge  # counted when the window was applied
        return float(observed.fields["charge_mv_ms"])

    def _off_windows(self, last: Setpoint, duration_ms: float, want: bool) -> Iterator[ModelWindow]:
        """Unstimulated windows covering ``duration_ms``, each no longer than the backend allows.

        One window where the backend allows it (the simulator: up to 10 s); otherwise whole
        control periods per window (a replay serves exactly one period per step).
        """
        off = Setpoint(
            amplitude=0.0, frequency_hz=last.frequency_hz, pulse_width_us=last.pulse_width_us
        )
        period = self.sim_config.control_period_ms
        longest = self.backend_info.max_step_ms
        if duration_ms <= longest:
            pieces = [duration_ms]
        else:
            per = max(1, math.floor(longest / period + 1e-9)) * period
            n_full, rest = divmod(round(duration_ms / period), round(per / period))
            pieces = [per] * n_full + ([rest * period] if rest else [])
        spikes = self._spikes(want)
        for piece in pieces:
            if spikes:
                observed = self.model.step(off, piece, self._timeout_s(piece), True)
            else:
                observed = self.model.step(off, piece, self._timeout_s(piece))
            yield self._window(observed)

    def _tail(self, last: ModelWindow, setpoint: Setpoint) -> tuple[ModelWindow, float]:
        """Run the stimulation-free tail; return its last window and its synchrony R."""
        cfg = self.sim_config
        if self.backend_info.supports_spikes and self.n_e is not None:
            spikes = [_spikes_of(last)]
            tail = last
            for tail in self._off_windows(setpoint, cfg.tail_ms, True):
                self.trace.add_spikes(tail)
                self.trace.add_window(tail, None, float(tail.fields["charge_mv_ms"]))
                spikes.append(_spikes_of(tail))
            r_tail = tail_synchrony(
                np.concatenate([times for times, _ in spikes]),
                np.concatenate([neurons for _, neurons in spikes]),
                self.n_e,
                last.t_end_ms,
                tail.t_end_ms,
            )
            return tail, r_tail
        # No spikes: one control period per window, R = the mean of their synchrony.
        off = Setpoint(
            amplitude=0.0,
            frequency_hz=setpoint.frequency_hz,
            pulse_width_us=setpoint.pulse_width_us,
        )
        period = cfg.control_period_ms
        values: list[float] = []
        tail = last
        for _ in range(max(1, round(cfg.tail_ms / period))):
            observed = self.model.step(off, period, self._timeout_s(period))
            tail = self._window(observed)
            self.trace.add_window(tail, None, self._charge(observed))
            values.append(float(tail.fields["synchrony"]))
        r_tail = float(np.clip(np.mean(values), 0.0, 1.0))
        if not math.isfinite(r_tail):
            raise SafetyFaultError(f"Expected a finite tail synchrony, actual {r_tail}")
        return tail, r_tail

    def render(self) -> npt.NDArray[np.uint8] | None:
        """``rgb_array``: an RGB frame (synchrony, weight, amplitude, raster); ``human``: show."""
        if self.render_mode is None:
            return None
        frame, self._figure = render_frame(self.trace, self.n_e or 0, self._figure)
        if self.render_mode == "human":
            import matplotlib.pyplot as plt

            plt.pause(0.001)
            return None
        return np.asarray(frame, dtype=np.uint8)

    def close(self) -> None:
        """Stop stimulation, end the model's session and close any figure (idempotent)."""
        if not self._closed:
            self._closed = True
            try:
                self.model.stop("environment closed")
            finally:
                self.model.close()
        if self._figure is not None:
            import matplotlib.pyplot as plt

            plt.close(self._figure)
            self._figure = None
        self._done = True


def _spikes_of(window: ModelWindow) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int32]]:
    if window.spike_times_ms is None or window.spike_neurons is None:
        return np.zeros(0), np.zeros(0, dtype=np.int32)
    return window.spike_times_ms, window.spike_neurons
