"""The kernel's arithmetic is written out, so that it does not depend on the CPU it runs on.

``tests/test_bench_digest.py::test_dynamics_are_frozen`` checks the result (the same pinned
fingerprints whichever CPU target Numba compiles for; ``.ci/run`` runs it for several). These
tests check the two means: no fast-math anywhere in the simulator's compiled code, and sums
in the documented order.
"""

from __future__ import annotations

import importlib
import math
from fractions import Fraction

import numpy as np
import pytest
from numba.core.registry import CPUDispatcher

from simulator.kernel import _kuramoto_sample, sum_in_lanes

MODULES = (
    "simulator.kernel", "simulator.noise", "simulator.reductions", "simulator.synchrony",
    "simulator.window", "simulator.stimulus", "simulator.sfc64", "simulator.prefetch",
    "simulator.threaded", "simulator.barrier",
)  # fmt: skip


def test_no_compiled_simulator_function_uses_fast_math() -> None:
    """Fast-math lets LLVM contract ``a·b + c`` into an FMA (only where the CPU has one) and
    re-associate sums to the CPU's vector width: both made results depend on the CPU."""
    checked = []
    for name in MODULES:
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if isinstance(value, CPUDispatcher):
                assert not value.targetoptions.get("fastmath"), f"{name}.{attr} uses fast-math"
                checked.append(attr)
    assert {"run_steps", "_neuron_pass", "_lazy_e_row", "sum_in_lanes", "run_steps_threaded",
            "barrier_wait", "normal_pairs"} <= set(checked)  # fmt: skip


def _sum_in_lanes_numpy(x: np.ndarray) -> float:
    """The documented order, from the docstring, one float64 addition at a time."""
    x = x.astype(np.float64)
    n = x.shape[0]
    if n < 4:
        s = 0.0
        for value in x:
            s += value
        return s
    s, i = 0.0, 0
    if n >= 16:
        lanes = [0.0] * 16
        while i < n - n % 16:
            for lane in range(16):
                lanes[lane] += x[i + lane]
            i += 16
        b = [((lanes[4 + k] + lanes[k]) + lanes[8 + k]) + lanes[12 + k] for k in range(4)]
        s = 0.0 + ((b[0] + b[2]) + (b[1] + b[3]))
    if n - i >= 4:
        e = [s, 0.0, 0.0, 0.0]
        while i < n - n % 4:
            for lane in range(4):
                e[lane] += x[i + lane]
            i += 4
        s = 0.0 + ((e[0] + e[2]) + (e[1] + e[3]))
    while i < n:
        s += x[i]
        i += 1
    return s


@pytest.mark.parametrize("n", [*range(0, 40), 51, 67, 400, 1600, 2400, 2405])
def test_sum_in_lanes_is_the_documented_order(n: int) -> None:
    rng = np.random.default_rng(n)
    # magnitudes over 2^±20, so that another order would round differently
    x = (rng.standard_normal(n + 7) * np.exp2(rng.integers(-20, 20, n + 7))).astype(np.float32)
    assert sum_in_lanes(x, 3, 3 + n) == _sum_in_lanes_numpy(x[3 : 3 + n])


def test_sum_in_lanes_order_matters_for_these_inputs() -> None:
    """The inputs above are sensitive to the order (else the test would prove nothing)."""
    x = (np.random.default_rng(1600).standard_normal(1600) * np.exp2(
        np.random.default_rng(1).integers(-20, 20, 1600))).astype(np.float32)  # fmt: skip
    in_order = 0.0
    for value in x.astype(np.float64):
        in_order += value
    assert sum_in_lanes(x, 0, 1600) != in_order


def _fma(a: float, b: float, c: float) -> float:
    """``a·b + c`` rounded once (exact rational arithmetic; ``int / int`` rounds correctly)."""
    exact = Fraction(a) * Fraction(b) + Fraction(c)
    return exact.numerator / exact.denominator


@pytest.mark.parametrize("n_e", [7, 51, 52, 103])
def test_kuramoto_sample_sums_and_rotates_in_the_documented_order(n_e: int) -> None:
    rng = np.random.default_rng(n_e)
    prev = np.where(rng.random(n_e) < 0.7, 5, -1).astype(np.int64)
    ang, rot = rng.uniform(0, 2 * np.pi, n_e), rng.uniform(0, 2 * np.pi, n_e)
    z_re, z_im, r_re, r_im = np.cos(ang), np.sin(ang), np.cos(rot), np.sin(rot)
    valid = [bool(p >= 0) for p in prev]
    whole = n_e - n_e % 4 if n_e >= 52 else 0
    lanes_re, lanes_im = [0.0] * 4, [0.0] * 4
    for i in range(whole):
        if valid[i]:
            lanes_re[i % 4] += z_re[i]
            lanes_im[i % 4] += z_im[i]
    sr = si = 0.0
    if whole:
        sr = 0.0 + ((lanes_re[0] + lanes_re[2]) + (lanes_re[1] + lanes_re[3]))
        si = 0.0 + ((lanes_im[0] + lanes_im[2]) + (lanes_im[1] + lanes_im[3]))
    for i in range(whole, n_e):
        if valid[i]:
            sr += z_re[i]
            si += z_im[i]
    expected_re = [
        _fma(r_re[i], z_re[i], -(r_im[i] * z_im[i])) if valid[i] else z_re[i] for i in range(n_e)
    ]
    expected_im = [
        _fma(r_im[i], z_re[i], r_re[i] * z_im[i]) if valid[i] else z_im[i] for i in range(n_e)
    ]
    kop_acc = np.array([0.25, 3.0])
    _kuramoto_sample(kop_acc, n_e, prev, z_re, z_im, r_re, r_im)
    count = sum(valid)
    assert count > 0
    assert kop_acc.tolist() == [0.25 + math.sqrt(_fma(si, si, sr * sr)) / count, 4.0]
    assert z_re.tolist() == expected_re
    assert z_im.tolist() == expected_im
