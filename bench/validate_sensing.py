"""Does what the implant senses track the network's synchrony and E→I weight? Prints JSON.

Spec decision D8 (``docs/simulator.md#sensing``): before a controller uses the sensed
features, show that they follow the unobservable truth. Three 25 s runs of the N = 2000 Fig 3
network (default sensor) with the paper's protocols: FTSTS desynchronising (100 mV pulses from
1.98 s until the mean E→I weight falls below 75 mV), FTSTS synchronising (Fig 4: J_I = 75 mV,
200 mV swapped pulses until the weight exceeds 125 mV) and no stimulation. Per 20 ms window it
keeps the kernel's Kuramoto R of all E cells, the mean E→I weight and the six sensed features.

The spectral features describe the last second, so R, the units' R and the rates are averaged
over the same trailing second before they are compared. Reported per run and pooled: Spearman
rank correlations of log LFP band power, log beta power and the units' R with R and with the
weight, over every window after the first 2 s and over the stimulation-free ones only (where
the pulses' evoked 83 Hz response and their artefact do not enter). A PNG shows the traces.

    python bench/validate_sensing.py [--seed 1] [--duration-s 25] [--n-scale 1]
        [--json docs/results/sensing_validation.json]
        [--figure docs/results/figures/sensing_validation.png]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator.config import CHUNK_MS  # noqa: E402
from simulator.experiments import EXPERIMENTS  # noqa: E402
from simulator.latch import Latch  # noqa: E402
from simulator.network import Network  # noqa: E402
from simulator.sensing import SENSED_FIELDS  # noqa: E402

F64 = npt.NDArray[np.float64]
RUNS = ("ftsts-desync", "ftsts-sync", "none")
TRUTH = ("synchrony", "weight_mv")
#: Windows in the spectral features' one second
TRAILING = 50
#: Comparison starts after the lead-in (the first spectrum is full at 1 s; the band is fixed at 2 s)
SKIP_MS = 2000.0


def _run(name: str, seed: int, duration_s: float, n_scale: float) -> dict[str, Any]:
    """One protocol run; per-window truth, sensed features and whether it was stimulated."""
    protocol = EXPERIMENTS[name]
    cfg = protocol.network_config("paper", n_scale)
    net = Network(cfg)
    net.reset(seed)
    latch = Latch(protocol.latch_rule, protocol.onset_ms)
    n_windows = round(duration_s * 1000.0 / CHUNK_MS)
    rows: dict[str, list[float]] = {k: [] for k in (*TRUTH, *SENSED_FIELDS, "t_ms", "stim")}
    weight, weight_ie = net.weight_mv, cfg.j_e_mv * cfg.w_ei
    sense_s = 0.0
    wall0 = time.perf_counter()
    window = net.sensor.window

    def timed(*args: Any) -> dict[str, float]:
        nonlocal sense_s
        t = time.perf_counter()
        out = window(*args)
        sense_s += time.perf_counter() - t
        return out

    net.sensor.window = timed  # type: ignore[method-assign]
    for w in range(n_windows):
        on = protocol.stimulus is not None and latch.stimulating(w * CHUNK_MS, weight, weight_ie)
        stats = net.advance(protocol.stimulus if on else None, CHUNK_MS)
        weight, weight_ie = stats.weight_mv, stats.weight_ie_mv
        obs = stats.observation()
        for k in (*TRUTH, *SENSED_FIELDS):
            rows[k].append(obs[k])
        rows["t_ms"].append(stats.t_end_ms)
        rows["stim"].append(float(on))
    wall = time.perf_counter() - wall0
    return {
        "protocol": name,
        "n": cfg.n,
        "latch_s": None if latch.latched_at_ms is None else latch.latched_at_ms / 1000.0,
        "wall_s": wall,
        "sensor_ms_per_window": 1000.0 * sense_s / n_windows,
        "band_centre_hz": net.sensor.centre_hz,
        "traces": {k: np.asarray(v) for k, v in rows.items()},
    }


def _trailing(x: F64, n: int = TRAILING) -> F64:
    """Mean over the last ``n`` windows (fewer at the start)."""
    c = np.cumsum(np.concatenate([[0.0], x]))
    idx = np.arange(1, x.shape[0] + 1)
    lo = np.maximum(0, idx - n)
    out: F64 = (c[idx] - c[lo]) / (idx - lo)
    return out


def _spearman(a: F64, b: F64) -> float | None:
    if a.shape[0] < 10 or np.ptp(a) == 0.0 or np.ptp(b) == 0.0:
        return None
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def _compared(traces: dict[str, F64]) -> dict[str, F64]:
    """The series compared: truth and units averaged over the spectra's trailing second."""
    return {
        "R (1 s)": _trailing(traces["synchrony"]),
        "weight_mv": traces["weight_mv"],
        "log10 lfp_band_uv2": np.log10(traces["lfp_band_uv2"]),
        "log10 lfp_beta_uv2": np.log10(traces["lfp_beta_uv2"]),
        "log10 lfp_peak_uv2": np.log10(traces["lfp_peak_uv2"]),
        "units_synchrony (1 s)": _trailing(traces["units_synchrony"]),
    }


