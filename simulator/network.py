"""The FTSTS network: ``reset(seed)``, then ``advance(stimulus, duration_ms)`` window by window.

This is the one stepping API that the gymnasium environment, the protocol server and the device
emulator share. Each ``advance`` returns a :class:`WindowStats` with the window's observations
(synchrony, voltage statistics, mean plastic weight, rates, χ, delivered charge) and its spikes as
(time, neuron) lists.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from core.errors import ConfigError, NeuroLoopError
from core.threads import AUTO, check_threads
from simulator import aligned, reductions
from simulator.config import CHUNK_MS, NetworkConfig
from simulator.connectivity import (
    Projection,
    bernoulli_projection,
    empty_projection,
    storable_bounds,
)
from simulator.kernel import run_steps
from simulator.kernel_args import (
    Kuramoto,
    NeuronConstants,
    NeuronState,
    NoiseState,
    PlasticityState,
    Recorder,
    SpikeState,
    StdpRule,
    StepInputs,
    Structure,
    Synapses,
)
from simulator.noise import load_state, noise_generators, scratch_words, store_state
from simulator.sensing import SENSED_FIELDS, SensingConfig, Sensor
from simulator.sensing.artefact import active_steps
from simulator.stimulus import PulseTrain, Stimulus
from simulator.thread_choice import ThreadChoice
from simulator.threaded import Threading, plan, run_threaded, threadable
from simulator.window import window_numbers

FloatArray = npt.NDArray[np.float64]
#: Storage type of the neurons' state (V, S, X, the delay line) and per-neuron constants.
STATE_DTYPE = np.float32
StateArray = npt.NDArray[np.float32]

#: Names and order of the scalar observations a window reports.
OBSERVATION_FIELDS: tuple[str, ...] = (
    "synchrony",
    "mean_v_e_mv",
    "sd_v_e_mv",
    "mean_v_i_mv",
    "sd_v_i_mv",
    "weight_mv",
    "rate_e_hz",
    "rate_i_hz",
    "chi",
    "charge_mv_ms",
    # what an implant senses (simulator.sensing, docs/simulator.md#sensing)
    *SENSED_FIELDS,
)


@dataclass
class WindowStats:
    """What one ``advance`` call observed.

    Attributes:
        t_start_ms: Model time at the start of the window.
        t_end_ms: Model time at the end of the window.
        synchrony: Mean causal Kuramoto order parameter R of E cells over the window (0 until
            some E cell has fired twice).
        mean_v_e_mv: Time mean of the E population-mean membrane potential.
        sd_v_e_mv: Temporal SD of the E population-mean membrane potential.
        mean_v_i_mv: Time mean of the I population-mean membrane potential.
        sd_v_i_mv: Temporal SD of the I population-mean membrane potential.
        weight_mv: Mean effective E→I weight ``J_I·W`` at the end of the window.
        weight_ie_mv: Mean effective I→E weight ``J_E·W`` at the end (differs from ``J_E`` only
            when I→E is plastic).
        rate_e_hz: Mean E firing rate in the window.
        rate_i_hz: Mean I firing rate in the window.
        chi: Voltage synchrony χ of E cells over the window.
        charge_mv_ms: Absolute charge delivered in the window (both phases, one waveform).
        pulses: Pulses started in the window.
        stimulating: Whether any stimulation was delivered in the window.
        spike_times_ms: Spike times.
        spike_neurons: Spiking neuron per spike (E: ``0..n_e-1``, I: ``n_e..n-1``).
        wall_s: Wall-clock seconds the window took to simulate.
        lfp_uv: The sensed LFP's samples in the window (µV, at the sensor's
            ``sample_rate_hz``, 1 kHz by default; ``docs/simulator.md#sensing``).
        lfp_beta_uv2: Sensed LFP power in 13–30 Hz over the last second (µV²).
        lfp_band_uv2: Sensed LFP power in the network's band (calibrated centre ± 4 Hz, µV²).
        lfp_peak_hz: Frequency of the sensed spectrum's peak in 5–100 Hz.
        lfp_peak_uv2: Sensed LFP power around that peak (± 4 Hz, µV²).
        units_synchrony: Kuramoto order parameter of the recorded units only.
        units_rate_hz: Mean firing rate of the recorded units in the window.
    """

    t_start_ms: float
    t_end_ms: float
    synchrony: float
    mean_v_e_mv: float
    sd_v_e_mv: float
    mean_v_i_mv: float
    sd_v_i_mv: float
    weight_mv: float
    weight_ie_mv: float
    rate_e_hz: float
    rate_i_hz: float
    chi: float
    charge_mv_ms: float
    pulses: int
    stimulating: bool
    spike_times_ms: FloatArray = field(repr=False)
    spike_neurons: npt.NDArray[np.int32] = field(repr=False)
    wall_s: float = 0.0
    lfp_uv: FloatArray = field(default_factory=lambda: np.zeros(0), repr=False)
    lfp_beta_uv2: float = 0.0
    lfp_band_uv2: float = 0.0
    lfp_peak_hz: float = 0.0
    lfp_peak_uv2: float = 0.0
    units_synchrony: float = 0.0
    units_rate_hz: float = 0.0

    def observation(self) -> dict[str, float]:
        """The scalar observations, keyed by :data:`OBSERVATION_FIELDS`."""
        return {name: float(getattr(self, name)) for name in OBSERVATION_FIELDS}


class SimulationError(NeuroLoopError):
    """The network was used before ``reset`` or produced a non-finite state."""


class Network:
    """The E–I LIF network with STDP, advanced window by window.

    Args:
        config: The network's parameters.
        threads: Threads that integrate it (a speed setting), or ``"auto"``: one or all cores,
            whichever measures faster while it runs.
        sensing: What the implant senses (:class:`~simulator.sensing.SensingConfig`; default:
            its defaults). The sensor draws from its own generator, seeded from the run's seed.
        sense: Whether each window is sensed. ``False`` leaves the sensed fields of
            :class:`WindowStats` NaN and ``lfp_uv`` empty, and never loads the sensor's
            compiled code (4–5 MB of a run's peak memory): for runs that read none of them,
            such as ``neuroloop-sim run``. The dynamics are the same either way.

    Example:
        >>> net = Network(NetworkConfig(n_e=160, n_i=40))
        >>> net.reset(seed=1)
        >>> stats = net.advance(Stimulus(100.0), 20.0)
    """

    def __init__(
        self,
        config: NetworkConfig | None = None,
        threads: int | str = 1,
        sensing: SensingConfig | None = None,
        sense: bool = True,
    ) -> None:
        self.config = config if config is not None else NetworkConfig()
        self.threads = threads
        self.sense = bool(sense)
        self.sensor = Sensor(sensing if sensing is not None else SensingConfig(), self.config)
        self._ready = False
        self._pulses = PulseTrain()
        self.seed: int | None = None
        self.step = 0

    # ------------------------------------------------------------------ set-up
    def set_sensing(self, sensing: SensingConfig) -> None:
        """Sense with ``sensing`` from the next :meth:`reset` on (the dynamics do not change).

        Raises:
            ConfigError: ``sensing`` does not fit this network (e.g. its sample rate).
        """
        self.sensor = Sensor(sensing, self.config)
        self._ready = False

    def reset(self, seed: int) -> None:
        """Draw a new network and initial state from ``seed`` (same seed, identical run).

        Args:
            seed: Seed of the run's ``numpy.random.Generator`` streams (connectivity, membrane
                time constants and noise each get their own child stream).
        """
        cfg = self.config
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"Expected seed to be an integer >= 0, actual {seed!r}")
        self.seed = int(seed)
        # the stimulus's stream is the fourth child: the first three are as before it existed;
        # the sensor's the fifth (children are numbered: the first four are unchanged)
        conn_ss, tau_ss, noise_ss, stim_ss, sense_ss = np.random.SeedSequence(int(seed)).spawn(5)
        conn = np.random.default_rng(conn_ss)
        self._noise_gens = noise_generators(noise_ss)
        self._rng_state = load_state(self._noise_gens)
        self._rng_lent = False  # whether code outside the kernel may hold the generators
        n, n_e, n_i = cfg.n, cfg.n_e, cfg.n_i
        if n_i >= 1 << 16:  # the kernel counts I→E hits per step in uint16
            raise ConfigError(f"Expected fewer than 65536 I cells, actual n_i={n_i}")

        self._ei = bernoulli_projection(
            conn, n_e, n_i, cfg.p_connect, cfg.w_ie_init, dtype=np.float32
        )
        self._plan: Threading | None = None  # the threads' plan: where the synapse rows split
        # pending potentiation (kernel._flush_potentiation): per synapse, per I cell, per E cell
        self._ltp_snap = aligned.zeros(self._ei.n_synapses)
        self._ltp_g = aligned.zeros(n_i)
        self._ltp_a = aligned.zeros(n_e)
        self._ie = bernoulli_projection(conn, n_i, n_e, cfg.p_connect, cfg.w_ei)
        # The kernel's jump loop for static I→E synapses uses the common weight ie_w[0].
        assert cfg.plastic_ie or bool(np.all(self._ie.weight == cfg.w_ei))
        self._ie_mean_static = None if cfg.plastic_ie else _mean_weight_mv(cfg.j_e_mv, self._ie)
        # clip bounds of the plastic weights; the float32 E→I weights clip at the float32
        # values just inside theirs
        self._bounds_ei = storable_bounds(cfg.w_min_mv / cfg.j_i_mv, cfg.w_max_mv / cfg.j_i_mv)
        self._bounds_ie = (cfg.w_min_mv / cfg.j_e_mv, cfg.w_max_mv / cfg.j_e_mv)
        self._has_rec = cfg.j_ee_mv > 0.0 or cfg.j_ii_mv > 0.0
        self._ee: Projection = (
            bernoulli_projection(conn, n_e, n_e, cfg.p_recurrent, 1.0, no_self=True)
            if cfg.j_ee_mv > 0.0
            else empty_projection(n_e, n_e)
        )
        self._ii: Projection = (
            bernoulli_projection(conn, n_i, n_i, cfg.p_recurrent, 1.0, no_self=True)
            if cfg.j_ii_mv > 0.0
            else empty_projection(n_i, n_i)
        )

        if cfg.tau_m_spread_ms > 0.0:
            tau_rng = np.random.default_rng(tau_ss)
            tau = tau_rng.uniform(
                cfg.tau_m_ms - cfg.tau_m_spread_ms, cfg.tau_m_ms + cfg.tau_m_spread_ms, n
            )
        else:
            tau = np.full(n, cfg.tau_m_ms)
        dt = cfg.dt_ms
        self._dt_over_tau = (dt / tau).astype(STATE_DTYPE)
        sigma = np.concatenate([np.full(n_e, cfg.sigma_e_mv), np.full(n_i, cfg.sigma_i_mv)])
        if cfg.quirk("dt_noise"):
            # The released code integrates σ·√τ_m·ξ with plain Euler: increment dt·σ·ξ/√τ_m.
            base_gain = dt * sigma / np.sqrt(tau)
        else:
            # Euler–Maruyama for τ_m·dV = … + σ·√τ_m·dW: increment σ·√(dt/τ_m)·ξ.
            base_gain = sigma * np.sqrt(dt / tau)
        self._gain_off = base_gain.astype(STATE_DTYPE)
        stim_gain = np.zeros(n)
        stim_gain[:n_e] = (dt / tau[:n_e]) * cfg.stim_noise_e_mv
        # Two independent Gaussian terms on E cells add as one of summed variance.
        self._gain_on = np.sqrt(base_gain**2 + stim_gain**2).astype(STATE_DTYPE)
        self._mu = np.concatenate([np.full(n_e, cfg.mu_e_mv), np.full(n_i, cfg.mu_i_mv)])
        self._scale_cross = np.concatenate(
            [np.full(n_e, cfg.j_e_mv / cfg.c_norm), np.full(n_i, cfg.j_i_mv / cfg.c_norm)]
        ).astype(STATE_DTYPE)
        self._scale_rec = np.concatenate(
            [np.full(n_e, cfg.j_ee_mv / n), np.full(n_i, cfg.j_ii_mv / n)]
        ).astype(STATE_DTYPE)
        # Per-neuron weights of the E and I waveforms: each population gets its own waveform,
        # and the cross-talk cells (Fig 9) also get the other population's.
        coef_e = np.zeros(n)
        coef_i = np.zeros(n)
        coef_e[:n_e] = 1.0
        coef_i[n_e:] = 1.0
        coef_i[: round(cfg.crosstalk_fraction * n_e)] = 1.0
        coef_e[n_e : n_e + round(cfg.crosstalk_fraction * n_i)] = 1.0
        self._coef_e = coef_e.astype(STATE_DTYPE)
        self._coef_i = coef_i.astype(STATE_DTYPE)
        self._base = (cfg.v_rest_mv + self._mu).astype(STATE_DTYPE)
        self._v_new = np.zeros(n, dtype=STATE_DTYPE)
        # the kernel's scalar-constant pass needs every per-neuron constant uniform within
        # each population (not with heterogeneous τ_m, cross-talk) and no recurrent input
        # (its drives c·u are exact products only for waveform coefficients of 0 or 1)
        self._uniform = (
            not self._has_rec
            and all(
                _uniform_per_population(a, n_e)
                for a in (self._dt_over_tau, self._base, coef_e, coef_i, self._scale_cross)
            )
            and bool(np.all((coef_e == 0.0) | (coef_e == 1.0)))
            and bool(np.all((coef_i == 0.0) | (coef_i == 1.0)))
        )
        self._uniform_gains = [
            g for g in (self._gain_off, self._gain_on) if _uniform_per_population(g, n_e)
        ]

        d = cfg.delay_steps
        # The neurons' state and constants are float32 (docs/simulator.md#precision): rounding
        # moves V (0–20 mV) by about an ulp (≤ 2·10⁻⁶ mV) a step, ≤ 6·10⁻⁵ of the noise's SD, and
        # the neuron pass runs eight cells per AVX2 instruction instead of four.
        self.v = aligned.full(n, cfg.v_reset_mv, dtype=STATE_DTYPE)
        self._ref = aligned.zeros(n, dtype=np.int32)
        self._x_cross = aligned.zeros(n, dtype=STATE_DTYPE)
        self._s_cross = aligned.zeros(n, dtype=STATE_DTYPE)
        self._x_rec = aligned.zeros(n, dtype=STATE_DTYPE)
        self._s_rec = aligned.zeros(n, dtype=STATE_DTYPE)
        self._xprev_cross = aligned.zeros(n, dtype=STATE_DTYPE)
        self._xprev_rec = aligned.zeros(n, dtype=STATE_DTYPE)
        self._hist_cross = aligned.zeros((d, n), dtype=STATE_DTYPE)
        # The recurrent delay line is only read when a recurrent projection exists.
        self._hist_rec = np.zeros((d, n) if self._has_rec else (d, 1), dtype=STATE_DTYPE)
        self._head = np.zeros(1, dtype=np.int64)
        self._tr_e = aligned.zeros(n_e)
        self._tr_i = aligned.zeros(n_i)
        self._last_spike = aligned.full(n, -1, dtype=np.int64)
        self._prev_spike = aligned.full(n, -1, dtype=np.int64)
        # padded to whole groups of four 64-bit words: the kernel scans it 32 neurons at a time
        self._spiked = aligned.zeros(-(-n // 32) * 32, dtype=np.bool_)
        self._step_spk = aligned.zeros(n, dtype=np.int64)
        # static I→E hits per E cell within one step (an E cell has fewer than 2¹⁶ I inputs)
        self._ie_hits = aligned.zeros(n_e, dtype=np.uint16)
        self._kop_z = (np.ones(n_e), np.zeros(n_e))
        self._kop_r = (np.ones(n_e), np.zeros(n_e))
        self._xi_row = aligned.zeros((1, n), dtype=np.float32)
        self._rng_words = np.empty(scratch_words(n), dtype=np.uint64)
        self._spk_step = np.empty(0, dtype=np.int64)
        self._spk_idx = np.empty(0, dtype=np.int32)
        self._group_kernel_arguments()
        self._pulses.reset(np.random.default_rng(stim_ss), cfg.contacts)
        if self.sense:
            self.sensor.reset(sense_ss)
        self.step = 0
        self._ready = True

    def _group_kernel_arguments(self) -> None:
        """The kernel's arguments that stay the same object from call to call."""
        cfg = self.config
        f32 = STATE_DTYPE
        self._structure = Structure(
            n_e=cfg.n_e, overwrite=cfg.quirk("overwrite"), has_rec=self._has_rec,
            plastic_ie=cfg.plastic_ie, rule_sym=cfg.stdp_rule == "symmetric",
        )  # fmt: skip
        self._state = NeuronState(
            v=self.v, ref=self._ref, x_cross=self._x_cross, s_cross=self._s_cross,
            x_rec=self._x_rec, s_rec=self._s_rec, xprev_cross=self._xprev_cross,
            xprev_rec=self._xprev_rec, hist_cross=self._hist_cross, hist_rec=self._hist_rec,
            head=self._head, v_new=self._v_new,
        )  # fmt: skip
        # the neuron pass's scalars, typed as the state they combine with
        self._constants = NeuronConstants(
            dt_over_tau=self._dt_over_tau, base=self._base, coef_e=self._coef_e,
            coef_i=self._coef_i, scale_cross=self._scale_cross, scale_rec=self._scale_rec,
            v_rest=f32(cfg.v_rest_mv), v_th=f32(cfg.v_th_mv), v_reset=f32(cfg.v_reset_mv),
            ref_steps=np.int32(cfg.refractory_steps), syn_d=f32(cfg.dt_ms / cfg.tau_d_ms),
            x_decay=f32(1.0 - cfg.dt_ms / cfg.tau_r_ms),
            contact_cells=np.array(cfg.contact_bounds(), dtype=np.int64),
        )  # fmt: skip
        lo_ei, hi_ei = self._bounds_ei
        lo_ie, hi_ie = self._bounds_ie
        self._rule = StdpRule(
            tr_e_decay=1.0 - cfg.dt_ms / cfg.tau_ltp_ms,
            tr_i_decay=1.0 - cfg.dt_ms / cfg.tau_ltd_ms, a0=float(cfg.trace_increment),
            eta_ltd=cfg.eta * cfg.a_ltd, eta_ltp=cfg.eta * cfg.a_ltp,
            w_lo_ei=lo_ei, w_hi_ei=hi_ei, w_lo_ie=lo_ie, w_hi_ie=hi_ie,
            c_p=float(cfg.sym_c_p), k_p=cfg.dt_ms / cfg.sym_tau_p_ms, c_d=float(cfg.sym_c_d),
            k_d=cfg.dt_ms / cfg.sym_tau_d_ms,
        )  # fmt: skip

    @property
    def threads(self) -> int | str:
        """Threads that integrate the network (a speed setting: every count, the same bits).

        ``"auto"``: each kernel call runs on one thread or on all the process's cores, whichever
        has been measured faster in this run (:class:`simulator.thread_choice.ThreadChoice`).
        The variants with serial loops of their own (Figs 8, 11, 12) run on one thread
        whatever this says (:func:`simulator.threaded.threadable`).
        """
        return "auto" if self._choice is not None else self._threads

    @threads.setter
    def threads(self, value: int | str) -> None:
        checked = check_threads(value)
        self._choice: ThreadChoice | None = None
        if checked == AUTO:
            self._choice = ThreadChoice()
            self._threads = 1
        else:
            self._threads = int(checked)
        self._plan = None

    # ------------------------------------------------------------------ properties
    @property
    def t_ms(self) -> float:
        """Current model time (labelled time in paper semantics)."""
        return self.step * self.config.dt_ms

    @property
    def weight_mv(self) -> float:
        """Mean effective E→I weight ``J_I·W`` (mV)."""
        self._require_ready()
        return _mean_weight_mv(self.config.j_i_mv, self._ei)

    def _weight_ie_mv(self) -> float:
        """Mean effective I→E weight; static I→E weights are averaged once, in reset."""
        if self._ie_mean_static is not None:
            return self._ie_mean_static
        return _mean_weight_mv(self.config.j_e_mv, self._ie)

    @property
    def e_to_i_weights(self) -> FloatArray:
        """The plastic E→I weights W (dimensionless), one per synapse in forward order (a copy)."""
        self._require_ready()
        return self._ei.forward_weights()

    def _require_ready(self) -> None:
        if not self._ready:
            raise SimulationError("Network.reset(seed) must be called before using the network")

    # ------------------------------------------------------------------ stepping
    def advance(self, stimulus: Stimulus | None, duration_ms: float) -> WindowStats:
        """Integrate the network for ``duration_ms`` under ``stimulus``.

        Args:
            stimulus: Pulse-train setting held for the whole window; ``None`` or zero amplitude
                means no stimulation (a pulse already running still completes).
            duration_ms: Window length. Paper semantics advance in the paper's 20 ms chunks,
                so it must be a multiple of 20 ms there; clean semantics take any multiple of
                ``dt_ms``.

        Returns:
            The window's observations and spikes.
        """
        self._require_ready()
        cfg = self.config
        if not math.isfinite(duration_ms) or duration_ms <= 0.0:
            raise ConfigError(f"Expected duration_ms > 0, actual {duration_ms!r}")
        chunk_steps = round(CHUNK_MS / cfg.dt_ms)
        total_steps = duration_ms / cfg.dt_ms
        if abs(total_steps - round(total_steps)) > 1e-6:
            raise ConfigError(
                f"Expected duration_ms to be a multiple of dt_ms={cfg.dt_ms}, actual {duration_ms}"
            )
        total = round(total_steps)
        paper = cfg.semantics == "paper"
        if paper and (total % chunk_steps != 0 or self.step % chunk_steps != 0):
            raise ConfigError(
                f"Expected duration_ms to be a multiple of {CHUNK_MS} ms in paper semantics "
                f"(the released code integrates in {CHUNK_MS} ms chunks), actual {duration_ms}"
            )
        # The kernel advances the noise generators' own state words. Once the generators have
        # been handed out (``_noise``), read them now (whatever drew from them since the last
        # window) and write them back however this window ends; until then the words are the
        # only copy, and ``_noise`` writes them into the generators when asked for them.
        if not self._rng_lent:
            return self._advance(stimulus, duration_ms, total, chunk_steps)
        self._rng_state = load_state(self._noise_gens)
        try:
            return self._advance(stimulus, duration_ms, total, chunk_steps)
        finally:
            store_state(self._noise_gens, self._rng_state)

    @property
    def _noise(self) -> tuple[np.random.Generator, ...]:
        """The run's noise generators (SFC64), in the state the kernel's draws left them.

        From the first access on, every window reads the generators' state before it runs and
        writes it back after, so that draws by the holder and by the kernel interleave as one
        stream.
        """
        self._require_ready()
        if not self._rng_lent:
            store_state(self._noise_gens, self._rng_state)
            self._rng_lent = True
        return self._noise_gens

    def _advance(
        self,
        stimulus: Stimulus | None,
        duration_ms: float,
        total: int,
        chunk_steps: int,
    ) -> WindowStats:
        wall0 = time.perf_counter()
        t_start = self.t_ms
        cfg = self.config
        dropped = cfg.quirk("dropped_step")
        n_e = cfg.n_e
        cap = max(1024, total * cfg.n // 8)
        if self._spk_step.shape[0] < cap:
            self._spk_step = np.empty(cap, dtype=np.int64)
            self._spk_idx = np.empty(cap, dtype=np.int32)
        spk_step, spk_idx = self._spk_step, self._spk_idx
        cap = spk_step.shape[0]
        n_spk = np.zeros(1, dtype=np.int64)
        pop_e = np.empty(total)
        pop_i = np.empty(total)
        sum_v = aligned.zeros(n_e)
        sumsq_v = aligned.zeros(n_e)
        kop_acc = np.zeros(2)
        s_ie = np.empty(total)
        s_ee = np.zeros(total)
        drive_e = np.zeros(total)  # delivered drive per step, summed over contacts (sensor)
        active = np.zeros(total, dtype=np.bool_)  # whether a pulse delivers drive (blanking)
        kop_every = round(cfg.kop_sample_ms / cfg.dt_ms)
        charge = 0.0
        pulses = 0
        stimulating = False
        n_done = 0
        while n_done < total:
            labelled = min(chunk_steps, total - n_done)
            # Paper semantics: the released code keeps 199 of every 200 steps (the last step of
            # each 20 ms chunk is computed and thrown away) and restarts refractoriness at 0.
            steps = labelled - 1 if dropped else labelled
            if cfg.quirk("refractory_reset"):
                self._ref[:] = 0
            t0 = self.step * cfg.dt_ms
            u_e, u_i, q, started = self._pulses.drive(stimulus, t0, steps, cfg.dt_ms)
            # the kernel takes a drive per step and contact
            u_e, u_i = u_e.reshape(steps, -1), u_i.reshape(steps, -1)
            if q > 0.0:
                drive_e[n_done : n_done + steps] = u_e.sum(axis=1)
                active[n_done : n_done + steps] = active_steps(u_e, u_i)
            on = stimulus is not None and stimulus.is_on
            charge += q
            pulses += started
            stimulating = stimulating or q > 0.0
            gain = self._gain_on if on else self._gain_off
            plast_on = t0 >= cfg.plasticity_onset_ms - 1e-9
            self._run(
                steps, u_e, u_i, gain, None, plast_on, spk_step, spk_idx, n_spk,
                pop_e[n_done:], pop_i[n_done:], sum_v, sumsq_v, kop_every, kop_acc,
                s_ie[n_done:], s_ee[n_done:],
            )  # fmt: skip
            if dropped:
                pop_e[n_done + steps] = pop_e[n_done + steps - 1]
                pop_i[n_done + steps] = pop_i[n_done + steps - 1]
                s_ie[n_done + steps] = s_ie[n_done + steps - 1]
                s_ee[n_done + steps] = s_ee[n_done + steps - 1]
            self.step += labelled
            n_done += labelled
        if n_spk[0] > cap:
            raise SimulationError(f"Spike buffer overflow: {n_spk[0]} spikes > capacity {cap}")
        ns = int(n_spk[0])
        (finite, spike_times, spike_neurons, n_e_spikes, chi, mean_e, sd_e, mean_i, sd_i,
         mean_w) = window_numbers(
            self.v, spk_step, spk_idx, ns, cfg.dt_ms, n_e, pop_e, pop_i, chunk_steps, dropped,
            sum_v, sumsq_v, self._ei.weight,
        )  # fmt: skip
        if not finite:
            raise SimulationError("Non-finite membrane potential: the integration diverged")
        dur_s = duration_ms / 1000.0
        if self.sense:
            sensed = self.sensor.window(
                t_start, self.t_ms, s_ie, s_ee, drive_e, active, spike_times, spike_neurons
            )
            lfp_uv = self.sensor.last_samples_uv
        else:
            sensed = dict.fromkeys(SENSED_FIELDS, math.nan)
            lfp_uv = np.zeros(0)
        return WindowStats(
            t_start_ms=t_start,
            t_end_ms=self.t_ms,
            synchrony=float(kop_acc[0] / kop_acc[1]) if kop_acc[1] > 0 else 0.0,
            mean_v_e_mv=mean_e,
            sd_v_e_mv=sd_e,
            mean_v_i_mv=mean_i,
            sd_v_i_mv=sd_i,
            weight_mv=float(cfg.j_i_mv * mean_w) if self._ei.n_synapses else 0.0,
            weight_ie_mv=self._weight_ie_mv(),
            rate_e_hz=n_e_spikes / n_e / dur_s,
            rate_i_hz=(ns - n_e_spikes) / cfg.n_i / dur_s,
            chi=chi,
            charge_mv_ms=charge,
            pulses=pulses,
            stimulating=stimulating,
            spike_times_ms=spike_times,
            spike_neurons=spike_neurons,
            wall_s=time.perf_counter() - wall0,
            lfp_uv=lfp_uv,
            **sensed,
        )

    def integrate_explicit(
        self,
        u_e: FloatArray,
        u_i: FloatArray,
        xi: npt.NDArray[np.float32],
        plast_on: bool,
        noise_gain: FloatArray | None = None,
    ) -> npt.NDArray[np.int32]:
        """Integrate ``len(u_e)`` steps with explicit drive and noise (low level).

        No chunking, no paper-mode step dropping, no pulse train: the kernel as it is. The
        reference tests use it to compare the kernel with :mod:`simulator.reference`.

        Args:
            u_e: Step-averaged drive of E cells, one value per step.
            u_i: Step-averaged drive of I cells, one value per step.
            xi: Standard-normal draws, shape ``(steps, n)``.
            plast_on: Whether STDP is active.
            noise_gain: Per-neuron noise scale (default: the no-stimulation gain), used in float32.

        Returns:
            Indices of the neurons that spiked, in order.
        """
        self._require_ready()
        steps = u_e.shape[0]
        cap = steps * self.config.n + 1
        # the same drive on every contact's cells
        contacts = self.config.contacts
        u_e = np.repeat(np.asarray(u_e, dtype=np.float64).reshape(steps, 1), contacts, axis=1)
        u_i = np.repeat(np.asarray(u_i, dtype=np.float64).reshape(steps, 1), contacts, axis=1)
        spk_step = np.empty(cap, dtype=np.int64)
        spk_idx = np.empty(cap, dtype=np.int32)
        n_spk = np.zeros(1, dtype=np.int64)
        gain = (
            self._gain_off
            if noise_gain is None
            else np.ascontiguousarray(noise_gain, dtype=STATE_DTYPE)
        )
        self._run(steps, np.ascontiguousarray(u_e), np.ascontiguousarray(u_i), gain,
                  np.ascontiguousarray(xi, dtype=np.float32), plast_on, spk_step, spk_idx, n_spk,
                  np.empty(steps), np.empty(steps), np.zeros(self.config.n_e),
                  np.zeros(self.config.n_e), round(self.config.kop_sample_ms / self.config.dt_ms),
                  np.zeros(2), np.empty(steps), np.zeros(steps))  # fmt: skip
        self.step += steps
        return spk_idx[: int(n_spk[0])].copy()

    def _scalar_pass(self, gain: StateArray) -> bool:
        """Whether the kernel may run its pass with per-population scalar constants."""
        if not self._uniform:
            return False
        if any(gain is g for g in self._uniform_gains):
            return True
        return _uniform_per_population(gain, self.config.n_e)

    def _run(
        self,
        steps: int,
        u_e: FloatArray,
        u_i: FloatArray,
        gain: StateArray,
        xi: npt.NDArray[np.float32] | None,
        plast_on: bool,
        spk_step: npt.NDArray[np.int64],
        spk_idx: npt.NDArray[np.int32],
        n_spk: npt.NDArray[np.int64],
        pop_e: FloatArray,
        pop_i: FloatArray,
        sum_v: FloatArray,
        sumsq_v: FloatArray,
        kop_every: int,
        kop_acc: FloatArray,
        s_ie: FloatArray,
        s_ee: FloatArray,
    ) -> None:
        cfg = self.config
        args = (
            StepInputs(
                n_steps=steps, step0=self.step, plast_on=plast_on,
                uniform=self._scalar_pass(gain), u_e=u_e, u_i=u_i, noise_gain=gain,
                gen_noise=xi is None, xi=self._xi_row if xi is None else xi,
            ),
            self._structure, self._state, self._constants,
            SpikeState(
                last_spike=self._last_spike, prev_spike=self._prev_spike, spiked=self._spiked,
                # a view made here: it survives copy.deepcopy
                spiked_words=self._spiked.view(np.uint64), step_spk=self._step_spk,
                ie_hits=self._ie_hits,
            ),
            PlasticityState(
                tr_e=self._tr_e, tr_i=self._tr_i, ltp_snap=self._ltp_snap, ltp_g=self._ltp_g,
                ltp_a=self._ltp_a,
            ),
            self._rule, Synapses(ei=self._ei, ie=self._ie, ee=self._ee, ii=self._ii),
            NoiseState(rng_state=self._rng_state, rng_words=self._rng_words),
            Kuramoto(
                every=kop_every, z_re=self._kop_z[0], z_im=self._kop_z[1], r_re=self._kop_r[0],
                r_im=self._kop_r[1],
            ),
            Recorder(
                spk_step=spk_step, spk_idx=spk_idx, n_spk=n_spk, pop_mean_e=pop_e,
                pop_mean_i=pop_i, sum_v_e=sum_v, sumsq_v_e=sumsq_v, kop_acc=kop_acc,
                s_ie_e=s_ie, s_ee_e=s_ee,
            ),
        )  # fmt: skip
        splits = threadable(self._structure, xi is not None, cfg.delay_steps)
        threads = self._threads
        if self._choice is not None:
            threads = self._choice.next() if splits else 1
        if threads > 1 and splits and (self._plan is None or self._plan.n_threads != threads):
            self._plan = plan(cfg.n, cfg.n_e, threads, cfg.delay_steps, self._ei, self._ie)
        wall0 = time.perf_counter()
        if threads == 1 or not splits or self._plan is None:
            run_steps(*args)
        else:
            run_threaded(self._plan, args)
        if self._choice is not None and splits:
            self._choice.record(threads, steps, time.perf_counter() - wall0)


def _mean_weight_mv(j_mv: float, proj: Projection) -> float:
    """``J·mean(W)`` of a projection (mV); 0 without synapses.

    NumPy's pairwise tree summed in float64: bit for bit ``np.mean`` for float64 weights; the
    float32 E→I weights are summed in double (``np.mean`` would accumulate them in float32).
    """
    return float(j_mv * reductions.mean(proj.weight)) if proj.n_synapses else 0.0


def _uniform_per_population(values: npt.NDArray[np.floating[Any]], n_e: int) -> bool:
    """Whether ``values`` is constant over the E cells ``[:n_e]`` and over the I cells."""
    return bool(np.all(values[:n_e] == values[0]) and np.all(values[n_e:] == values[n_e]))
