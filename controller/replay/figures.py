"""PNG figures of a recorded session (``neuroloop-replay report``).

* ``stimulation.png``: amplitude, frequency and pulse width commanded per tick, with the
  envelope's limits and the ticks where a clamp changed the request;
* ``observations.png``: every observation field over model time (synchrony, the E→I weight …);
* ``envelope.png``: clamps, rejects, holds and recoveries by reason over control time, held
  commands and faults;
* ``timing.png``: per-tick latency and backend round trip against the period ``T``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.lines import Line2D

from controller.replay.session import Session

_KIND_COLOURS = {
    "clamp": "tab:orange",
    "reject": "tab:red",
    "hold": "tab:purple",
    "recovery": "tab:green",
    "fault": "black",
}


def control_times_s(session: Session) -> list[float]:
    """Control time of each tick's command (recorded for real-time runs, ``k·T`` otherwise)."""
    period_s = session.period_ms / 1000.0
    if session.pace == "realtime":
        return [float((t.command or {}).get("t_s", t.tick * period_s)) for t in session.ticks]
    return [t.tick * period_s for t in session.ticks]


def _fault_times(session: Session, times: list[float]) -> list[tuple[float, str]]:
    out = []
    for t, when in zip(session.ticks, times, strict=True):
        for payload in t.faults():
            out.append((when, str(payload.get("reason", "fault"))))
        if (t.command or {}).get("fault"):
            out.append((when, str((t.command or {})["fault"])))
    return out


def _stimulation(session: Session, times: list[float], out: Path) -> Path:
    env: dict[str, Any] = session.meta["envelope"]
    unit = env.get("amplitude_unit", "")
    rows = [
        ("amplitude", f"amplitude ({unit})", ("amplitude_min", "amplitude_max")),
        ("frequency_hz", "frequency (Hz)", ("frequency_min_hz", "frequency_max_hz")),
        ("pulse_width_us", "pulse width (µs)", ("pulse_width_min_us", "pulse_width_max_us")),
    ]
    fig, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    clamped = [
        (when, t)
        for t, when in zip(session.ticks, times, strict=True)
        if t.command and t.command.get("reasons")
    ]
    for ax, (key, label, (lo, hi)) in zip(axes, rows, strict=True):
        values = [
            float((t.command or {}).get("setpoint", {}).get(key, float("nan")))
            for t in session.ticks
        ]
        ax.step(times, values, where="post", color="tab:blue", label="commanded")
        for k, bound in enumerate((lo, hi)):
            if bound in env:
                first = k == 0 or lo not in env
                ax.axhline(float(env[bound]), color="grey", lw=0.8, ls="--",
                           label="envelope limits" if first else None)  # fmt: skip
        if key == "amplitude" and clamped:
            ax.plot(
                [w for w, _ in clamped],
                [float((t.command or {})["setpoint"]["amplitude"]) for _, t in clamped],
                "o",
                ms=3,
                color="tab:orange",
                label="clamped/held",
            )
        for k, (when, reason) in enumerate(_fault_times(session, times)):
            ax.axvline(when, color="black", lw=1.0, label=f"fault: {reason}" if k == 0 else None)
        ax.set_ylabel(label)
        ax.legend(loc="upper left", fontsize=7, bbox_to_anchor=(1.0, 1.0))
    axes[-1].set_xlabel("control time (s)")
    policy = str(session.meta.get("policy", {}).get("name", "?"))
    axes[0].set_title(
        f"Stimulation commanded per tick, after the envelope: {session.path.name} "
        f"(policy {policy})",
        fontsize=10,
    )
    fig.tight_layout()
    path = out / "stimulation.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _observations(session: Session, out: Path) -> Path:
    names = session.observation_fields()
    observed = [t for t in session.ticks if t.observation is not None]
    t_ms = [float((t.observation or {})["t_model_ms"]) for t in observed]
    first = [n for n in ("synchrony", "weight_mv") if n in names]
    order = first + [n for n in names if n not in first]
    fig, axes = plt.subplots(
        max(1, len(order)), 1, figsize=(9, 1.6 * max(1, len(order)) + 1), sharex=True, squeeze=False
    )
    for ax, name in zip(axes[:, 0], order, strict=False):
        ax.plot(
            [x / 1000.0 for x in t_ms],
            [float((t.observation or {})["fields"].get(name, float("nan"))) for t in observed],
            lw=1.0,
        )
        ax.set_ylabel(name, fontsize=8)
    axes[-1, 0].set_xlabel("model time (s)")
    axes[0, 0].set_title(
        f"Recorded observations, one per tick (unit in the field name): {session.path.name}",
        fontsize=10,
    )
    fig.tight_layout()
    path = out / "observations.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _envelope(session: Session, times: list[float], out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(9, 4))
    reasons: dict[str, int] = {}
    for t, when in zip(session.ticks, times, strict=True):
        for ev in t.events:
            reason = str(ev.get("reason"))
            y = reasons.setdefault(reason, len(reasons))
            ax.plot(when, y, "o", ms=4, color=_KIND_COLOURS.get(str(ev.get("event")), "tab:grey"))
    held = [w for t, w in zip(session.ticks, times, strict=True) if (t.command or {}).get("held")]
    if held:
        y = reasons.setdefault("(held command)", len(reasons))
        ax.plot(held, [y] * len(held), "|", ms=8, color="tab:purple")
    for when, reason in _fault_times(session, times):
        ax.axvline(when, color="black", lw=1.2)
        ax.annotate(f"fault: {reason}", (when, 0), fontsize=8, rotation=90, va="bottom")
    ax.set_yticks(range(len(reasons)), list(reasons) or [])
    if not reasons:
        ax.text(
            0.5, 0.5, "no clamps, rejects, holds or faults", transform=ax.transAxes, ha="center"
        )
    ax.set_xlim(0.0, max(times[-1], 1e-3) if times else 1.0)
    ax.set_xlabel("control time (s)")
    ax.set_ylabel("reason")
    ax.set_title(f"Envelope events by reason: {session.path.name}", fontsize=10)
    handles = [
        Line2D([], [], marker="o", ls="", color=colour, label=kind)
        for kind, colour in _KIND_COLOURS.items()
        if kind != "fault"
    ]
    held_marker = Line2D([], [], marker="|", ls="", ms=8, color="tab:purple")
    held_marker.set_label("held command")
    handles.append(held_marker)
    handles.append(Line2D([], [], color="black", label="fault"))
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    path = out / "envelope.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _timing(session: Session, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(9, 3.5))
    timed = [t for t in session.ticks if t.timing is not None]
    for key, colour, label in (
        ("latency_ms", "tab:blue", "tick latency: step sent to next command ready (latency_ms)"),
        ("step_ms", "tab:orange", "backend step round trip (step_ms)"),
    ):
        ax.plot(
            [t.tick for t in timed],
            [float((t.timing or {}).get(key, 0.0)) for t in timed],
            lw=0.8,
            color=colour,
            label=label,
        )
    ax.axhline(session.period_ms, color="red", ls="--", lw=0.8,
               label=f"control period T = {session.period_ms:g} ms")  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("tick")
    ax.set_ylabel("duration (ms, log scale)")
    ax.legend(fontsize=7)
    ax.set_title(f"Per-tick timing, pace {session.pace}: {session.path.name}", fontsize=10)
    fig.tight_layout()
    path = out / "timing.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_figures(session: Session, out: Path) -> list[Path]:
    """Write every figure of ``session`` into ``out`` (created); return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    times = control_times_s(session)
    return [
        _stimulation(session, times, out),
        _observations(session, out),
        _envelope(session, times, out),
        _timing(session, out),
    ]
