"""simulator.reductions gives NumPy's sums, means and standard deviations bit for bit."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from simulator import reductions

SIZES = [*range(0, 300), 1023, 1024, 1025, 1599, 1600, 4096, 64_000, 64_321, 1_600_003]


@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e6])
def test_sum_mean_var_std_equal_numpys_bit_for_bit(scale: float) -> None:
    rng = np.random.default_rng(int(scale * 1000) % 97)
    for n in SIZES:
        a = rng.standard_normal(n) * scale + rng.uniform(-3, 3) * scale
        total = reductions.pairwise_sum(a)
        assert total == np.add.reduce(a), n
        assert np.signbit(total) == np.signbit(np.add.reduce(a)), n
        if n:
            assert reductions.mean(a) == a.mean(), n
            assert reductions.var(a) == a.var(), n
            assert reductions.std(a) == a.std(), n


def test_a_naive_sum_would_differ() -> None:
    """The check above can fail: a plain left-to-right sum is not NumPy's."""
    a = np.random.default_rng(0).standard_normal(100_000)
    naive = 0.0
    for x in a:
        naive += float(x)
    assert naive != reductions.pairwise_sum(a)


def test_cached_reductions_reload_in_a_new_process(fresh_python: Callable[..., str]) -> None:
    """Numba cannot reload a cached self-recursive function (it crashes); ours must reload."""
    code = (
        "import numpy as np; from simulator.reductions import std;"
        "a = np.arange(70_000, dtype=float); assert std(a) == a.std(); print('ok')"
    )
    for _ in range(2):  # the second process loads what the first one cached
        assert fresh_python(code) == "ok"
