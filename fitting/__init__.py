"""Fit channel parameters of multi-compartment NEURON models to measurements."""
