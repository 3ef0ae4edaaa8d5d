"""Example measurement sets shipped with NeuroLoop (data files; see docs/fitting.md)."""
