"""Serial stimulator driver, device wire protocol, device emulator and bridge."""
