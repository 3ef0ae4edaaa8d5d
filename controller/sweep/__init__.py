"""``neuroloop-sweep``: parameter studies of the simulator on the local pool or a Ray cluster."""
