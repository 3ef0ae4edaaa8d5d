"""Named open-loop experiments: a network, a pulse train, an onset and a latch, per paper figure.

Each protocol bundles the settings of one experiment of Schmalz & Kumar (2019) §5 (as released by
the authors): the network variant, the stimulation, when it starts, when the latch switches it
off for good, and how long the run lasts. ``neuroloop-sim protocols`` lists them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.errors import ConfigError, did_you_mean
from simulator.config import NetworkConfig, Semantics
from simulator.latch import LatchDirection, LatchRule
from simulator.stimulus import IWaveform, Stimulus

#: The released code's stimulus noise (SD in drive units) on E cells during stimulation, present
#: in the Figs 3/4/6/7 code path. Clean semantics keep it only where it is the experiment (Fig 6).
PAPER_STIM_NOISE_MV = 10.0


@dataclass(frozen=True)
class Experiment:
    """One open-loop experiment.

    Args:
        name: Identifier used on the command line.
        figure: The paper figure it reproduces.
        summary: One line for ``neuroloop-sim protocols``.
        network: Changes to :class:`NetworkConfig` defaults.
        stimulus: The pulse train (``None`` for the no-stimulation control).
        onset_ms: Start of the first stimulated 20 ms window.
        latch_mv: Mean effective E→I weight that switches stimulation off for good.
        latch_direction: ``below`` (desynchronising runs) or ``above`` (synchronising runs).
        latch_on_ie: Also require the mean I→E weight past ``latch_mv`` (Fig 11).
        duration_s: Default run length.
        paper_stim_noise: Whether the released code adds the stimulus noise on E cells.
    """

    name: str
    figure: str
    summary: str
    network: dict[str, Any] = field(default_factory=dict)
    stimulus: Stimulus | None = None
    onset_ms: float = 1980.0
    latch_mv: float | None = 75.0
    latch_direction: LatchDirection = "below"
    latch_on_ie: bool = False
    duration_s: float = 25.0
    paper_stim_noise: bool = True

    def network_config(self, semantics: Semantics = "paper", n_scale: float = 1.0) -> NetworkConfig:
        """The protocol's network in ``semantics``, with both populations scaled by ``n_scale``."""
        changes = dict(self.network)
        if semantics == "paper" and self.paper_stim_noise and "stim_noise_e_mv" not in changes:
            changes["stim_noise_e_mv"] = PAPER_STIM_NOISE_MV
        cfg = NetworkConfig(**changes).replace(semantics=semantics)
        return cfg.scaled(n_scale) if n_scale != 1.0 else cfg

    @property
    def latch_rule(self) -> LatchRule | None:
        """When stimulation stops for good (``None``: it runs to the end)."""
        if self.latch_mv is None:
            return None
        return LatchRule(self.latch_mv, self.latch_direction, self.latch_on_ie)


FTSTS = Stimulus(amplitude_mv=100.0)

#: Figs 10 and 14: the lead's four contacts, each near a quarter of the E and of the I cells,
#: and the recurrent E→E and I→I coupling of Fig 8 (spec §4.1).
_CR_NETWORK: dict[str, Any] = {"contacts": 4, "j_ee_mv": 50.0, "j_ii_mv": 50.0}
#: Fig 14's network: J_I = 175 mV and a symmetric STDP window (τ_LTD = τ_LTP = 20 ms,
#: A_LTD = −1.0, A_LTP = 1.01: slightly LTP-dominated).
_FIG14_NETWORK: dict[str, Any] = {
    **_CR_NETWORK, "j_i_mv": 175.0, "tau_ltp_ms": 20.0, "tau_ltd_ms": 20.0, "a_ltd": -1.0,
    "a_ltp": 1.01,
}  # fmt: skip


def _coordinated_reset() -> tuple[Experiment, ...]:
    """Figs 10 and 14: FTSTS in a coordinated-reset pattern, and CR alone as the control.

    A cycle is four slots of four pulses; in each slot one E and one I subgroup (a contact's)
    get the burst, in an order drawn afresh every cycle. "CR only" gives the I cells the E
    waveform itself (no I-before-E offset).
    """
    def fig10(i_waveform: IWaveform) -> Stimulus:  # x = 7: a pulse every 9 ms, 144 ms cycles
        return Stimulus(100.0, frequency_hz=1000.0 / 9.0, pulse_width_us=1000.0,
                        pattern="coordinated-reset", i_waveform=i_waveform)  # fmt: skip

    def fig14(i_waveform: IWaveform) -> Stimulus:  # x = 3: every 2.5 ms, 40 ms cycles
        return Stimulus(200.0, frequency_hz=1000.0 / 2.5, pulse_width_us=500.0,
                        pattern="coordinated-reset", i_waveform=i_waveform)  # fmt: skip

    return (
        Experiment(
            "fig10-cr-ftsts", "10", "FTSTS in a coordinated-reset pattern: 4 contacts, a "
            "burst of 4 pulses (9 ms apart, 100 mV) per 36 ms slot on one E and one I "
            "subgroup, random order each 144 ms cycle; E→E and I→I coupling, 5 s.",
            network=_CR_NETWORK, stimulus=fig10("mirror"),
            duration_s=5.0, paper_stim_noise=False,
        ),
        Experiment(
            "fig10-cr-only", "10 (CR)", "Coordinated reset alone (Fig 10's control): the same "
            "bursts, I cells given the E waveform (no I-before-E offset), 5 s.",
            network=_CR_NETWORK,
            stimulus=fig10("same"),
            duration_s=5.0, paper_stim_noise=False,
        ),
        Experiment(
            "fig14-cr-ftsts", "14", "FTSTS-CR with a symmetric STDP window (τ_LTD = τ_LTP = "
            "20 ms, J_I = 175 mV): 0.5 ms phases every 2.5 ms at 200 mV, 10 ms slots, 40 ms "
            "cycles, 5 s, latch below 75 mV.",
            network=_FIG14_NETWORK, stimulus=fig14("mirror"),
            duration_s=5.0, paper_stim_noise=False,
        ),
        Experiment(
            "fig14-cr-only", "14 (CR)", "Coordinated reset alone with Fig 14's network and "
            "bursts (I cells given the E waveform), 5 s.",
            network=_FIG14_NETWORK,
            stimulus=fig14("same"),
            duration_s=5.0, paper_stim_noise=False,
        ),
    )  # fmt: skip

