"""FTSTS spiking-network simulator (Schmalz & Kumar 2019) in Numba."""

from simulator.lean_numba import import_numba_lean

# Before any kernel module: Numba's NumPy support without SciPy's BLAS (16 MB that no kernel
# uses; simulator/lean_numba.py).
import_numba_lean()
