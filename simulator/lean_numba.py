"""Import Numba without the SciPy BLAS and LAPACK bindings, which no simulator kernel calls.

When Numba sets up its NumPy support (``numba.np.arraymath``, imported by the first kernel
module) it imports ``scipy.linalg.cython_blas`` if SciPy is installed, to learn whether
``np.dot`` can be compiled; that loads ``scipy.linalg`` and its BLAS and LAPACK libraries,
16 MB of resident memory that a simulation never uses (about a tenth of the peak of
``neuroloop-sim run`` at N = 2000, docs/simulator.md#memory). :func:`import_numba_lean`
imports that module while the bindings are hidden, then unhides them, so a later
``import scipy.linalg`` works as usual.

What changes in Numba: only ``np.convolve`` and ``np.correlate`` in compiled code, which then
use a plain loop instead of ``np.dot`` (Numba's own fallback without SciPy). No simulator
kernel uses them, nor ``np.dot`` or ``np.linalg`` (``tests/test_sim_lean_memory.py`` checks
the sources), so the compiled kernels, and the results, are the same. The ``simulator``
package calls it when it is imported, so every process that imports the simulator before
SciPy's linear algebra saves the memory (``neuroloop-sim run``, ``serve``, the environments'
workers); once ``numba.np.arraymath`` or SciPy's BLAS is imported it does nothing.
"""

from __future__ import annotations

import importlib
import sys

#: The SciPy module Numba probes for BLAS (``numba.np.linalg.ensure_blas``).
BLAS_MODULE = "scipy.linalg.cython_blas"
#: The Numba module whose import probes for it.
PROBING_MODULE = "numba.np.arraymath"


def import_numba_lean() -> bool:
    """Import Numba's NumPy support without loading SciPy's BLAS; return whether it did.

    Returns:
        ``False`` when Numba's NumPy support was already imported (nothing to save).
    """
    if PROBING_MODULE in sys.modules:
        return False
    missing = object()
    saved = sys.modules.get(BLAS_MODULE, missing)
    if saved is not missing:
        return False  # SciPy's BLAS is loaded already: hiding it would save nothing
    sys.modules[BLAS_MODULE] = None  # type: ignore[assignment]  # makes the import fail
    try:
        importlib.import_module(PROBING_MODULE)
    finally:
        del sys.modules[BLAS_MODULE]
    return True
