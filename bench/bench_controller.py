"""Controller benchmarks; prints one JSON object.

1. Per-tick overhead without the backend: policy inference (a 2×64 tanh MLP bundle with
   observation normalisation, numpy only), the safety governor, and the protocol codec (pack the
   step request, unpack an observation reply). p50/p99 over ``--overhead-ticks`` ticks.
2. A real-time run at 50 Hz (T = 20 ms) against the simulator server process over ZeroMQ (the
   paper's network, N = 1600 E + 400 I, unless ``--n-scale`` says otherwise) with the FTSTS
   policy: late steps (the simulator is a lockstep backend: counted, not faults; see
   docs/controller.md, Deadlines), overruns, period jitter p50/p99, tick latency p50/p99.

Targets: overhead p99 <= 0.5 ms; jitter p99 <= 2 ms.

    python bench/bench_controller.py --duration 60          # the full spec run
    python bench/bench_controller.py --duration 10 --n-scale 1.0
    python bench/bench_controller.py --rt-priority 10 --server-rt-priority 5   # SCHED_FIFO
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import structlog

from controller.backends import BackendRequest, open_backend
from controller.clock import request_realtime_priority
from controller.envelope.governor import SafetyGovernor
from controller.loop import ControlLoop, LoopSettings
from controller.policies.builtin import FtstsPolicy
from controller.policies.bundle import BundlePolicy, load_bundle
from core.logs import configure_logging
from protocol.codec import pack, unpack_reply
from protocol.envelope.config import load_envelope
from protocol.messages import Observation, Step
from protocol.process import spawn_local_backend

FIELDS = ("synchrony", "mean_v_e_mv", "sd_v_e_mv", "weight_mv", "rate_e_hz", "chi")


def write_bundle(root: Path, envelope_hash: str, seed: int = 0) -> Path:
    """A bundle with seeded random weights (same format export_sb3 writes)."""
    rng = np.random.default_rng(seed)
    sizes = [len(FIELDS), 64, 64, 3]
    arrays: dict[str, np.ndarray] = {}
    layers = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        arrays[f"layer{i}.weight"] = rng.normal(0, 1 / np.sqrt(n_in), (n_out, n_in)).astype(
            np.float32
        )
        arrays[f"layer{i}.bias"] = np.zeros(n_out, np.float32)
        act = "tanh" if i < len(sizes) - 2 else "identity"
        layers.append({"weight": f"layer{i}.weight", "bias": f"layer{i}.bias", "activation": act})
    arrays["obs_mean"] = np.array([0.5, 10.0, 2.0, 200.0, 20.0, 0.5])
    arrays["obs_var"] = np.array([0.1, 25.0, 1.0, 900.0, 100.0, 0.1])
    root.mkdir(parents=True, exist_ok=True)
    np.savez(root / "weights.npz", **arrays)
    meta = {
        "format": "neuroloop.policy_bundle",
        "format_version": 1,
        "algorithm": "random",
        "versions": {"neuroloop": "0.1.0", "numpy": np.__version__},
        "envelope_hash": envelope_hash,
        "observation": {
            "fields": [{"name": f, "unit": "1", "low": -1e3, "high": 1e3} for f in FIELDS],
            "normalization": {"clip_obs": 10.0, "epsilon": 1e-8},
        },
        "action": {
            "fields": [
                {"name": "amplitude", "unit": "mV", "low": 0.0, "high": 200.0},
                {"name": "frequency_hz", "unit": "Hz", "low": 5.0, "high": 180.0},
                {"name": "pulse_width_us", "unit": "us", "low": 50.0, "high": 1000.0},
            ],
            "fixed": {},
            "output": "tanh",
        },
        "network": {"layers": layers},
        "weights_sha256": hashlib.sha256((root / "weights.npz").read_bytes()).hexdigest(),
    }
    (root / "bundle.json").write_text(json.dumps(meta))
    return root


def pct(samples: list[float]) -> dict[str, float]:
    arr = np.asarray(samples) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 4),
        "p99_ms": round(float(np.percentile(arr, 99)), 4),
        "max_ms": round(float(arr.max()), 4),
    }


def bench_overhead(ticks: int) -> dict[str, object]:
    env = load_envelope("simulator")
    with tempfile.TemporaryDirectory() as tmp:
        policy = BundlePolicy(load_bundle(write_bundle(Path(tmp) / "b", env.sha256())))
    gov = SafetyGovernor(env, 0.02, policy.action_map)
    gov.arm(0.0)
    gov.idle(0.0)
    rng = np.random.default_rng(1)
    session = "0" * 32
    reply = pack(7, Observation(1, 20.0, 20.0, {f: 0.0 for f in FIELDS}, None))
    t_policy, t_gov, t_codec, t_total = [], [], [], []
    for k in range(ticks):
        fields = {f: float(v) for f, v in zip(FIELDS, rng.normal(0, 1, len(FIELDS)), strict=True)}
        t0 = time.perf_counter()
        action = policy.act(fields, k * 20.0)
        t1 = time.perf_counter()
        decision = gov.command(action, (k + 1) * 0.02)
        t2 = time.perf_counter()
        sp = decision.setpoint
        stim = {
            "amplitude_mv": sp.amplitude,
            "frequency_hz": sp.frequency_hz,
            "pulse_width_us": sp.pulse_width_us,
            "ei_offset_ms": 0.0,
        }
        pack(k, Step(session, stim, 20.0))
        unpack_reply(reply)
        t3 = time.perf_counter()
        t_policy.append(t1 - t0)
        t_gov.append(t2 - t1)
        t_codec.append(t3 - t2)
        t_total.append(t3 - t0)
    return {
        "ticks": ticks,
        "policy_inference": pct(t_policy),
        "envelope": pct(t_gov),
        "codec": pct(t_codec),
        "total": pct(t_total),
        "target_total_p99_ms": 0.5,
        "envelope_findings": dict(gov.counts),
    }


def bench_realtime(
    duration_s: float, n_scale: float, server_rt_priority: int | None
) -> dict[str, object]:
    env = load_envelope("simulator")
    server = None
    if server_rt_priority is None:
        opened = open_backend(BackendRequest("sim", options={"n_scale": n_scale}, timeout_s=30.0))
    else:
        command = ["chrt", "-f", str(server_rt_priority), sys.executable, "-m", "simulator.server"]
        server = spawn_local_backend(command, "ipc", ready_timeout_s=120.0)
        opened = open_backend(
            BackendRequest(
                "sim", connect=server.address, options={"n_scale": n_scale}, timeout_s=30.0
            )
        )
    policy = FtstsPolicy()
    gov = SafetyGovernor(env, 0.02)
    loop = ControlLoop(opened.backend, policy, gov, LoopSettings(20.0, duration_s, "realtime", 0))
    try:
        result = loop.run()
    finally:
        opened.close()
        if server is not None:
            server.stop()
    stats = result.stats
    return {
        "period_ms": 20.0,
        "duration_s": duration_s,
        "n_neurons": round(2000 * n_scale),
        "ticks": result.ticks,
        "end_reason": result.end_reason,
        "deadline_misses": stats.deadline_misses,
        "late_steps": stats.late_steps,
        "overruns": stats.overruns,
        "period_jitter": pct([abs(x) for x in stats.period_error_s]),
        "wake_late": pct(stats.wake_late_s),
        "tick_latency": pct(stats.latency_s),
        "backend_step": pct(stats.step_s),
        "overhead": pct(stats.overhead_s),
        "synchrony": stats.synchrony_trend(),
        "target_jitter_p99_ms": 2.0,
        "server_sched_fifo_priority": server_rt_priority,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--overhead-ticks", type=int, default=20_000)
    parser.add_argument("--duration", type=float, default=60.0, help="real-time run length (s)")
    parser.add_argument(
        "--n-scale", type=float, default=1.0, help="network scale (1.0 = 2000 neurons)"
    )
    parser.add_argument("--skip-realtime", action="store_true")
    parser.add_argument(
        "--rt-priority", type=int, help="SCHED_FIFO priority of this (controller) process"
    )
    parser.add_argument(
        "--server-rt-priority",
        type=int,
        help="start the simulator server under 'chrt -f N' (SCHED_FIFO) for the real-time run",
    )
    args = parser.parse_args()
    configure_logging("console", "error")
    structlog.get_logger()
    if args.rt_priority is not None:
        request_realtime_priority(args.rt_priority)
    out: dict[str, object] = {
        "host": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "load_avg_1m": os.getloadavg()[0],
        },
        "sched_fifo_priority": args.rt_priority,
        "overhead": bench_overhead(args.overhead_ticks),
    }
    if not args.skip_realtime:
        out["realtime_50hz"] = bench_realtime(args.duration, args.n_scale, args.server_rt_priority)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
