"""Shipped default envelopes: ``simulator.toml`` (model units) and ``device.toml`` (mA)."""
