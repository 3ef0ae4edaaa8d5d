"""Replay costs: verification throughput and the replay backend's step round trip (JSON).

Verification: every golden of tests/data/replay is loaded and verified ``--repeat`` times;
the JSON gives ticks per second of load + re-run + invariants + timing. Backend: the bundle
golden is served by ``neuroloop-replay serve`` (fast pace, ipc) and stepped ``--steps`` times
by the controller's ZeroMQ connection, cycling the session; the JSON gives the round trip
percentiles. Run: ``python bench/bench_replay.py [--repeat 20] [--steps 2000]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import structlog

from controller.backends.zmq import ZmqConnection
from controller.replay.rebuild import recorded_envelope
from controller.replay.session import load_session
from controller.replay.verify import verify_session
from protocol.envelope.setpoint import Setpoint
from protocol.process import spawn_local_backend

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "replay"


def bench_verify(repeat: int) -> dict[str, float]:
    goldens = sorted(DATA.glob("*.nlrec"))
    ticks = 0
    t0 = time.perf_counter()
    for _ in range(repeat):
        for path in goldens:
            session = load_session(path)
            report = verify_session(session)
            assert report.passed, path
            ticks += len(session.ticks)
    elapsed = time.perf_counter() - t0
    return {"ticks": ticks, "seconds": elapsed, "ticks_per_s": ticks / elapsed}


def bench_serve(steps: int) -> dict[str, float]:
    golden = DATA / "sim_bundle_fast.nlrec"
    session = load_session(golden)
    envelope = recorded_envelope(session)
    n = len(session.ticks)
    lat_ms: list[float] = []
    with spawn_local_backend(
        [sys.executable, "-m", "controller.replay_cli", "serve", str(golden)],
        "ipc",
        extra_args=["--log-level", "error"],
    ) as proc:
        backend = ZmqConnection(proc.address)
        backend.hello("bench")
        backend.configure(envelope, session.period_ms)
        setpoint = Setpoint(amplitude=50.0, frequency_hz=1000.0 / 12.0, pulse_width_us=1000.0)
        for i in range(steps):
            if i % n == 0:
                backend.reset(0)
            t = time.perf_counter()
            backend.step(setpoint, session.period_ms, 1.0)
            lat_ms.append((time.perf_counter() - t) * 1000.0)
        backend.close()
    arr = np.asarray(lat_ms)
    return {
        "steps": steps,
        "p50_ms": float(np.percentile(arr, 50)),
        "p99_ms": float(np.percentile(arr, 99)),
        "max_ms": float(arr.max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    print(
        json.dumps(
            {
                "verify": bench_verify(args.repeat),
                "serve_step_round_trip": bench_serve(args.steps),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
