"""Sparse random connectivity in CSR form, drawn from one seeded generator.

Each projection is a ``Projection``: for presynaptic neuron ``j`` its synapses are the
positions ``ptr[j]:ptr[j + 1]``, with postsynaptic indices ``target`` (ascending) and weights
``weight``. The reverse index groups synapses by postsynaptic neuron:
``in_syn[in_ptr[k]:in_ptr[k + 1]]`` are the positions of neuron ``k``'s incoming synapses and
``pre_of[s]`` is the presynaptic neuron of position ``s``.

Weights are stored presynaptic-major, in that order: the kernel reads an E
cell's outgoing E→I synapses as one contiguous row when it fires and leaves the potentiation
of an I cell's inputs pending (see :mod:`simulator.kernel`), so no loop walks the reverse
index except the symmetric rule's (Fig 12).

The E→I weights, plastic in every network, are stored in float32, as GPU network simulators
store weights: at N = 10 000 they are 1.6 M values hit at random by the spike loops, and
halving them from 12.8 to 6.4 MB made the kernel ≈ 20 % faster there. The kernel computes every
update in double and rounds once when it stores the weight; the relative rounding of a weight
near 1 is 6·10⁻⁸, about 10⁻⁴ of one STDP step at the paper's learning rate, and round-to-nearest
is unbiased. Bounds are applied at the float32 values just inside them (:func:`storable_bounds`),
so a clipped weight never lies outside ``[w_min, w_max]``. The other projections (static in all
but the Fig 11 variant) keep float64 weights: float32 I→E weights made the kernel slower.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
#: Synapse indices are int32 (half the cache footprint of int64 in the spike loops; 2³¹
#: synapses is far beyond any network this simulator builds).
IndexArray = npt.NDArray[np.int32]
#: Neuron indices (a synapse's target, a storage slot's presynaptic cell): int16 while the
#: population has at most 32 767 cells, else int32 (see :func:`neuron_index_dtype`).
NeuronIndexArray = npt.NDArray[np.signedinteger[Any]]
FloatArray = npt.NDArray[np.float64]
#: Stored synaptic weights: float32 for E→I, float64 otherwise (see the module docstring).
WeightArray = npt.NDArray[np.floating[Any]]

_BLOCK_ROWS = 256


class Projection(NamedTuple):
    """One projection between two populations, indexed within each population.

    A named tuple, so that the kernel takes it as one argument (``simulator/kernel_args.py``).
    """

    ptr: IntArray
    target: NeuronIndexArray
    weight: WeightArray
    in_ptr: IntArray
    in_syn: IndexArray
    pre_of: NeuronIndexArray

    @property
    def n_synapses(self) -> int:
        """Number of synapses."""
        return int(self.target.shape[0])

    def forward_weights(self) -> FloatArray:
        """The weights in forward (presynaptic-major, target-ascending) order, as a float64 copy."""
        return self.weight.astype(np.float64)


def storable_bounds(lo: float, hi: float) -> tuple[float, float]:
    """The float32 values just inside ``[lo, hi]``: the clip bounds for stored weights.

    A weight clipped at these and rounded to float32 stays within ``[lo, hi]``.
    """
    lo32, hi32 = np.float32(lo), np.float32(hi)
    if float(lo32) < lo:
        lo32 = np.nextafter(lo32, np.float32(np.inf))
    if float(hi32) > hi:
        hi32 = np.nextafter(hi32, np.float32(-np.inf))
    return float(lo32), float(hi32)


def neuron_index_dtype(n_cells: int) -> type[np.int16] | type[np.int32]:
    """The storage type of indices into a population of ``n_cells``: int16 when they fit.

    The spike loops read a synapse's target (and, under the symmetric rule, each input's
    presynaptic cell); at N = 10 000 these index arrays are 6.4 MB each in int32, and halving
    them made whole runs ≈ 15 % faster there (alternated A/B runs, `docs/simulator.md`).
    """
    return np.int16 if n_cells <= np.iinfo(np.int16).max else np.int32


def bernoulli_projection(
    rng: np.random.Generator,
    n_pre: int,
    n_post: int,
    p: float,
    weight: float,
    *,
    no_self: bool = False,
    dtype: type[np.float32] | type[np.float64] = np.float64,
) -> Projection:
    """Draw an independent Bernoulli(p) connection for every ordered (pre, post) pair.

    Args:
        rng: The run's generator.
        n_pre: Presynaptic population size.
        n_post: Postsynaptic population size.
        p: Connection probability.
        weight: Initial weight of every synapse.
        no_self: Exclude ``pre == post`` (recurrent projections within one population).
        dtype: Storage type of the weights.

    Returns:
        The projection with forward and reverse indices (neuron indices in the smallest type
        of :func:`neuron_index_dtype`).
    """
    counts = np.zeros(n_pre, dtype=np.int64)
    target_dtype = neuron_index_dtype(n_post)
    targets: list[NeuronIndexArray] = []
    for start in range(0, n_pre, _BLOCK_ROWS):
        stop = min(n_pre, start + _BLOCK_ROWS)
        mask = rng.random((stop - start, n_post)) < p
        if no_self:
            rows = np.arange(start, stop)
            keep = rows < n_post
            mask[np.nonzero(keep)[0], rows[keep]] = False
        counts[start:stop] = mask.sum(axis=1)
        targets.append(np.nonzero(mask)[1].astype(target_dtype))
    ptr = np.zeros(n_pre + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    target = np.concatenate(targets) if targets else np.zeros(0, dtype=target_dtype)
    pre_of: NeuronIndexArray = np.repeat(  # type: ignore[assignment]  # keeps the int dtype
        np.arange(n_pre, dtype=neuron_index_dtype(n_pre)), counts
    )
    order = np.argsort(target, kind="stable")
    in_counts = np.bincount(target, minlength=n_post).astype(np.int64)
    in_ptr = np.zeros(n_post + 1, dtype=np.int64)
    np.cumsum(in_counts, out=in_ptr[1:])
    return Projection(
        ptr=ptr,
        target=target,
        weight=np.full(target.shape[0], weight, dtype=dtype),
        in_ptr=in_ptr,
        in_syn=order.astype(np.int32),
        pre_of=pre_of,
    )


def empty_projection(n_pre: int, n_post: int) -> Projection:
    """A projection without synapses (a disabled variant)."""
    return Projection(
        ptr=np.zeros(n_pre + 1, dtype=np.int64),
        # the same index types as a drawn projection: one compiled kernel for every variant
        target=np.zeros(0, dtype=neuron_index_dtype(n_post)),
        weight=np.zeros(0, dtype=np.float64),
        in_ptr=np.zeros(n_post + 1, dtype=np.int64),
        in_syn=np.zeros(0, dtype=np.int32),
        pre_of=np.zeros(0, dtype=neuron_index_dtype(n_pre)),
    )
