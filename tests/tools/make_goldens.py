"""Regenerate the golden recordings of ``tests/data/replay/`` from the project's own runs.

Each golden is a real ``neuroloop-controller`` run (this module calls its ``main()`` with
command-line arguments) against the simulator, small enough for CI (a 100-neuron network, 1 s
of control time, tens of KB):

* ``sim_ftsts_fast.nlrec``: the paper's FTSTS protocol (onset 200 ms) with its weight latch,
  in-process network, fast pace;
* ``sim_bundle_fast.nlrec``: a small MLP policy bundle (``bundle_mlp/``, made here from seeded
  weights) reading synchrony and the E→I weight, so a changed weight changes the commands;
* ``sim_constant_realtime.nlrec``: a constant policy against a simulator server process in
  real time (recorded wall-clock tick times, soft start and ramp on them);
* ``device_constant_realtime.nlrec`` (unless ``--no-device``): a constant 1 mA policy against
  the device emulator through the serial driver service (``neuroloop-device-emulator`` →
  ``neuroloop-driver serve`` → ``neuroloop-controller --backend serial``), physical envelope;
* ``replay_overrun_fault.nlrec``: the bundle policy in real time against ``neuroloop-replay
  serve sim_bundle_fast.nlrec`` for longer than that recording: the replay refuses step 51,
  the controller faults (``backend_error``) and stops.

``--v1-fixture`` also freezes a copy of one golden as ``v1_sim_constant.nlrec``, the fixture
that pins reading format version 1 forever; it is never overwritten.

Run ``python tests/tools/make_goldens.py`` from a checkout (``--out DIR`` to write elsewhere),
then ``neuroloop-replay verify`` each file. It is a test-fixture generator, so it lives with the
tests and is not installed with the package.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import selectors
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import numpy as np

# this checkout's packages, not an installed copy from another tree
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from controller import cli as controller_cli  # noqa: E402
from controller.policies.bundle import META_FILE, WEIGHTS_FILE, load_bundle  # noqa: E402
from core.errors import ConfigError, RecordingError  # noqa: E402
from core.logs import configure_logging  # noqa: E402
from protocol.envelope.config import load_envelope  # noqa: E402
from protocol.process import BackendProcess, spawn_local_backend  # noqa: E402
from protocol.recording import FORMAT_VERSION, read_recording  # noqa: E402

#: Default output directory (the tests' goldens in this checkout).
DEFAULT_OUT = ROOT / "tests" / "data" / "replay"
#: Seed of the bundle's weights.
BUNDLE_SEED = 20261123
BUNDLE_DIR = "bundle_mlp"
SMALL_SIM = "[simulator]\nn_e = 80\nn_i = 20\n"
V1_FIXTURE = "v1_sim_constant.nlrec"


def write_bundle(root: Path, envelope_hash: str, seed: int = BUNDLE_SEED) -> Path:
    """Write a small tanh MLP bundle: (synchrony, weight_mv) → amplitude in [0, 150] mV.

    Args:
        root: Bundle directory (created; its two files are replaced).
        envelope_hash: Hash of the envelope the policy is declared for.
        seed: Seed of the weights (``numpy.random.default_rng``).
    """
    rng = np.random.default_rng(seed)
    arrays = {
        "layer0.weight": rng.normal(0.0, 1.0, (8, 2)).astype(np.float32),
        "layer0.bias": rng.normal(0.0, 0.1, 8).astype(np.float32),
        "layer1.weight": rng.normal(0.0, 0.8, (1, 8)).astype(np.float32),
        "layer1.bias": np.array([0.2], dtype=np.float32),
        "obs_mean": np.array([0.3, 250.0]),
        "obs_var": np.array([0.04, 25.0]),
    }
    root.mkdir(parents=True, exist_ok=True)
    np.savez(root / WEIGHTS_FILE, **arrays)  # type: ignore[arg-type]
    meta = {
        "format": "neuroloop.policy_bundle",
        "format_version": 1,
        "algorithm": "seeded-mlp (replay golden)",
        "versions": {"neuroloop": version("neuroloop"), "numpy": np.__version__},
        "envelope_hash": envelope_hash,
        "observation": {
            "fields": [
                {"name": "synchrony", "unit": "1", "low": 0.0, "high": 1.0},
                {"name": "weight_mv", "unit": "mV", "low": 0.0, "high": 400.0},
            ],
            "normalization": {"clip_obs": 10.0, "epsilon": 1e-8},
        },
        "action": {
            "fields": [{"name": "amplitude", "unit": "mV", "low": 0.0, "high": 150.0}],
            "fixed": {"frequency_hz": 1000.0 / 12.0, "pulse_width_us": 1000.0},
            "output": "tanh",
        },
        "network": {
            "layers": [
                {"weight": "layer0.weight", "bias": "layer0.bias", "activation": "tanh"},
                {"weight": "layer1.weight", "bias": "layer1.bias", "activation": "identity"},
            ]
        },
        "weights_sha256": hashlib.sha256((root / WEIGHTS_FILE).read_bytes()).hexdigest(),
    }
    (root / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", "utf-8")
    load_bundle(root)
    return root


@contextmanager
def _cwd(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _record(
    out: Path, name: str, config: str, args: list[str], *, expect: int = 0, attempts: int = 1
) -> Path:
    """Run the controller with ``args`` inside ``out`` (so recorded paths are relative).

    Real-time runs get ``attempts`` tries: on a loaded machine a step can miss the watchdog,
    which is a correct fault but not the session this golden is meant to hold.
    """
    target = out / name
    code = -1
    for _ in range(attempts):
        for stale in (target, out / f"{name}.summary.json"):
            stale.unlink(missing_ok=True)
        cfg = out / f"{name}.toml"
        cfg.write_text(config, "utf-8")
        try:
            with _cwd(out):
                code = controller_cli.main(
                    ["--config", cfg.name, "--record", name, "--log-level", "warning", *args]
                )
        finally:
            cfg.unlink(missing_ok=True)
            (out / f"{name}.summary.json").unlink(missing_ok=True)
        if code == expect:
            return target
    raise RecordingError(
        f"Expected the controller run for {name} to exit {expect}, actual {code} "
        f"({attempts} attempts)"
    )


def record_replay_overrun(out: Path, name: str = "replay_overrun_fault.nlrec") -> Path:
    """A real-time run against a served golden that outlasts it: the backend refuses step 51.

    The controller faults (``backend_error``), stops and exits 4: a session that ends in a
    fault, for the fault paths of the replay.
    """
    fault = ""
    for _ in range(3):
        with spawn_local_backend(
            [
                sys.executable,
                "-m",
                "controller.replay_cli",
                "serve",
                str(out / "sim_bundle_fast.nlrec"),
            ],
            "ipc",
            extra_args=["--log-level", "warning"],
        ) as served:
            path = _record(
                out,
                name,
                "[controller]\nbackend = 'replay'\n",
                ["--connect", served.address, "--policy", BUNDLE_DIR, "--duration", "1.2"],
                expect=4,
            )
        faults = [
            r.payload.get("reason") for r in read_recording(path).records if r.kind == "fault"
        ]
        fault = str(faults)
        if faults == ["backend_error"]:
            return path
    raise RecordingError(
        f"Expected the overrun run to end in one backend_error fault, actual {fault} "
        "(3 attempts; the machine may be too loaded for real time)"
    )


def _first_line(popen: subprocess.Popen[bytes], timeout_s: float) -> str:
    assert popen.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(popen.stdout, selectors.EVENT_READ)
        if not selector.select(timeout_s):
            raise RecordingError(f"Expected the emulator's port within {timeout_s} s, actual none")
    return popen.stdout.readline().decode("utf-8", "replace").strip()


def record_device(
    out: Path, name: str = "device_constant_realtime.nlrec", attempts: int = 3
) -> Path:
    """Record a session against the device emulator through the serial driver service.

    Each attempt starts a fresh emulator and driver (a real-time run on a loaded machine can
    miss the watchdog; that correct fault is not the session this golden is meant to hold).
    """
    error: RecordingError | None = None
    for _ in range(attempts):
        try:
            return _record_device_once(out, name)
        except RecordingError as err:
            error = err
    assert error is not None
    raise error


def _record_device_once(out: Path, name: str) -> Path:
    emulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "drivers.emulator_cli",
            "--n-e",
            "80",
            "--n-i",
            "20",
            "--seed",
            "3",
            "--log-level",
            "warning",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    driver: BackendProcess | None = None
    try:
        url = _first_line(emulator, 30.0)
        if not url:
            raise RecordingError("Expected the emulator to print its port URL, actual nothing")
        driver = spawn_local_backend(
            [sys.executable, "-m", "drivers.cli", "serve", "--port", url],
            "ipc",
            extra_args=["--log-level", "warning"],
        )
        return _record(
            out,
            name,
            "[controller]\nbackend = 'serial'\n",
            [
                "--connect",
                driver.address,
                "--policy",
                "constant",
                "--amplitude",
                "1.0",
                "--frequency-hz",
                "130",
                "--pulse-width-us",
                "90",
                "--duration",
                "1.0",
            ],
        )
    finally:
        if driver is not None:
            driver.stop()
        emulator.terminate()
        try:
            emulator.wait(5.0)
        except subprocess.TimeoutExpired:
            emulator.kill()
            emulator.wait(5.0)


def make_goldens(out: Path, *, v1_fixture: bool = False, device: bool = True) -> list[Path]:
    """Record every golden into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    envelope = load_envelope("simulator")
    write_bundle(out / BUNDLE_DIR, envelope.sha256())
    fast = "[controller]\nin_process = true\npace = 'fast'\n" + SMALL_SIM
    made = [
        _record(
            out,
            "sim_ftsts_fast.nlrec",
            fast,
            [
                "--policy",
                "ftsts",
                "--onset-ms",
                "200",
                "--latch-below-mv",
                "255",
                "--duration",
                "1.2",
            ],
        ),
        _record(
            out,
            "sim_bundle_fast.nlrec",
            fast,
            ["--policy", BUNDLE_DIR, "--duration", "1.0"],
        ),
        _record(
            out,
            "sim_constant_realtime.nlrec",
            "[backend.options]\nn_scale = 0.05\n",
            ["--policy", "constant", "--amplitude", "60", "--duration", "1.0"],
            attempts=3,
        ),
    ]
    made.append(record_replay_overrun(out))
    if device:
        made.append(record_device(out))
    if v1_fixture:
        fixture = out / V1_FIXTURE
        if fixture.exists():
            raise ConfigError(f"Expected no {fixture} (the v1 fixture is frozen), actual exists")
        if FORMAT_VERSION != 1:
            raise ConfigError(
                f"Expected format version 1 to freeze a v1 fixture, actual {FORMAT_VERSION}"
            )
        shutil.copyfile(out / "sim_constant_realtime.nlrec", fixture)
        made.append(fixture)
    return made


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python tests/tools/make_goldens.py [--out DIR] [--v1-fixture]``."""
    parser = argparse.ArgumentParser(
        prog="python tests/tools/make_goldens.py",
        description="Regenerate the golden session recordings replayed by the tests.",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default {DEFAULT_OUT}")
    parser.add_argument(
        "--v1-fixture", action="store_true", help=f"also freeze {V1_FIXTURE} (never overwritten)"
    )
    parser.add_argument("--no-device", action="store_true", help="skip the device-emulator golden")
    args = parser.parse_args(argv)
    configure_logging("console", "warning")
    try:
        for path in make_goldens(
            args.out.resolve(), v1_fixture=args.v1_fixture, device=not args.no_device
        ):
            print(f"{path}  {path.stat().st_size} bytes")
    except (ConfigError, RecordingError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
