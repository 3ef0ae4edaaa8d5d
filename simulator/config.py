"""Validated parameter set of the FTSTS network (Schmalz & Kumar 2019), with units in the names.

Defaults are the paper's Fig 3 network as released by the authors (see
``docs/simulator.md`` for every value's source). ``NetworkConfig.scaled`` changes the size and keeps
the paper's normalisation ``C = 0.3·N``. The §5 variants of the paper are plain fields:
recurrent E→E/I→I coupling, heterogeneous membrane time constants, stimulus noise, E/I
cross-talk, plastic I→E synapses and the symmetric nearest-spike STDP rule.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from core.errors import ConfigError, did_you_mean

Semantics = Literal["paper", "clean"]
StdpRule = Literal["additive", "symmetric"]

#: Length of the paper's integration chunk; paper semantics advance in whole chunks.
CHUNK_MS = 20.0

#: The released code's quirks that ``paper`` semantics reproduce, each of which can be switched
#: off alone (``paper_quirks``) to measure its effect:
#: ``overwrite`` — simultaneous synaptic jumps onto one target do not add, that step's decay is
#: skipped, and a same-step pre/post pair keeps only the potentiation;
#: ``dt_noise`` — noise increment dt·σ·ξ/√τ_m instead of Euler–Maruyama σ·√(dt/τ_m)·ξ;
#: ``dropped_step`` — one step per 20 ms chunk is computed and thrown away;
#: ``refractory_reset`` — refractory counters restart at 0 every 20 ms chunk.
PAPER_QUIRKS: tuple[str, ...] = ("overwrite", "dt_noise", "dropped_step", "refractory_reset")


@dataclass(frozen=True)
class NetworkConfig:
    """Every parameter of the E–I LIF network with STDP.

    Args:
        n_e: Number of excitatory neurons.
        n_i: Number of inhibitory neurons.
        p_connect: Bernoulli connection probability per ordered pair (E→I and I→E).
        c_factor: Normalisation ``C = c_factor·(n_e + n_i)`` of the E↔I couplings.
        j_e_mv: I→E coupling strength J_E (mV).
        j_i_mv: E→I coupling strength J_I (mV); the effective E→I weight is ``J_I·W``.
        w_ie_init: Initial plastic E→I weight W (dimensionless).
        w_ei: Fixed I→E weight (dimensionless; initial value when I→E is plastic).
        tau_m_ms: Membrane time constant.
        tau_m_spread_ms: Half-width of a per-neuron uniform spread of τ_m (Fig 7 uses 2 ms:
            τ_m ~ U(8, 12) ms); 0 means homogeneous.
        v_rest_mv: Resting potential, also the lower floor of V.
        v_th_mv: Spike threshold.
        v_reset_mv: Reset potential, held during refractoriness.
        refractory_ms: Refractory period.
        mu_e_mv: Constant drive of E cells (suprathreshold: E cells oscillate alone).
        sigma_e_mv: Noise amplitude of E cells.
        mu_i_mv: Constant drive of I cells (subthreshold).
        sigma_i_mv: Noise amplitude of I cells.
        tau_d_ms: Synaptic decay time constant (S).
        tau_r_ms: Synaptic rise time constant (X).
        delay_ms: Synaptic delay, applied when S is read.
        dt_ms: Integration step.
        eta: STDP learning rate η.
        a_ltp: Potentiation factor.
        a_ltd: Depression factor (negative).
        trace_increment: Trace bump A_0 per spike.
        tau_ltp_ms: Decay of the presynaptic (E-spike) trace.
        tau_ltd_ms: Decay of the postsynaptic (I-spike) trace.
        w_min_mv: Lower bound of the effective weight ``J·W`` after depression.
        w_max_mv: Upper bound of the effective weight ``J·W`` after potentiation.
        stdp_rule: ``additive`` (the paper's trace rule) or ``symmetric`` (Fig 12 nearest-spike).
        sym_c_p: Potentiation amplitude of the symmetric rule.
        sym_tau_p_ms: Potentiation time constant of the symmetric rule.
        sym_c_d: Depression amplitude of the symmetric rule.
        sym_tau_d_ms: Depression time constant of the symmetric rule.
        plastic_ie: Make I→E synapses plastic with the anti-Hebbian rule (Fig 11).
        j_ee_mv: Recurrent E→E coupling (Fig 8: 50); 0 disables the projection.
        j_ii_mv: Recurrent I→I coupling (Fig 8: 50); 0 disables the projection.
        p_recurrent: Connection probability of the recurrent projections.
        stim_noise_e_mv: SD of an additive noise on E cells while stimulation is on (the paper's
            released Fig 3 code and Fig 6), in drive units.
        crosstalk_fraction: Fraction of each population that also receives the other
            population's waveform (Fig 9: 0.25).
        plasticity_onset_ms: Model time at which STDP switches on.
        semantics: ``paper`` reproduces the released code's quirks; ``clean`` fixes them.
        paper_quirks: With ``paper`` semantics, the subset of :data:`PAPER_QUIRKS` to reproduce
            (``None`` = all of them); for ablations. Ignored by ``clean`` semantics.
        kop_sample_ms: Sampling interval of the windowed Kuramoto order parameter.
        contacts: Contacts of the stimulating lead: each population is split into this many
            subgroups of consecutive cells (as equal as they divide), one per contact; a
            stimulus may target one contact (:class:`simulator.stimulus.Stimulus`). Figs 10
            and 14 use 4; 1 (every cell near the one contact) is the other figures' lead.
    """

    n_e: int = 1600
    n_i: int = 400
    p_connect: float = 0.1
    c_factor: float = 0.3
    j_e_mv: float = 100.0
    j_i_mv: float = 260.0
    w_ie_init: float = 1.0
    w_ei: float = 1.0
    tau_m_ms: float = 10.0
    tau_m_spread_ms: float = 0.0
    v_rest_mv: float = 0.0
    v_th_mv: float = 20.0
    v_reset_mv: float = 14.0
    refractory_ms: float = 2.0
    mu_e_mv: float = 20.8
    sigma_e_mv: float = 1.0
    mu_i_mv: float = 18.0
    sigma_i_mv: float = 3.0
    tau_d_ms: float = 1.0
    tau_r_ms: float = 1.0
    delay_ms: float = 5.0
    dt_ms: float = 0.1
    eta: float = 0.25
    a_ltp: float = 1.0
    a_ltd: float = -1.1
    trace_increment: float = 0.005
    tau_ltp_ms: float = 20.0
    tau_ltd_ms: float = 22.0
    w_min_mv: float = 10.0
    w_max_mv: float = 290.0
    stdp_rule: StdpRule = "additive"
    sym_c_p: float = 0.038
    sym_tau_p_ms: float = 10.0
    sym_c_d: float = 0.02
    sym_tau_d_ms: float = 25.0
    plastic_ie: bool = False
    j_ee_mv: float = 0.0
    j_ii_mv: float = 0.0
    p_recurrent: float = 0.1
    stim_noise_e_mv: float = 0.0
    crosstalk_fraction: float = 0.0
    plasticity_onset_ms: float = 80.0
    semantics: Semantics = "paper"
    paper_quirks: tuple[str, ...] | None = None
    kop_sample_ms: float = 1.0
    contacts: int = 1

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"Expected a finite {f.name}, actual {value!r}")
        _positive_int("n_e", self.n_e)
        _positive_int("n_i", self.n_i)
        _positive_int("contacts", self.contacts)
        for name in ("p_connect", "p_recurrent", "crosstalk_fraction"):
            _in_range(name, getattr(self, name), 0.0, 1.0)
        for name in (
            "c_factor", "tau_m_ms", "refractory_ms", "tau_d_ms", "tau_r_ms", "delay_ms",
            "dt_ms", "tau_ltp_ms", "tau_ltd_ms", "sym_tau_p_ms", "sym_tau_d_ms", "kop_sample_ms",
        ):  # fmt: skip
            if getattr(self, name) <= 0.0:
                raise ConfigError(f"Expected {name} > 0, actual {getattr(self, name)!r}")
        for name in ("tau_d_ms", "tau_r_ms", "tau_ltp_ms", "tau_ltd_ms"):
            # forward Euler multiplies by 1 − dt/τ per step: no decay at all unless τ > dt
            if getattr(self, name) <= self.dt_ms:
                raise ConfigError(
                    f"Expected {name} > dt_ms={self.dt_ms} (forward Euler decays by 1 − dt/τ "
                    f"per step), actual {getattr(self, name)!r}"
                )
        for name in ("sigma_e_mv", "sigma_i_mv", "stim_noise_e_mv", "tau_m_spread_ms"):
            if getattr(self, name) < 0.0:
                raise ConfigError(f"Expected {name} >= 0, actual {getattr(self, name)!r}")
        if self.tau_m_spread_ms >= self.tau_m_ms:
            raise ConfigError(
                f"Expected tau_m_spread_ms < tau_m_ms ({self.tau_m_ms}), "
                f"actual {self.tau_m_spread_ms!r}"
            )
        if not self.v_rest_mv <= self.v_reset_mv < self.v_th_mv:
            raise ConfigError(
                "Expected v_rest_mv <= v_reset_mv < v_th_mv, actual "
                f"{self.v_rest_mv}, {self.v_reset_mv}, {self.v_th_mv}"
            )
        if not 0.0 < self.w_min_mv < self.w_max_mv:
            raise ConfigError(
                f"Expected 0 < w_min_mv < w_max_mv, actual {self.w_min_mv}, {self.w_max_mv}"
            )
        if self.semantics not in ("paper", "clean"):
            raise ConfigError(f"Expected semantics 'paper' or 'clean', actual {self.semantics!r}")
        if self.paper_quirks is not None:
            unknown = sorted(set(self.paper_quirks) - set(PAPER_QUIRKS))
            if unknown:
                raise ConfigError(
                    f"Expected paper_quirks from {list(PAPER_QUIRKS)}, actual unknown {unknown}"
                )
        if self.stdp_rule not in ("additive", "symmetric"):
            raise ConfigError(
                f"Expected stdp_rule 'additive' or 'symmetric', actual {self.stdp_rule!r}"
            )
        for name in ("delay_ms", "refractory_ms", "kop_sample_ms"):
            steps = getattr(self, name) / self.dt_ms
            if abs(steps - round(steps)) > 1e-9:
                raise ConfigError(
                    f"Expected {name} to be a whole number of dt_ms={self.dt_ms}, "
                    f"actual {getattr(self, name)!r}"
                )
        if self.semantics == "paper":
            steps = CHUNK_MS / self.dt_ms
            if abs(steps - round(steps)) > 1e-9:
                raise ConfigError(
                    f"Expected dt_ms to divide the paper's {CHUNK_MS} ms chunk, "
                    f"actual {self.dt_ms!r}"
                )

    @property
    def n(self) -> int:
        """Total number of neurons."""
        return self.n_e + self.n_i

    @property
    def c_norm(self) -> float:
        """Normalisation constant ``C = c_factor·N`` of the E↔I couplings."""
        return self.c_factor * self.n

    def quirk(self, name: str) -> bool:
        """Whether the released code's quirk ``name`` (see :data:`PAPER_QUIRKS`) is reproduced."""
        if self.semantics != "paper":
            return False
        return self.paper_quirks is None or name in self.paper_quirks

    @property
    def delay_steps(self) -> int:
        """Synaptic delay in integration steps."""
        return round(self.delay_ms / self.dt_ms)

    @property
    def refractory_steps(self) -> int:
        """Refractory clamp in integration steps."""
        return round(self.refractory_ms / self.dt_ms)

    def contact_bounds(self) -> list[list[int]]:
        """Cells of each contact: row 0 E, row 1 I; contact ``g`` is ``row[g]:row[g + 1]``."""
        g = self.contacts
        return [
            [self.n_e * c // g for c in range(g + 1)],
            [self.n_e + self.n_i * c // g for c in range(g + 1)],
        ]

    def scaled(self, n_scale: float) -> NetworkConfig:
        """Return the same network with both populations multiplied by ``n_scale``.

        ``C`` follows automatically (it is ``c_factor·N``).
        """
        if not math.isfinite(n_scale) or n_scale <= 0.0:
            raise ConfigError(f"Expected n_scale > 0, actual {n_scale!r}")
        n_e = max(1, round(self.n_e * n_scale))
        n_i = max(1, round(self.n_i * n_scale))
        return dataclasses.replace(self, n_e=n_e, n_i=n_i)

    def replace(self, **changes: Any) -> NetworkConfig:
        """Return a copy with ``changes`` applied (validated like the original)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            hints = "".join(did_you_mean(name, known) for name in unknown)
            raise ConfigError(
                f"Expected network parameters among {sorted(known)}, actual unknown "
                f"{unknown}.{hints}"
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """All fields as a plain dict (for summaries and recordings)."""
        return dataclasses.asdict(self)


def _positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"Expected {name} to be an integer >= 1, actual {value!r}")


def _in_range(name: str, value: float, lo: float, hi: float) -> None:
    if not lo <= value <= hi:
        raise ConfigError(f"Expected {name} in [{lo}, {hi}], actual {value!r}")
