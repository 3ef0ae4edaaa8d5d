"""Bottom layer shared by every package: it imports nothing of ours above it."""