EXPERIMENTS: dict[str, Experiment] = {
    p.name: p
    for p in (
        Experiment(
            "none", "3 (control)", "Fig 3 network without stimulation: synchrony persists, E→I "
            "weights potentiate toward the 290 mV bound.", stimulus=None, latch_mv=None,
        ),
        Experiment(
            "ftsts-desync", "3", "Desynchronise the N = 2000 network: 100 mV FTSTS pulses from "
            "1.98 s until mean J_I·W < 75 mV; the asynchronous state outlasts stimulation.",
            stimulus=FTSTS,
        ),
        Experiment(
            "ftsts-sync", "4", "Synchronise a desynchronised network (J_I = 75 mV): swapped "
            "waveforms at 200 mV until mean J_I·W > 125 mV.",
            network={"j_i_mv": 75.0}, stimulus=Stimulus(200.0, polarity="sync"),
            latch_mv=125.0, latch_direction="above",
        ),
        Experiment(
            "ftsts-desync-10k", "5", "Fig 3 protocol at N = 10 000 (C = 3000), 30 s, latch at "
            "25 mV, no stimulus noise.", network={"n_e": 8000, "n_i": 2000}, stimulus=FTSTS,
            latch_mv=25.0, duration_s=30.0, paper_stim_noise=False,
        ),
        Experiment(
            "fig6-stim-noise", "6", "Robustness to stimulus uncertainty: additive noise of SD "
            "10 mV (10 % of the amplitude) on E cells while stimulating.",
            network={"stim_noise_e_mv": PAPER_STIM_NOISE_MV}, stimulus=FTSTS,
        ),
        Experiment(
            "fig7-hetero-tau", "7", "Robustness to heterogeneous cells: τ_m ~ U(8, 12) ms.",
            network={"tau_m_spread_ms": 2.0}, stimulus=FTSTS,
        ),
        Experiment(
            "fig8-recurrent", "8", "Robustness to recurrent E→E and I→I coupling (J = 50 mV, "
            "C = N, p = 0.1, static), 10 s.", network={"j_ee_mv": 50.0, "j_ii_mv": 50.0},
            stimulus=FTSTS, duration_s=10.0, paper_stim_noise=False,
        ),
        Experiment(
            "fig9-crosstalk", "9", "Robustness to E/I cross-talk: 25 % of each population also "
            "receives the other population's waveform, 10 s.",
            network={"crosstalk_fraction": 0.25}, stimulus=FTSTS, duration_s=10.0,
            paper_stim_noise=False,
        ),
        Experiment(
            "fig11-plastic-ie", "11", "E→I and anti-Hebbian I→E plasticity (J_E = J_I = 260 mV); "
            "stops when both mean weights < 75 mV, 5 s.",
            network={"plastic_ie": True, "j_e_mv": 260.0}, stimulus=FTSTS, latch_on_ie=True,
            duration_s=5.0, paper_stim_noise=False,
        ),
        Experiment(
            "fig12-symmetric-stdp", "12A", "Symmetric nearest-spike STDP with the I waveform "
            "delayed 11 ms (200 mV, 24 ms period), 10 s.",
            network={"stdp_rule": "symmetric"},
            stimulus=Stimulus(200.0, frequency_hz=1000.0 / 24.0, ei_offset_ms=11.0),
            duration_s=10.0, paper_stim_noise=False,
        ),
        *_coordinated_reset(),
    )
}  # fmt: skip


#: The network every backend simulates unless told otherwise: the paper's Fig 3 network.
DEFAULT_NETWORK = "ftsts-desync"


def default_network_config(semantics: Semantics = "paper", n_scale: float = 1.0) -> NetworkConfig:
    """The paper's Fig 3 network as closed-loop backends simulate it: no stimulus noise.

    The released code's stimulus noise has a fixed SD whenever any stimulation is on, whatever
    its amplitude; a closed-loop policy could desynchronise with near-zero charge through it.
    """
    cfg = EXPERIMENTS[DEFAULT_NETWORK].network_config(semantics, n_scale)
    return cfg.replace(stim_noise_e_mv=0.0)


def get_experiment(name: str) -> Experiment:
    """Look up a protocol by name, suggesting the closest names on a miss."""
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise ConfigError(
            f"Expected a protocol name from {sorted(EXPERIMENTS)}, actual {name!r}."
            + did_you_mean(name, EXPERIMENTS)
        ) from None
