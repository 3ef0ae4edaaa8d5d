"""Benchmark the wire protocol: step round trips over tcp and ipc, and codec cost.

The backend is the loopback backend (``protocol.loopback``) in a separate process, so the
simulation cost is excluded and what is measured is codec + validation + ZeroMQ + the backend
base class's checks, exactly as a controller sees them through ``BackendClient.step``.

Prints one JSON object on stdout; ``ratio_to_bare`` compares each transport's percentiles
with the bare pyzmq + msgpack baseline measured in the same run. Run:
``.venv/bin/python bench/bench_protocol.py`` (``--exchanges 20000 --warmup 2000`` by default).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import sys
import time

import msgpack
import numpy as np
import zmq
from tqdm import tqdm

from core.logs import configure_logging
from protocol.client import BackendClient
from protocol.codec import pack, to_wire, unpack
from protocol.loopback import LOOPBACK_WIRE_ENVELOPE
from protocol.messages import Observation, Step
from protocol.process import spawn_local_backend

STIMULUS = {"amplitude_mv": 2.5, "frequency_hz": 130.0, "pulse_width_us": 60.0}


def _percentiles_us(samples_ns: list[int]) -> dict[str, float]:
    arr = np.asarray(samples_ns, dtype=np.float64) / 1000.0
    return {
        "n": int(arr.size),
        "p50_us": round(float(np.percentile(arr, 50)), 1),
        "p90_us": round(float(np.percentile(arr, 90)), 1),
        "p99_us": round(float(np.percentile(arr, 99)), 1),
        "p99_9_us": round(float(np.percentile(arr, 99.9)), 1),
        "max_us": round(float(arr.max()), 1),
        "mean_us": round(float(arr.mean()), 1),
    }


def bench_round_trip(transport: str, exchanges: int, warmup: int) -> dict[str, object]:
    cmd = [
        sys.executable,
        "-m",
        "protocol.loopback",
        "--log-level",
        "warning",
        "--session-timeout-s",
        "30",
    ]
    with (
        spawn_local_backend(cmd, transport, ready_timeout_s=60.0) as proc,  # type: ignore[arg-type]
        BackendClient(proc.address, timeout_s=5.0, client_name="bench") as client,
    ):
        client.hello()
        client.configure(LOOPBACK_WIRE_ENVELOPE)
        client.reset()
        client.step(None, 100.0)  # off first: the envelope's soft start
        for _ in range(warmup):
            client.step(STIMULUS)
        samples: list[int] = []
        clock = time.perf_counter_ns
        for _ in tqdm(
            range(exchanges), desc=f"{transport} steps", file=sys.stderr, mininterval=1.0
        ):
            t0 = clock()
            client.step(STIMULUS)
            samples.append(clock() - t0)
        encoded = len(pack(1, Step(client.session_id, STIMULUS, 20.0)))
        client.bye()
    return {
        "transport": transport,
        "address_kind": proc.address.split(":")[0],
        "request_bytes": encoded,
        **_percentiles_us(samples),
    }


def _raw_echo_server(address: str) -> int:
    """Baseline backend: ROUTER that msgpack-decodes, touches and re-encodes (no validation)."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(address)
    sock.setsockopt(zmq.RCVTIMEO, 100)
    stop: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    last = sock.getsockopt(zmq.LAST_ENDPOINT)
    endpoint = last.decode() if isinstance(last, bytes) else str(last)
    print(f"NEUROLOOP_READY {endpoint}", flush=True)
    try:
        while not stop:
            try:
                peer, body = sock.recv_multipart()
            except zmq.Again:
                continue
            msg = msgpack.unpackb(body)
            msg["seq"] = msg.get("id", 0)
            sock.send_multipart([peer, msgpack.packb(msg)])
    finally:
        sock.close(0)
        ctx.term()
    return 0


