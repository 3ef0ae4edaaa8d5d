"""The measurable policy on the emulated stimulator, end to end, at full size (issue 23 item 4).

Three processes as a deployment has them: ``neuroloop-device-emulator`` (the device on a pty,
its tissue the paper's N = 2000 FTSTS network), ``neuroloop-driver serve`` (the serial bridge
behind ZeroMQ) and ``neuroloop-controller --backend serial`` running a shipped bundle
(``controller/policies/pretrained/measurable_ppo``, or ``--policy`` another, e.g. the dose
schedule ``measurable_schedule``) unchanged, in real time, for the episode it
was trained on (20 s of control, then a 5 s stimulation-free tail that is still observed and
recorded). Then ``neuroloop-replay verify`` re-runs the recording. Prints one JSON object: the
summary's units' R and LFP band power before stimulation, while stimulating and in the tail,
the charge, deadline misses and the verification. The device reports no all-cell synchrony,
so desynchronisation is judged by what it senses.

    python bench/device_policy_run.py --out runs/device_policy    # about 40 s
    python bench/device_policy_run.py --policy controller/policies/pretrained/measurable_schedule \
        --out runs/device_schedule
"""

from __future__ import annotations

import argparse
import contextlib
import json
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from json_out import ROOT, emit, shown

BUNDLE = ROOT / "controller" / "policies" / "pretrained" / "measurable_ppo"


def _pty_path(proc: subprocess.Popen[bytes], timeout_s: float) -> str:
    """The emulator prints its pty path as its first line on stdout."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if sel.select(deadline - time.monotonic()):
                line = proc.stdout.readline().decode().strip()
                if line.startswith("/dev/"):
                    return line
                if not line and proc.poll() is not None:
                    break
    raise RuntimeError(f"Expected the emulator's pty path within {timeout_s} s, actual none")


def _phase_means(path: Path, tail_from_s: float, period_s: float) -> dict[str, Any]:
    from protocol.recording import read_recording

    records = read_recording(path).records
    commands = {r.payload["tick"]: r.payload for r in records if r.kind == "command"}
    rows = []
    for r in records:
        if r.kind != "observation":
            continue
        k = r.payload["tick"]
        on = commands.get(k, {}).get("setpoint", {}).get("amplitude", 0.0) > 0.0
        rows.append((k * period_s, on, r.payload["fields"]))
    first_on = next((t for t, on, _ in rows if on), None)
    phases = {
        "before": [f for t, _, f in rows if first_on is None or t < first_on],
        "stimulating": [f for t, _, f in rows
                        if first_on is not None and first_on <= t < tail_from_s],
        "tail": [f for t, _, f in rows if t >= tail_from_s + 1.0],  # after the ramp-off
    }  # fmt: skip
    out: dict[str, Any] = {"stimulation_from_s": first_on}
    for name, fields in phases.items():
        out[name] = {
            "windows": len(fields),
            "units_synchrony": float(np.mean([f["units_synchrony"] for f in fields]))
            if fields else None,
            "lfp_band_uv2": float(np.median([f["lfp_band_uv2"] for f in fields]))
            if fields else None,
        }  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the three processes, verify the recording, print (and write) the JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/device_policy"))
    p.add_argument("--seed", type=int, default=2**31, help="emulator seed (its tissue's)")
    p.add_argument("--policy", type=Path, default=BUNDLE,
                   help="bundle directory (default: the shipped measurable_ppo; the dose "
                   "schedule is controller/policies/pretrained/measurable_schedule)")  # fmt: skip
    p.add_argument("--json", type=Path, help="also write the result here")
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    record = a.out / "device.nlrec"
    for old in a.out.glob("device.nlrec*"):
        old.unlink()
    py = sys.executable
    logs = contextlib.ExitStack()
    emu_log = logs.enter_context(open(a.out / "emulator.log", "wb"))  # noqa: SIM115
    driver_log = logs.enter_context(open(a.out / "driver.log", "wb"))  # noqa: SIM115
    emu = subprocess.Popen([py, "-m", "drivers.emulator_cli", "--seed", str(a.seed),
                            "--log-level", "warning"], stdout=subprocess.PIPE,
                           stderr=emu_log)  # fmt: skip
    bridge = None
    try:
        port = _pty_path(emu, 60.0)
        from protocol.process import spawn_backend

        bridge = spawn_backend([py, "-m", "drivers.cli", "serve", "--port", port, "--bind",
                                "tcp://127.0.0.1:0", "--ack-timeout-ms", "100",
                                "--log-level", "warning"], 60.0,
                               stderr=driver_log)  # fmt: skip
        time.sleep(2.0)  # the tissue settles into its synchronous state before stimulation
        argv_ctl = [py, "-m", "controller.cli", "--backend", "serial", "--connect",
                    bridge.address, "--envelope", "emulator", "--policy", str(a.policy),
                    "--period-ms", "100", "--duration", "27", "--tail-s", "5",
                    "--record", str(record), "--log-level", "warning"]  # fmt: skip
        ctl = subprocess.run(argv_ctl, capture_output=True, text=True, timeout=120)
    finally:
        if bridge is not None:
            bridge.stop(timeout_s=5.0)
        emu.terminate()
        emu.wait(10.0)
        logs.close()
    verify = subprocess.run([py, "-m", "controller.replay_cli", "verify", str(record)],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    summary = json.loads(Path(f"{record}.summary.json").read_text("utf-8"))
    result = {
        "command": "python bench/device_policy_run.py",
        "argv": sys.argv[1:] if argv is None else list(argv),
        "bundle": shown(a.policy),
        "controller_exit": ctl.returncode,
        "end_reason": summary.get("end_reason"),
        "ticks": summary.get("ticks"),
        "deadline_misses": summary.get("deadline_misses"),
        "charge_delivered_uc": summary.get("charge_delivered"),
        "clamps": summary.get("clamps"),
        "phases": _phase_means(record, 22.0, 0.1),
        "replay_verify_exit": verify.returncode,
        "replay_verify": verify.stdout.strip().splitlines()[-1:] if verify.stdout else [],
    }
    emit(result, a.json)
    return 0 if ctl.returncode == 0 and verify.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