def _correlations(series: dict[str, F64], mask: npt.NDArray[np.bool_]) -> dict[str, Any]:
    out: dict[str, Any] = {"windows": int(mask.sum())}
    for feat in ("log10 lfp_band_uv2", "log10 lfp_beta_uv2", "log10 lfp_peak_uv2",
                 "units_synchrony (1 s)"):  # fmt: skip
        out[feat] = {
            truth: _spearman(series[feat][mask], series[truth][mask])
            for truth in ("R (1 s)", "weight_mv")
        }
    return out


def _masks(traces: dict[str, F64]) -> dict[str, npt.NDArray[np.bool_]]:
    late = traces["t_ms"] > SKIP_MS
    # stimulation-free: no pulse in the spectra's trailing second
    recent = _trailing(traces["stim"]) > 0.0
    return {"all": late, "stimulation_free": late & ~recent}


def _figure(runs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, len(runs), figsize=(5 * len(runs), 10), sharex=True)
    for col, run in enumerate(runs):
        tr = run["traces"]
        t = tr["t_ms"] / 1000.0
        ser = _compared(tr)
        stim = tr["stim"] > 0
        ax = axes[0, col]
        ax.plot(t, ser["R (1 s)"], label="R, all 1600 E cells (1 s mean)")
        ax.plot(t, ser["units_synchrony (1 s)"], label="units' R, 16 cells (1 s mean)")
        ax.set_ylim(0, 1.02)
        ax.set_title(run["protocol"])
        ax.legend(fontsize=7, loc="upper right")
        ax = axes[1, col]
        ax.plot(t, tr["weight_mv"], color="k")
        ax.set_ylabel("mean J_I·W (mV)")
        ax = axes[2, col]
        ax.semilogy(t, tr["lfp_band_uv2"], label="network band (µV²)")
        ax.semilogy(t, tr["lfp_beta_uv2"], label="13–30 Hz (µV²)")
        ax.semilogy(t, tr["lfp_peak_uv2"], label="around the peak (µV²)", alpha=0.6)
        ax.set_ylim(1e-3, 10.0)
        ax.legend(fontsize=7, loc="upper right")
        ax = axes[3, col]
        ax.plot(t, tr["lfp_peak_hz"], ".", ms=2, label="tracked peak")
        if run["band_centre_hz"] is not None:
            ax.axhline(run["band_centre_hz"], color="k", lw=0.8, ls="--",
                       label="band centre (fixed at 2 s)")  # fmt: skip
        ax.set_ylim(0, 105)
        ax.legend(fontsize=7, loc="upper right")
        ax.set_ylabel("LFP peak (Hz)")
        ax.set_xlabel("time (s)")
        for row in range(4):
            axes[row, col].fill_between(t, 0, 1, where=stim, color="orange", alpha=0.15,
                                        transform=axes[row, col].get_xaxis_transform())  # fmt: skip
    axes[0, 0].set_ylabel("Kuramoto R")
    fig.suptitle("Sensed features vs the network's truth (shaded: stimulation on)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """Run the three protocols, print the correlations as JSON, write JSON and figure."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1, help="network seed (default 1)")
    parser.add_argument("--duration-s", type=float, default=25.0, help="run length (25)")
    parser.add_argument("--n-scale", type=float, default=1.0, help="size vs N = 2000 (1)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--figure", type=Path, help="write the traces' PNG here")
    args = parser.parse_args(argv)
    if not args.duration_s > 2.0:
        parser.error(f"--duration-s expected a number > 2 (the lead-in), actual {args.duration_s}")
    if not args.n_scale > 0.0:
        parser.error(f"--n-scale expected a number > 0, actual {args.n_scale}")
    runs = [_run(name, args.seed, args.duration_s, args.n_scale) for name in RUNS]
    report: dict[str, Any] = {
        "command": "python bench/validate_sensing.py " + " ".join(argv or sys.argv[1:]),
        "seed": args.seed,
        "duration_s": args.duration_s,
        "n": runs[0]["n"],
        "compared_after_ms": SKIP_MS,
        "correlation": "Spearman rank, per 20 ms window; R and units' R averaged over the "
        "trailing 1 s the spectra cover",
        "runs": {},
    }
    pooled = {k: np.concatenate([_compared(r["traces"])[k] for r in runs])
              for k in _compared(runs[0]["traces"])}  # fmt: skip
    pooled_masks = {m: np.concatenate([_masks(r["traces"])[m] for r in runs])
                    for m in ("all", "stimulation_free")}  # fmt: skip
    for run in runs:
        tr = run["traces"]
        ser = _compared(tr)
        late = tr["t_ms"] > tr["t_ms"][-1] - 5000.0
        report["runs"][run["protocol"]] = {
            "latch_s": run["latch_s"],
            "band_centre_hz": run["band_centre_hz"],
            "wall_s": round(run["wall_s"], 2),
            "sensor_ms_per_window": round(run["sensor_ms_per_window"], 4),
            "last_5s_mean": {k: float(np.mean(tr[k][late])) for k in (*TRUTH, *SENSED_FIELDS)},
            "correlation": {m: _correlations(ser, mask) for m, mask in _masks(tr).items()},
        }
    report["pooled"] = {m: _correlations(pooled, mask) for m, mask in pooled_masks.items()}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    if args.figure:
        _figure(runs, args.figure)


if __name__ == "__main__":
    main()
