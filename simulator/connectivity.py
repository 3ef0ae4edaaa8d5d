"""Sparse random connectivity in CSR form, drawn from one seeded generator.

Each projection is a ``Projection``: for presynaptic neuron ``j`` its synapses are
``ptr[j]:ptr[j + 1]``, with postsynaptic indices ``target`` (ascending) and per-synapse
weights ``weight``. Plastic projections also carry the reverse index (synapses grouped by
postsynaptic neuron) that post-spike STDP walks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

_BLOCK_ROWS = 256


@dataclass
class Projection:
    """One projection between two populations, indexed within each population."""

    ptr: IntArray
    target: IntArray
    weight: FloatArray
    in_ptr: IntArray
    in_syn: IntArray
    pre_of: IntArray

    @property
    def n_synapses(self) -> int:
        """Number of synapses."""
        return int(self.target.shape[0])


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
    targets: list[IntArray] = []
    for start in range(0, n_pre, _BLOCK_ROWS):
        stop = min(n_pre, start + _BLOCK_ROWS)
        mask = rng.random((stop - start, n_post)) < p
        if no_self:
            rows = np.arange(start, stop)
            keep = rows < n_post
            mask[np.nonzero(keep)[0], rows[keep]] = False
        counts[start:stop] = mask.sum(axis=1)
        targets.append(np.nonzero(mask)[1].astype(np.int64))
    ptr = np.zeros(n_pre + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    target = np.concatenate(targets) if targets else np.zeros(0, dtype=np.int64)
    pre_of = np.repeat(np.arange(n_pre, dtype=np.int64), counts)
    order = np.argsort(target, kind="stable")
    in_counts = np.bincount(target, minlength=n_post).astype(np.int64)
    in_ptr = np.zeros(n_post + 1, dtype=np.int64)
    np.cumsum(in_counts, out=in_ptr[1:])
    return Projection(
        ptr=ptr,
        target=target,
        weight=np.full(target.shape[0], weight, dtype=np.float64),
        in_ptr=in_ptr,
        in_syn=order.astype(np.int64),
        pre_of=pre_of,
    )


def empty_projection(n_pre: int, n_post: int) -> Projection:
    """A projection without synapses (a disabled variant)."""
    z = np.zeros(0, dtype=np.int64)
    return Projection(
        ptr=np.zeros(n_pre + 1, dtype=np.int64),
        target=z,
        weight=np.zeros(0, dtype=np.float64),
        in_ptr=np.zeros(n_post + 1, dtype=np.int64),
        in_syn=z.copy(),
        pre_of=z.copy(),
    )
