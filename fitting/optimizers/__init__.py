"""Optimisers sharing one budget accounting through :class:`fitting.engine.Engine`."""
