"""Training and evaluation machinery for the RL environments (imports torch lazily)."""
