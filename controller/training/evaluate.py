"""Score a policy bundle against open-loop FTSTS, clinical baselines and no stimulation.

Every method runs the same episode (lead-in, controlled period, stimulation-free tail) on the
same network seeds through the same safety envelope, in the environment used for training:

* ``policy``: the bundle's numpy actor (no torch), one action per control period of the bundle;
* ``ftsts``: the paper's open-loop train (100 mV, 83.33 Hz, 1000 µs phases) from the end of the
  lead-in until the mean E→I weight falls below 75 mV (the latch), then off; 20 ms period;
* ``latched``: a cheaper scripted train found by a grid search of latched constant trains at
  N = 2000 (``bench/scan_latched_trains.py``; docs/rl.md): 110 mV, 180 Hz, 500 µs phases until
  the mean E→I weight falls below 90 mV, then off; 500 ms period, as in the search. The bar a
  learned policy has to clear to be worth its training;
* ``latched-slow``: the best latched *slow* train of a second grid search, run as the emulated
  device delivers it (``bench/scan_latched_slow_trains.py``; docs/rl.md): device units through
  the emulator's tissue map and envelope (its amplitude ramps and pulse-width steps) at a
  100 ms control period (20 ms for an episode that is not whole 100 ms periods),
  :data:`LATCHED_SLOW_SETPOINT_MA` until the mean E→I weight falls below
  :data:`LATCHED_SLOW_LATCH_MV`, then off. The bar for a device policy (whatever the
  evaluated policy's envelope: the device's ramps are part of this train's definition);
* ``ftsts-sensed``, ``adbs-onoff``, ``adbs-single``, ``adbs-dual``, ``adbs-prop``: the clinical
  baselines on measurable observations (:data:`SENSED_METHODS`, built by
  :func:`controller.policies.factory.build_sensed_baseline`); 20 ms period. They calibrate their
  thresholds on the lead-in, so their episodes step the lead-in in 20 ms windows (the policy
  sees every lead-in observation, as it would in ``neuroloop-controller``) and stay off until
  the onset; the network is the same (the simulator's dynamics do not depend on how a run is cut
  into windows) and every metric is measured from the same onset;
* ``off``: no stimulation.

Metrics per run: ``r_tail`` (mean offline Kuramoto R over the tail), ``charge`` (mV·ms delivered
in the controlled period) and ``time_to_desync_s`` (:func:`time_to_desync`).

Time to desynchronise, precisely: the offline R of the E cells on a 1 ms grid is averaged over
a trailing 1 s window (:data:`DESYNC_WINDOW_MS`) whose end steps every 20 ms
(:data:`DESYNC_STEP_MS`); the time is the end of the first window, at or after stimulation
onset (the end of the lead-in), from which on every window's mean is below :data:`DESYNC_R` to
the end of the run, minus the onset, in s (``None`` if the last window is not below). The
window trails, so a network whose R drops at once is reported up to 1 s late: FTSTS, whose R
falls from ≈ 0.72 to ≈ 0.1 within its first 20 ms windows, scores ≈ 0.86 s; differences below
about 1 s are not resolved by this measure.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from controller.envs.config import SimConfig
from controller.envs.ftsts import FTSTSEnv
from controller.policies.bundle import PolicyBundle, load_bundle
from core.errors import ConfigError
from protocol.envelope.config import load_envelope
from protocol.envelope.setpoint import Setpoint
from simulator.latch import Latch, LatchRule
from simulator.synchrony import epoch_mean, order_parameter

FloatArray = npt.NDArray[np.float64]

#: Clinical baselines reading measurable observations only (docs/rl.md, "Clinical baselines").
SENSED_METHODS = ("ftsts-sensed", "adbs-onoff", "adbs-single", "adbs-dual", "adbs-prop")
METHODS = ("policy", "ftsts", *SENSED_METHODS, "latched", "latched-slow", "off")
#: Threshold of the 1 s mean order parameter that counts as desynchronised.
DESYNC_R = 0.2
#: Trailing window of the R mean used for ``time_to_desync_s``, and the step of its end.
DESYNC_WINDOW_MS = 1000.0
DESYNC_STEP_MS = 20.0
#: Open-loop FTSTS of the paper (Fig 3) and its latch.
FTSTS_SETPOINT = Setpoint(amplitude=100.0, frequency_hz=1000.0 / 12.0, pulse_width_us=1000.0)
FTSTS_LATCH_MV = 75.0
#: The grid-searched latched train (``latched``) and its latch.
LATCHED_SETPOINT = Setpoint(amplitude=110.0, frequency_hz=180.0, pulse_width_us=500.0)
LATCHED_LATCH_MV = 90.0
#: ... checked every 500 ms, the control period it was found at (the governor's 50 Hz per period
#: frequency slew then takes 2 s to reach 180 Hz, as in the search).
LATCHED_PERIOD_MS = 500.0
#: The grid-searched latched slow train (``latched-slow``): device units (mA, Hz, µs) and its
#: latch (mV of weight), found on training networks 100-102 by
#: ``bench/scan_latched_slow_trains.py`` (``docs/results/rl/schedule/latched_slow_grid.json``).
LATCHED_SLOW_SETPOINT_MA = Setpoint(amplitude=2.4, frequency_hz=92.0, pulse_width_us=450.0)
LATCHED_SLOW_LATCH_MV = 75.0
#: ... as the emulated device delivers it: its envelope, at the dose schedule's control period.
LATCHED_SLOW_ENVELOPE = "emulator"
LATCHED_SLOW_PERIOD_MS = 100.0
#: Scripted methods: setpoint while on, and the weight below which they stop for good.
SCRIPTED: dict[str, tuple[Setpoint, float]] = {
    "ftsts": (FTSTS_SETPOINT, FTSTS_LATCH_MV),
    "latched": (LATCHED_SETPOINT, LATCHED_LATCH_MV),
    "latched-slow": (LATCHED_SLOW_SETPOINT_MA, LATCHED_SLOW_LATCH_MV),
}
#: Period of the scripted baselines (the paper's 20 ms chunks) ...
BASELINE_PERIOD_MS = 20.0
#: ... but for the grid-searched trains, which run at the period they were found at when the
#: episode is whole periods of it.
SEARCHED_PERIOD_MS = {"latched": LATCHED_PERIOD_MS, "latched-slow": LATCHED_SLOW_PERIOD_MS}
#: Length of the rasters kept for figures (before stimulation and at the end of the tail).
RASTER_MS = 500.0


@dataclass
class RunRecord:
    """One evaluated episode: metrics and the traces the figures need."""

    method: str
    seed: int
    r_tail: float
    charge: float
    time_to_desync_s: float | None
    r_pre: float
    r_controlled: float
    weight_end_mv: float
    stim_off_s: float | None
    mean_setpoint: dict[str, float]
    t_r_s: FloatArray = field(repr=False)
    r_1s: FloatArray = field(repr=False)
    t_window_s: FloatArray = field(repr=False)
    weight_mv: FloatArray = field(repr=False)
    amplitude_mv: FloatArray = field(repr=False)
    frequency_hz: FloatArray = field(repr=False)
    pulse_width_us: FloatArray = field(repr=False)
    raster_pre: tuple[FloatArray, FloatArray] = field(repr=False)
    raster_post: tuple[FloatArray, FloatArray] = field(repr=False)
    #: E cells are ``0 .. n_e - 1`` in the rasters, I cells above (0: unknown).
    n_e: int = 0
    #: Share of the controlled period's windows with stimulation on.
    on_fraction: float = 0.0
    #: Baseline-specific facts (calibration reference and thresholds, probes).
    details: dict[str, Any] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        """The JSON row of ``eval.json``."""
        return {
            "seed": self.seed,
            "r_tail": self.r_tail,
            "charge": self.charge,
            "time_to_desync_s": self.time_to_desync_s,
            "r_pre": self.r_pre,
            "r_controlled": self.r_controlled,
            "weight_end_mv": self.weight_end_mv,
            "stim_off_s": self.stim_off_s,
            "mean_setpoint": self.mean_setpoint,
            "on_fraction": self.on_fraction,
            "details": self.details,
        }


def running_mean(
    t_ms: FloatArray, r: FloatArray, width_ms: float, step_ms: float
) -> tuple[FloatArray, FloatArray]:
    """Trailing ``width_ms`` mean of R (NaN ignored), evaluated every ``step_ms``.

    Returns:
        ``(t_end_ms, mean)``: window end times and means (NaN where the window has no value).
    """
    if t_ms.size == 0:
        return np.zeros(0), np.zeros(0)
    res = float(t_ms[1] - t_ms[0]) if t_ms.size > 1 else 1.0
    valid = np.isfinite(r)
    csum = np.concatenate([[0.0], np.cumsum(np.where(valid, r, 0.0))])
    ccnt = np.concatenate([[0], np.cumsum(valid)])
    width = max(1, round(width_ms / res))
    stride = max(1, round(step_ms / res))
    ends = np.arange(width, t_ms.size + 1, stride)
    total = csum[ends] - csum[ends - width]
    count = ccnt[ends] - ccnt[ends - width]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return t_ms[0] + ends * res, mean


def time_to_desync(
    t_end_ms: FloatArray, mean_r: FloatArray, onset_ms: float, threshold: float = DESYNC_R
) -> float | None:
    """Seconds from ``onset_ms`` until ``mean_r`` drops below ``threshold`` for good.

    Windows without a value (NaN) neither break nor start a desynchronised stretch.

    Returns:
        The delay in s, or ``None`` when the run does not end desynchronised.
    """
    sel = (t_end_ms >= onset_ms) & np.isfinite(mean_r)
    t, m = t_end_ms[sel], mean_r[sel]
    if t.size == 0 or m[-1] >= threshold:
        return None
    above = np.nonzero(m >= threshold)[0]
    first = 0 if above.size == 0 else int(above[-1]) + 1
    return float(t[first] - onset_ms) / 1000.0


def _policy_action(bundle: PolicyBundle, fields: dict[str, float]) -> FloatArray:
    obs = np.array([fields[name] for name in bundle.observation_fields], dtype=np.float64)
    return np.asarray(bundle.actor(obs), dtype=np.float64)


def run_one(
    method: str,
    seed: int,
    sim_config: SimConfig,
    model_params: dict[str, Any],
    bundle_path: str | None,
    train: tuple[Setpoint, float] | None = None,
) -> RunRecord:
    """Run one method on one network seed and measure it.

    Args:
        method: One of :data:`METHODS`.
        seed: Network seed.
        sim_config: Episode timing (the policy's control period; baselines use 20 ms).
        model_params: Network parameters (``n_scale``, ``semantics``).
        bundle_path: Policy bundle directory (``policy`` only).
        train: Setpoint and latch (mV of weight; 0: never) replacing a scripted method's own
            (``ftsts``, ``latched``, ``latched-slow``; for grid searches), in that method's units.
    """
    if method not in METHODS:
        raise ValueError(f"Expected method in {METHODS}, actual {method!r}")
    if train is not None and method not in SCRIPTED:
        raise ValueError(
            f"Expected a scripted method {sorted(SCRIPTED)} with a train, actual {method!r}"
        )
    if train is not None and not (
        len(train) == 2
        and isinstance(train[0], Setpoint)
        and math.isfinite(train[1])
        and train[1] >= 0.0
    ):
        raise ValueError(
            f"Expected a train (Setpoint, latch mV >= 0, finite; 0: never), actual {train!r}"
        )
    cfg = sim_config
    physical = load_envelope(cfg.envelope).domain == "physical"
    if method == "latched-slow":
        # a train the device can deliver, delivered as the emulated device delivers it
        model_params = {**model_params, "device_units": True}
        cfg = dataclasses.replace(cfg, envelope=LATCHED_SLOW_ENVELOPE)
    elif physical and method == "policy":
        # A bundle trained for a device runs in the device's units through the emulator's
        # tissue map (drivers.tissue_backend), on the same network and seeds as the baselines.
        model_params = {**model_params, "device_units": True}
    elif physical:
        # The scripted and clinical baselines are written in model units (mV of drive).
        cfg = dataclasses.replace(cfg, envelope="simulator")
    if method in SENSED_METHODS:
        return _run_sensed(method, seed, cfg, model_params)
    if method != "policy":
        period = BASELINE_PERIOD_MS
        own = SEARCHED_PERIOD_MS.get(method)
        if own is not None and all(
            math.isclose(x / own, round(x / own)) for x in (cfg.onset_ms, cfg.controlled_s * 1000.0)
        ):
            period = own  # else the episode does not fit whole periods of the search's
        cfg = SimConfig(period, cfg.onset_ms, cfg.controlled_s, cfg.tail_s,
                        cfg.envelope, True, cfg.reward)  # fmt: skip
    else:
        cfg = SimConfig(cfg.control_period_ms, cfg.onset_ms, cfg.controlled_s, cfg.tail_s,
                        cfg.envelope, True, cfg.reward)  # fmt: skip
    bundle = load_bundle(bundle_path) if method == "policy" and bundle_path else None
    if method == "policy" and bundle is None:
        raise ValueError("Expected a bundle path for method 'policy', actual none")
    env = FTSTSEnv(cfg, model_params=model_params)
    try:
        _, info = env.reset(seed=seed)
        fields = info["fields"]
        scripted = train if train is not None else SCRIPTED.get(method)  # None: policy, off
        # The paper's latch (the episode starts at the onset, so the latch is armed from t = 0).
        # (a latch at 0 mV never trips: a constant train from the onset to the end of control)
        latch = (
            None if scripted is None else Latch(LatchRule(scripted[1]) if scripted[1] > 0 else None)
        )
        off = Setpoint(amplitude=0.0, frequency_hz=5.0, pulse_width_us=50.0)
        terminal = False
        while not terminal:
            if method == "policy":
                assert bundle is not None
                _, _, terminal, _, info = env.step(
                    _policy_action(bundle, fields).astype(np.float32)
                )
            else:
                on = latch is not None and latch.stimulating(
                    float(info["t_ms"]), fields["weight_mv"]
                )
                sp = scripted[0] if scripted is not None and on else off
                _, _, terminal, _, info = env.step_setpoint(sp)
            fields = info["fields"]
        stim_off_ms = latch.latched_at_ms if latch is not None else None
        return _record(method, seed, env, cfg, info, stim_off_ms)
    finally:
        env.close()


def stepped_lead_in(cfg: SimConfig, period_ms: float = BASELINE_PERIOD_MS) -> SimConfig:
    """The episode of ``cfg`` with its lead-in run as control periods of ``period_ms``.

    ``reset`` then simulates one period, and the rest of the lead-in becomes steps in which the
    policy sees every observation (and must itself stay off until ``cfg.onset_ms``). The model
    time of every window, the tail and the end are those of ``cfg``.
    """
    if cfg.onset_ms <= period_ms:
        return SimConfig(period_ms, cfg.onset_ms, cfg.controlled_s, cfg.tail_s, cfg.envelope,
                         True, cfg.reward)  # fmt: skip
    controlled_s = (cfg.onset_ms - period_ms) / 1000.0 + cfg.controlled_s
    return SimConfig(period_ms, period_ms, controlled_s, cfg.tail_s, cfg.envelope, True,
                     cfg.reward)  # fmt: skip


def _run_sensed(
    method: str, seed: int, sim_config: SimConfig, model_params: dict[str, Any]
) -> RunRecord:
    """One clinical baseline: lead-in stepped for calibration, then the law, then the tail."""
    from controller.policies.factory import build_sensed_baseline

    scored = SimConfig(BASELINE_PERIOD_MS, sim_config.onset_ms, sim_config.controlled_s,
                       sim_config.tail_s, sim_config.envelope, True,
                       sim_config.reward)  # fmt: skip
    run_cfg = stepped_lead_in(scored)
    policy = build_sensed_baseline(method, scored.onset_ms)
    policy.reset()
    env = FTSTSEnv(run_cfg, model_params=model_params)
    try:
        _, info = env.reset(seed=seed)
        missing = [f for f in policy.required_fields if f not in info["fields"]]
        if missing:
            raise ConfigError(
                f"Expected the sensed observation field(s) {missing} for method {method!r}, "
                f"actual fields {sorted(info['fields'])} (a simulator without the sensor?)"
            )
        terminal = False
        while not terminal:
            sp = policy.act(info["fields"], float(info["t_ms"]))
            _, _, terminal, _, info = env.step_setpoint(sp)
        stim_off_ms = getattr(policy, "latched_at_ms", None)
        details: dict[str, Any] = {"feature": policy.required_fields[0],
                                   "reference": getattr(policy, "reference", None)}  # fmt: skip
        thresholds = getattr(policy, "thresholds", None)
        if callable(thresholds):
            details.update(thresholds())
        latch_level = getattr(policy, "latch_level", None)
        if latch_level is not None:
            details["latch_level"] = latch_level
            details["probes"] = list(getattr(policy, "probes", []))
        record = _record(method, seed, env, scored, info, stim_off_ms)
        record.details = details
        return record
    finally:
        env.close()


def _record(
    method: str, seed: int, env: FTSTSEnv, cfg: SimConfig, info: dict[str, Any],
    stim_off_ms: float | None,
) -> RunRecord:  # fmt: skip
    trace = env.trace
    times, neurons = trace.spikes()
    n_e = env.n_e
    if n_e is None:
        raise ConfigError("Expected a model that reports its E population (n_e), actual none")
    end_ms = cfg.episode_ms
    t, r, _ = order_parameter(times, neurons, n_e, end_ms, 1.0)
    t_run, r_run = running_mean(t, r, DESYNC_WINDOW_MS, DESYNC_STEP_MS)
    onset = cfg.onset_ms
    stop_ctrl = onset + cfg.controlled_s * 1000.0
    amp = np.asarray(trace.amplitude_mv)
    transfer = getattr(getattr(env.model, "sim_backend", None), "transfer", None)
    if env.envelope.domain == "physical" and transfer is not None:
        # a policy in device units (mA): its drive through the tissue map, comparable with mV
        amp = amp * 1000.0 * float(transfer.gain_mv_per_ua)
    on = amp > 0
    mean_sp = {
        "amplitude_mv": float(amp[on].mean()) if on.any() else 0.0,
        "frequency_hz": float(np.nanmean(np.asarray(trace.frequency_hz)[on])) if on.any() else 0.0,
        "pulse_width_us": float(np.nanmean(np.asarray(trace.pulse_width_us)[on]))
        if on.any() else 0.0,
    }  # fmt: skip
    t_win = np.asarray(trace.t_ms)
    in_ctrl = (t_win > onset + 1e-6) & (t_win <= stop_ctrl + 1e-6)
    on_fraction = float(on[in_ctrl].mean()) if in_ctrl.any() else 0.0
    pre_sel = (times >= onset - RASTER_MS) & (times < onset)
    post_sel = times >= end_ms - RASTER_MS
    return RunRecord(
        method=method,
        seed=seed,
        r_tail=float(info["r_tail"]),
        charge=float(info["total_charge_mv_ms"]),
        time_to_desync_s=time_to_desync(t_run, r_run, onset),
        r_pre=_finite(epoch_mean(t, r, 100.0, onset)),
        r_controlled=_finite(epoch_mean(t, r, onset, stop_ctrl)),
        weight_end_mv=float(info["weight_end_mv"]),
        stim_off_s=None if stim_off_ms is None else stim_off_ms / 1000.0,
        mean_setpoint=mean_sp,
        t_r_s=t_run / 1000.0,
        r_1s=r_run,
        t_window_s=np.asarray(trace.t_ms) / 1000.0,
        weight_mv=np.asarray(trace.weight_mv),
        amplitude_mv=amp,
        frequency_hz=np.asarray(trace.frequency_hz),
        pulse_width_us=np.asarray(trace.pulse_width_us),
        raster_pre=(times[pre_sel], neurons[pre_sel].astype(np.float64)),
        raster_post=(times[post_sel], neurons[post_sel].astype(np.float64)),
        n_e=int(n_e),
        on_fraction=on_fraction,
    )


def _finite(x: float) -> float:
    return float(x) if math.isfinite(x) else float("nan")


def _spread(values: npt.ArrayLike) -> dict[str, float]:
    x = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(x)), "min": float(x.min()), "max": float(x.max())}


def summarise(records: list[RunRecord], charge_target: float = 0.7) -> dict[str, Any]:
    """Per-method statistics over seeds, and every method relative to open-loop FTSTS.

    Per method: mean, SD, median, min and max of ``r_tail`` and ``charge``, the mean share of
    the controlled period with stimulation on, the median R during the controlled period, and
    :func:`desync_summary`. For every method
    other than ``ftsts`` (when ``ftsts`` ran): ``<method>_vs_ftsts`` (:func:`versus_ftsts`).
    """
    out: dict[str, Any] = {}
    for method in METHODS:
        rows = [r for r in records if r.method == method]
        if not rows:
            continue
        r_tail = np.array([r.r_tail for r in rows])
        charge = np.array([r.charge for r in rows])
        out[method] = {
            "n": len(rows),
            "r_tail_mean": float(r_tail.mean()),
            "r_tail_sd": float(r_tail.std()),
            **{f"r_tail_{k}": v for k, v in _spread(r_tail).items()},
            "charge_mean": float(charge.mean()),
            "charge_sd": float(charge.std()),
            **{f"charge_{k}": v for k, v in _spread(charge).items()},
            "on_fraction_mean": float(np.mean([r.on_fraction for r in rows])),
            "r_controlled_median": float(np.nanmedian([r.r_controlled for r in rows]))
            if any(math.isfinite(r.r_controlled) for r in rows)
            else None,
            **desync_summary([r.time_to_desync_s for r in rows]),
        }
    if "ftsts" in out:
        for method in METHODS:
            if method != "ftsts" and method in out:
                out[f"{method}_vs_ftsts"] = versus_ftsts(records, method, out, charge_target)
    return out


def desync_summary(times_s: list[float | None]) -> dict[str, Any]:
    """Runs that end desynchronised and the spread of their ``time_to_desync_s``.

    Mean, SD, median, min and max are over the runs that desynchronise (``None`` if none do).
    """
    reached = np.array([x for x in times_s if x is not None], dtype=np.float64)
    if not reached.size:
        stats: dict[str, float | None] = dict.fromkeys(("mean", "sd", "median", "min", "max"))
    else:
        stats = {
            "mean": float(reached.mean()),
            "sd": float(reached.std()),
            "median": float(np.median(reached)),
            "min": float(reached.min()),
            "max": float(reached.max()),
        }
    return {
        "desynchronised_runs": int(reached.size),
        **{f"time_to_desync_s_{k}": v for k, v in stats.items()},
    }


def _range(m: dict[str, Any], key: str, fmt: str) -> str:
    if m.get(f"{key}_median") is None:
        return "n/a"
    return (f"{m[f'{key}_median']:{fmt}} [{m[f'{key}_min']:{fmt}}–"
            f"{m[f'{key}_max']:{fmt}}]")  # fmt: skip


def format_table(summary: dict[str, Any]) -> str:
    """The per-method summary as a plain-text table (what ``neuroloop-eval`` prints).

    Columns: runs; tail R mean and median [min–max] over seeds; charge (mean, mV·ms) and its
    share of FTSTS's, seed by seed, as mean and median [min–max]; seeds whose tail R is no worse
    than FTSTS's on the same seed; share of the controlled period stimulating;
    the median R during the controlled period; runs that end desynchronised; time to
    desynchronise, median [min–max] over those runs.
    """
    head = ("method", "runs", "r_tail mean", "r_tail median [min–max]", "charge mV·ms",
            "vs FTSTS mean", "vs FTSTS median [min–max]", "r_tail ≤ FTSTS", "on", "R ctrl",
            "desync.", "time to desync. s: median [min–max]")  # fmt: skip
    rows = [head]
    for method in METHODS:
        m = summary.get(method)
        if m is None:
            continue
        vs = summary.get(f"{method}_vs_ftsts")
        share_mean, share_range, no_worse = ("100%", "—", "—") if method == "ftsts" else (
            "n/a", "n/a", "n/a")  # fmt: skip
        if vs is not None:
            no_worse = f"{vs['seeds_with_r_tail_no_worse']}/{vs['seeds']}"
            if vs.get("charge_fraction_mean") is not None:
                share_mean = f"{vs['charge_fraction_mean']:.0%}"
                share_range = (f"{vs['charge_fraction_median']:.0%} "
                               f"[{vs['charge_fraction_min']:.0%}–"
                               f"{vs['charge_fraction_max']:.0%}]")  # fmt: skip
        ttd = "never" if m["time_to_desync_s_median"] is None else _range(m, "time_to_desync_s",
                                                                            ".2f")  # fmt: skip
        rows.append((
            method, str(m["n"]), f"{m['r_tail_mean']:.4f}", _range(m, "r_tail", ".4f"),
            f"{m['charge_mean']:.0f}", share_mean, share_range, no_worse,
            f"{m.get('on_fraction_mean', float('nan')):.0%}",
            "n/a" if m.get("r_controlled_median") is None else f"{m['r_controlled_median']:.2f}",
            f"{m['desynchronised_runs']}/{m['n']}", ttd,
        ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(
        "vs FTSTS: charge / FTSTS's charge on the same seed; r_tail ≤ FTSTS: seeds no worse than "
        "FTSTS on the same seed; on: share of the controlled period stimulating; R ctrl: median "
        "R during the controlled period"
    )
    lines.append(
        f"time to desync.: from stimulation onset until the trailing {DESYNC_WINDOW_MS / 1000:g} s "
        f"mean of R falls below {DESYNC_R:g} for good (up to 1 s late by construction)"
    )
    return "\n".join(lines)


def versus_ftsts(
    records: list[RunRecord], method: str, means: dict[str, Any], charge_target: float = 0.7
) -> dict[str, Any]:
    """Charge and tail synchrony of ``method`` relative to open-loop FTSTS, seed by seed.

    The target: a mean tail R no worse than FTSTS's with at most ``charge_target`` of its mean
    charge (0.7 for the oracle policy, issue 23's 0.5 for one on measurable observations).

    ``charge_fraction_*`` summarise the per-seed ratio of charges (seeds where FTSTS delivered
    charge); ``seeds_with_r_tail_no_worse`` counts seeds whose tail R is at most FTSTS's on the
    same seed, out of ``seeds`` shared by both.
    """
    own = {r.seed: r for r in records if r.method == method}
    ftsts = {r.seed: r for r in records if r.method == "ftsts"}
    seeds = sorted(set(own) & set(ftsts))
    ratios = [own[s].charge / ftsts[s].charge for s in seeds if ftsts[s].charge > 0]
    keys = ("median", "min", "max")
    spread: dict[str, float | None] = {
        f"charge_fraction_{k}": (_spread(ratios)[k] if ratios else None) for k in keys
    }
    diffs = [own[s].r_tail - ftsts[s].r_tail for s in seeds]
    return {
        "charge_fraction_mean": float(np.mean(ratios)) if ratios else None,
        **spread,
        "r_tail_difference_mean": float(np.mean(diffs)) if diffs else None,
        "seeds": len(seeds),
        "seeds_with_r_tail_no_worse": int(sum(own[s].r_tail <= ftsts[s].r_tail for s in seeds)),
        "target": f"mean r_tail <= FTSTS mean r_tail with <= {charge_target:.0%} of its mean "
        "charge",
        "target_met": bool(
            means[method]["r_tail_mean"] <= means["ftsts"]["r_tail_mean"]
            and means[method]["charge_mean"] <= charge_target * means["ftsts"]["charge_mean"]
        ),
    }


def bundle_sim_config(bundle_path: str | Path, tail_s: float = 5.0) -> SimConfig:
    """The episode timing recorded in a bundle's ``training`` metadata (tail at least 5 s)."""
    bundle = load_bundle(bundle_path)
    meta = dict(bundle.metadata.get("training", {}))
    return SimConfig(
        control_period_ms=float(meta.get("control_period_ms", 20.0)),
        onset_ms=float(meta.get("onset_ms", 2000.0)),
        controlled_s=float(meta.get("controlled_s", 20.0)),
        tail_s=max(tail_s, float(meta.get("tail_s", tail_s))),
        envelope=str(meta.get("envelope", "simulator")),
        observations=str(meta.get("observations", "oracle")),
    )
