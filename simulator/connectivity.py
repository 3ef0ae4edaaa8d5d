"""Sparse random connectivity in CSR form, drawn from one seeded generator.

Each projection is a ``Projection``: for presynaptic neuron ``j`` its synapses are the forward
positions ``ptr[j]:ptr[j + 1]``, with postsynaptic indices ``target`` (ascending) and the
storage index ``fwd_syn`` of each synapse's weight. The reverse index groups synapses by
postsynaptic neuron: ``in_syn[in_ptr[k]:in_ptr[k + 1]]`` are the storage indices of neuron
``k``'s incoming synapses and ``pre_of[s]`` is the presynaptic neuron of storage index ``s``.

Weights are stored presynaptic-major by default; :func:`to_post_major` stores them
postsynaptic-major instead, so that the potentiation walk over a postsynaptic neuron's inputs
(the heaviest STDP loop at N = 10 000) reads memory sequentially.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
#: Neuron and synapse indices are int32 (half the cache footprint of int64 in the spike loops;
#: 2³¹ synapses is far beyond any network this simulator builds).
IndexArray = npt.NDArray[np.int32]
FloatArray = npt.NDArray[np.float64]

_BLOCK_ROWS = 256


@dataclass
class Projection:
    """One projection between two populations, indexed within each population."""

    ptr: IntArray
    target: IndexArray
    weight: FloatArray
    in_ptr: IntArray
    in_syn: IndexArray
    pre_of: IndexArray
    fwd_syn: IndexArray

    @property
    def n_synapses(self) -> int:
        """Number of synapses."""
        return int(self.target.shape[0])

    def forward_weights(self) -> FloatArray:
        """The weights in forward (presynaptic-major, target-ascending) order, as a copy."""
        return self.weight[self.fwd_syn]


def to_post_major(proj: Projection) -> Projection:
    """The same projection with its weights stored postsynaptic-major."""
    perm = proj.in_syn  # storage (new) position m holds old storage index perm[m]
    fwd_old = proj.fwd_syn
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(perm.shape[0], dtype=np.int32)
    return Projection(
        ptr=proj.ptr,
        target=proj.target,
        weight=proj.weight[perm].copy(),
        in_ptr=proj.in_ptr,
        in_syn=np.arange(perm.shape[0], dtype=np.int32),
        pre_of=proj.pre_of[perm].copy(),
        fwd_syn=inverse[fwd_old],
    )


def bernoulli_projection(
    rng: np.random.Generator,
    n_pre: int,
    n_post: int,
    p: float,
    weight: float,
    *,
    no_self: bool = False,
) -> Projection:
    """Draw an independent Bernoulli(p) connection for every ordered (pre, post) pair.

    Args:
        rng: The run's generator.
        n_pre: Presynaptic population size.
        n_post: Postsynaptic population size.
        p: Connection probability.
        weight: Initial weight of every synapse.
        no_self: Exclude ``pre == post`` (recurrent projections within one population).

    Returns:
        The projection with forward and reverse indices.
    """
    counts = np.zeros(n_pre, dtype=np.int64)
    targets: list[IndexArray] = []
    for start in range(0, n_pre, _BLOCK_ROWS):
        stop = min(n_pre, start + _BLOCK_ROWS)
        mask = rng.random((stop - start, n_post)) < p
        if no_self:
            rows = np.arange(start, stop)
            keep = rows < n_post
            mask[np.nonzero(keep)[0], rows[keep]] = False
        counts[start:stop] = mask.sum(axis=1)
        targets.append(np.nonzero(mask)[1].astype(np.int32))
    ptr = np.zeros(n_pre + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    target = np.concatenate(targets) if targets else np.zeros(0, dtype=np.int32)
    pre_of = np.repeat(np.arange(n_pre, dtype=np.int32), counts)
    order = np.argsort(target, kind="stable")
    in_counts = np.bincount(target, minlength=n_post).astype(np.int64)
    in_ptr = np.zeros(n_post + 1, dtype=np.int64)
    np.cumsum(in_counts, out=in_ptr[1:])
    return Projection(
        ptr=ptr,
        target=target,
        weight=np.full(target.shape[0], weight, dtype=np.float64),
        in_ptr=in_ptr,
        in_syn=order.astype(np.int32),
        pre_of=pre_of,
        fwd_syn=np.arange(target.shape[0], dtype=np.int32),
    )


def empty_projection(n_pre: int, n_post: int) -> Projection:
    """A projection without synapses (a disabled variant)."""
    z = np.zeros(0, dtype=np.int32)
    return Projection(
        ptr=np.zeros(n_pre + 1, dtype=np.int64),
        target=z,
        weight=np.zeros(0, dtype=np.float64),
        in_ptr=np.zeros(n_post + 1, dtype=np.int64),
        in_syn=z.copy(),
        pre_of=z.copy(),
        fwd_syn=z.copy(),
    )
