"""Where the kernel's time goes: time-stamp-counter ticks per neuron-step for each section; JSON.

The machines here are shared VMs whose speed drifts by tens of percent within a minute, so
wall-clock A/B runs of a few percent are noise. This profiler instead compiles a copy of
``simulator/kernel.py`` with a ``llvm.readcyclecounter`` stamp at each of its section comments
(noise, neuron pass, statistics, spike collection, E-spike loop, I-spike loop, traces and
bookkeeping, Kuramoto sample) and runs it on a network snapshot in the state the protocol
reaches after ``--warm-windows`` windows. Each trial restarts from the snapshot; the minimum
over trials is reported per section, which strips most of the neighbours' interference.

    python bench/profile_kernel.py [--protocol ftsts-desync] [--trials 10] [--stimulated]
        [--array-pass | --compare-array-pass] [--against REV]

``--stimulated`` applies the protocol's pulse train from its onset on, in the trials too (the
entrained network fires more, and its spike loops cost more). ``--array-pass`` makes the kernel
read its per-neuron constants from arrays where it would use per-population scalars;
``--compare-array-pass`` times both, alternating trial by trial (the way to measure a change on
this VM, whose speed drifts between separate runs); ``--against REV`` alternates this tree's
kernel with ``simulator/kernel.py`` as of a git revision in the same way. ``--whole-run
SECONDS`` reports instead the mean over a whole protocol run, Python side included (what a
user's run meets, interference and all).

Ticks are those of the constant-rate time-stamp counter (``tsc_ghz`` converts them to time).
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit
from numba import types as nbtypes
from numba.core import cgutils
from numba.extending import intrinsic

import simulator.kernel
import simulator.network as network_module
import simulator.run as run_module
from core.errors import NeuroLoopError
from simulator.experiments import get_experiment
from simulator.network import Network
from simulator.run import run_experiment


@intrinsic
def _ticks(typingctx: Any) -> Any:
    sig = nbtypes.int64()

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        fnty = ir.FunctionType(ir.IntType(64), [])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.readcyclecounter")
        return builder.call(fn, [])

    return sig, codegen


#: (section name, the kernel source lines that may start it: the first found is used, so that
#: kernels of other revisions (``--against``) are profiled too; sections are stamped in the
#: order they appear in the source)
SECTIONS = [
    ("noise", ["        # ---- the next step's noise", "        if gen_noise:\n"]),
    ("neuron_pass", ["        # recurrent input first"]),
    ("statistics", ["        # window statistics"]),
    ("collect_and_prefetch", ["        # collect this step's spikes"]),
    ("e_spike_loop", ["        # ---- E spikes"]),
    ("i_spike_loop", ["        # ---- I spikes"]),
    ("traces_bookkeeping", ["        # ---- traces decay"]),
    ("kuramoto_sample", ["        # ---- causal Kuramoto sample"]),
    ("potentiation_flush", ["        # ---- pending potentiation"]),
]
#: The first line after the step loop (the last section's stamp goes in just before it, at the
#: loop body's indentation)
_END = "    head[0] = h\n    n_spk[0] = ns\n"


def instrumented_kernel(source: str | None = None, name: str = "kernel_profiled") -> Any:
    """``run_steps`` with a trailing ``ticks`` argument that accumulates ticks per section.

    Args:
        source: The kernel module's source (default: this tree's ``simulator/kernel.py``).
        name: Module name for the compiled copy (one per source).
    """
    src = source if source is not None else inspect.getsource(simulator.kernel)
    src = src.replace("cache=True", "cache=False")
    # the trailing argument: ``kop_acc,`` ends the old 93-argument signature, ``out,`` the
    # grouped one (simulator/kernel_args.py)
    for last in ("kop_acc,", "kop, out,"):
        src = src.replace(f"{last}\n):  # fmt: skip", f"{last} ticks,\n):  # fmt: skip", 1)
    # each section's marker and position; stamps in source order, each closing the one before
    found: list[tuple[int, int, str]] = []
    for index, (section, candidates) in enumerate(SECTIONS):
        usable = [m for m in candidates if src.count(m) == 1]
        if not usable:
            if source is not None:  # another revision's kernel may lack a section: 0 ticks
                continue
            raise SystemExit(f"kernel section marker of {section!r} not found exactly once")
        found.append((src.index(usable[0]), index, usable[0]))
    found.sort()
    for k, (_, _index, marker) in enumerate(found):
        stamp = "        t_now = _ticks()\n"
        if k > 0:
            stamp += f"        ticks[{found[k - 1][1]}] += t_now - t_prev\n"
        src = src.replace(marker, stamp + "        t_prev = t_now\n" + marker, 1)
    last = f"        ticks[{found[-1][1]}] += _ticks() - t_prev\n"
    src = src.replace(_END, last + _END, 1)
    module = types.ModuleType(name)
    module.__dict__["_ticks"] = _ticks
    sys.modules[module.__name__] = module
    exec(compile(src, name, "exec"), module.__dict__)  # our own source, rewritten
    return module.run_steps


def _tsc_ghz() -> float:
    @njit
    def read() -> int:
        return _ticks()  # type: ignore[no-any-return]

    read()
    t0, c0 = time.perf_counter(), read()
    time.sleep(0.2)
    return float((read() - c0) / (time.perf_counter() - t0) / 1e9)


def _whole_run(protocol: Any, semantics: str, n_scale: float, duration_s: float) -> dict[str, Any]:
    """Mean ticks per section over a whole protocol run, and the time outside the kernel."""
    kernel = instrumented_kernel()
    ticks = np.zeros(len(SECTIONS), dtype=np.int64)
    spent = {"steps": 0, "kernel_s": 0.0}
    warming = [False]
    uncounted = np.zeros_like(ticks)

    def timed(*a: Any) -> None:
        if warming[0]:  # the run's warm-up network: outside the run's wall time, not counted
            kernel(*a, uncounted)
            return
        t0 = time.perf_counter()
        kernel(*a, ticks)
        spent["kernel_s"] += time.perf_counter() - t0
        spent["steps"] += int(a[0].n_steps)  # StepInputs

    real_warm_up = run_module.warm_up_network

    def warm_up(*a: Any, **kw: Any) -> float:
        warming[0] = True
        try:
            return float(real_warm_up(*a, **kw))
        finally:
            warming[0] = False

    network_module.run_steps = timed  # type: ignore[attr-defined]
    run_module.warm_up_network = warm_up  # type: ignore[assignment]
    run: dict[str, Any] = {"semantics": semantics, "n_scale": n_scale, "seed": 1}
    run_experiment(protocol, duration_s=0.2, **run)  # compiles
    ticks[:] = 0
    spent.update(steps=0, kernel_s=0.0)
    res = run_experiment(protocol, duration_s=duration_s, **run)
    n = res.n_e + res.n_i
    per = ticks / (spent["steps"] * n)
    names = [name for name, _ in SECTIONS]
    return {
        "protocol": protocol.name, "n": n, "whole_run_model_s": duration_s,
        "wall_s": res.wall_s, "kernel_s": spent["kernel_s"],
        "outside_kernel_share": (res.wall_s - spent["kernel_s"]) / res.wall_s,
        "tsc_ghz": _tsc_ghz(),
        "ticks_per_neuron_step": dict(zip(names, np.round(per, 3).tolist(), strict=True)),
        "total_ticks_per_neuron_step": round(float(per.sum()), 3),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--protocol", default="ftsts-desync", help="network to profile")
    parser.add_argument("--semantics", default="paper", choices=["paper", "clean"])
    parser.add_argument("--n-scale", type=float, default=1.0, help="size factor (> 0)")
    parser.add_argument("--warm-windows", type=int, default=50, help="20 ms windows before (≥ 0)")
    parser.add_argument("--windows", type=int, default=2, help="20 ms windows per trial (≥ 1)")
    parser.add_argument("--trials", type=int, default=10, help="trials, minimum kept (≥ 1)")
    parser.add_argument(
        "--stimulated", action="store_true",
        help="apply the protocol's stimulus from its onset on, in the trials too",
    )  # fmt: skip
    parser.add_argument(
        "--whole-run", type=float, default=None, metavar="SECONDS",
        help="instead: run the protocol for SECONDS of model time as neuroloop-sim would (its "
        "stimulus and latch, seed 1) and report the mean ticks per section over the run and "
        "the share of the wall time spent outside the kernel",
    )  # fmt: skip
    passes = parser.add_mutually_exclusive_group()
    passes.add_argument(
        "--compare-array-pass", action="store_true",
        help="time the scalar-constant and the array pass alternately, trial by trial, from the "
        "same state, and report both",
    )  # fmt: skip
    passes.add_argument(
        "--array-pass", action="store_true",
        help="run the neuron pass over per-neuron constant arrays even where the kernel would "
        "take its scalar-constant pass (the same bits; to measure what that pass saves)",
    )  # fmt: skip
    parser.add_argument(
        "--against", metavar="REV", default=None,
        help="also time simulator/kernel.py as of git revision REV, alternating trial by "
        "trial with this tree's kernel from the same state, and report both and their ratio "
        "(REV's kernel runs with this tree's network, noise and helpers: for kernel-only "
        "changes that keep run_steps' arguments)",
    )  # fmt: skip
    args = parser.parse_args()
    if not args.n_scale > 0:
        parser.error(f"expected --n-scale > 0, actual {args.n_scale}")
    for name, value, least in [
        ("--warm-windows", args.warm_windows, 0),
        ("--windows", args.windows, 1),
        ("--trials", args.trials, 1),
    ]:
        if value < least:
            parser.error(f"expected {name} ≥ {least}, actual {value}")
    try:
        protocol = get_experiment(args.protocol)
        cfg = protocol.network_config(args.semantics, args.n_scale)
    except NeuroLoopError as exc:
        parser.error(str(exc))
    if args.whole_run is not None:
        if not args.whole_run > 0:
            parser.error(f"expected --whole-run > 0, actual {args.whole_run}")
        report = _whole_run(protocol, args.semantics, args.n_scale, args.whole_run)
        print(json.dumps(report, indent=2))
        return
    stimulus = protocol.stimulus if args.stimulated else None
    if args.stimulated and stimulus is None:
        parser.error(
            f"expected a protocol with a stimulus for --stimulated, actual {args.protocol}"
        )

    if args.against is not None and args.compare_array_pass:
        parser.error("expected at most one of --against and --compare-array-pass, actual both")
    kernel = instrumented_kernel()
    # the variants to time, label → (kernel, array pass); with two, trial by trial in
    # alternating order, so that the VM's drift falls on both alike
    variants: dict[str, tuple[Any, bool]]
    if args.compare_array_pass:
        variants = {"scalar_pass": (kernel, False), "array_pass": (kernel, True)}
    elif args.against is not None:
        other = _kernel_source_at(args.against)
        if other is None:
            parser.error(f"expected a git revision with simulator/kernel.py, actual {args.against}")
        variants = {
            "this": (kernel, args.array_pass),
            args.against: (instrumented_kernel(other, "kernel_profiled_against"), args.array_pass),
        }
    else:
        variants = {"this": (kernel, args.array_pass)}
    ticks = np.zeros(len(SECTIONS), dtype=np.int64)
    current = [kernel]
    network_module.run_steps = lambda *a: current[0](*a, ticks)  # type: ignore[attr-defined]
    net = Network(cfg)
    net.reset(seed=1)
    for w in range(args.warm_windows):
        net.advance(stimulus if w * 20.0 >= protocol.onset_ms else None, 20.0)
    labels = list(variants)
    best = {label: np.full(len(SECTIONS), np.iinfo(np.int64).max) for label in labels}
    steps = spikes = 0
    spikes_of: dict[str, int] = {}
    for k in range(args.trials + 1):  # the first trial compiles
        for label in labels if k % 2 == 0 else labels[::-1]:
            current[0], array_pass = variants[label]
            trial = copy.deepcopy(net)
            if array_pass:
                trial._uniform = False
            ticks[:] = 0
            steps, spikes = 0, 0
            for _ in range(args.windows):
                t0 = trial.step
                stats = trial.advance(stimulus, 20.0)
                steps += trial.step - t0
                spikes += stats.spike_neurons.shape[0]
            spikes_of[label] = spikes
            if k > 0:
                best[label] = np.minimum(best[label], ticks)
    names = [name for name, _ in SECTIONS]

    def section_report(label: str) -> dict[str, Any]:
        per = best[label] / (steps * cfg.n)
        return {
            "spikes_per_step": spikes_of[label] / steps,
            "ticks_per_neuron_step": dict(zip(names, np.round(per, 3).tolist(), strict=True)),
            "total_ticks_per_neuron_step": round(float(per.sum()), 3),
            "share": dict(zip(names, np.round(per / per.sum(), 3).tolist(), strict=True)),
        }

    report: dict[str, Any] = {
        "protocol": args.protocol, "n": cfg.n, "state_at_ms": args.warm_windows * 20.0,
        "stimulated": args.stimulated, "tsc_ghz": _tsc_ghz(),
    }  # fmt: skip
    if len(labels) == 2:
        for label in labels:
            report[label] = section_report(label)
        first, second = (report[label]["total_ticks_per_neuron_step"] for label in labels)
        report[f"total_ratio_{labels[0]}_over_{labels[1]}"] = round(first / second, 4)
        if args.against is not None:
            report["array_pass"] = args.array_pass
    else:
        report["array_pass"] = args.array_pass
        report.update(section_report("this"))
    print(json.dumps(report, indent=2))


def _kernel_source_at(rev: str) -> str | None:
    """``simulator/kernel.py`` as of git revision ``rev`` (None if there is none)."""
    out = subprocess.run(
        ["git", "show", f"{rev}:simulator/kernel.py"],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    return out.stdout if out.returncode == 0 else None


if __name__ == "__main__":
    main()
