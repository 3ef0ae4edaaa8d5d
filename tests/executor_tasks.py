"""Importable task functions for tests/test_executor.py (worker processes import them)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def square(x: int) -> int:
    return x * x


def raise_value_error(x: float) -> float:
    raise ValueError(f"refuses x = {x}")


def die_once(marker: str, x: int) -> int:
    """Kill its own worker process on the first call (a marker file remembers it)."""
    path = Path(marker)
    if not path.exists():
        path.write_text("died")
        os.kill(os.getpid(), signal.SIGKILL)
    return x * 10


def always_die(x: int) -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return x


def sleep_s(seconds: float) -> float:
    """Sleep (a task that outlives its timeout)."""
    time.sleep(seconds)
    return seconds


def hang_once(marker: str, x: int) -> int:
    """Count its starts in ``marker``; hang on the first start, return ``10 * x`` after."""
    path = Path(marker)
    starts = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(starts))
    if starts == 1:
        time.sleep(600.0)
    return x * 10
