"""FTSTS spiking-network simulator (Schmalz & Kumar 2019) in Numba."""