def bench_raw_baseline(transport: str, exchanges: int, warmup: int) -> dict[str, object]:
    """Same exchange with bare pyzmq DEALER/ROUTER + msgpack: what the host allows."""
    cmd = [sys.executable, __file__, "--raw-echo-server"]
    body = msgpack.packb(to_wire(1, Step("ab" * 16, STIMULUS, 20.0)))
    with spawn_local_backend(cmd, transport, ready_timeout_s=60.0) as proc:  # type: ignore[arg-type]
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(proc.address)
        samples: list[int] = []
        clock = time.perf_counter_ns
        try:
            for i in range(warmup + exchanges):
                t0 = clock()
                sock.send(body)
                if not sock.poll(5000):
                    raise TimeoutError("raw echo server did not answer within 5 s")
                msgpack.unpackb(sock.recv())
                if i >= warmup:
                    samples.append(clock() - t0)
        finally:
            sock.close(0)
            ctx.term()
    return {"transport": transport, **_percentiles_us(samples)}


def _best_of_us(fn: object, repeats: int, number: int) -> dict[str, float]:
    import timeit

    runs = timeit.repeat(fn, repeat=repeats, number=number)  # type: ignore[arg-type]
    per_call = [r / number * 1e6 for r in runs]
    return {"best_us": round(min(per_call), 3), "median_us": round(statistics.median(per_call), 3)}


def bench_codec(number: int) -> dict[str, object]:
    step = Step("ab" * 16, STIMULUS, 20.0, False)
    obs = Observation(
        123,
        2460.0,
        20.0,
        {
            f: 0.5
            for f in (
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
            )
        },
        {
            "amplitude_mv": 100.0,
            "frequency_hz": 83.3,
            "pulse_width_us": 1000.0,
            "ei_offset_ms": 0.0,
        },
    )
    step_bytes, obs_bytes = pack(1, step), pack(1, obs)
    raw_obs = msgpack.unpackb(obs_bytes)
    return {
        "step_request_bytes": len(step_bytes),
        "observation_bytes": len(obs_bytes),
        "step_encode": _best_of_us(lambda: pack(1, step), 7, number),
        "step_decode": _best_of_us(lambda: unpack(step_bytes), 7, number),
        "observation_encode": _best_of_us(lambda: pack(1, obs), 7, number),
        "observation_decode": _best_of_us(lambda: unpack(obs_bytes), 7, number),
        "plain_msgpack_observation_encode": _best_of_us(lambda: msgpack.packb(raw_obs), 7, number),
        "plain_msgpack_observation_decode": _best_of_us(
            lambda: msgpack.unpackb(obs_bytes), 7, number
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--exchanges",
        type=int,
        default=20_000,
        help="Timed step round trips per transport (default 20000).",
    )
    parser.add_argument(
        "--warmup", type=int, default=2_000, help="Untimed round trips first (default 2000)."
    )
    parser.add_argument(
        "--codec-number",
        type=int,
        default=20_000,
        help="Calls per codec timing repeat (default 20000).",
    )
    parser.add_argument("--transports", nargs="+", default=["tcp", "ipc"], choices=["tcp", "ipc"])
    parser.add_argument("--raw-echo-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bind", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.raw_echo_server:
        return _raw_echo_server(args.bind)
    configure_logging("console", "warning")  # logs to stderr; stdout is the JSON only
    result: dict[str, object] = {
        "benchmark": "protocol",
        "python": platform.python_version(),
        "pyzmq": zmq.__version__,
        "libzmq": zmq.zmq_version(),
        "msgpack": ".".join(map(str, msgpack.version)),
        "cpus": os.cpu_count(),
        "backend": "loopback (simulation cost excluded), separate process",
        "load_average_before": list(os.getloadavg()),
        "round_trip": [bench_round_trip(t, args.exchanges, args.warmup) for t in args.transports],
        "raw_pyzmq_msgpack_baseline": [
            bench_raw_baseline(t, args.exchanges, args.warmup) for t in args.transports
        ],
        "codec": bench_codec(args.codec_number),
        "targets": {"p50_us": 150.0, "p99_us": 1000.0},
        "load_average_after": list(os.getloadavg()),
    }
    trips = result["round_trip"]
    bare = result["raw_pyzmq_msgpack_baseline"]
    assert isinstance(trips, list)
    assert isinstance(bare, list)
    # Our layers' cost relative to what the host allows, measured in this same run.
    result["ratio_to_bare"] = {
        t["transport"]: {key: round(t[key] / b[key], 2) for key in ("p50_us", "p99_us", "p99_9_us")}
        for t, b in zip(trips, bare, strict=True)
    }
    result["targets_met"] = all(t["p50_us"] <= 150.0 and t["p99_us"] <= 1000.0 for t in trips)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
