"""Shared test fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """Undo any ``configure_logging`` a CLI ``main()`` did inside a test."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def fresh_python(tmp_path: Path) -> Callable[..., str]:
    """Run Python code in a new process with its own Numba cache; return its stdout.

    Extra keyword arguments are environment variables (``NUMBA_CPU_NAME="generic"``). Calls
    share the cache directory, so a second call loads what the first compiled. The process
    must exit 0 (its stderr tail is shown otherwise) within five minutes.
    """

    def run(code: str, **env: str) -> str:
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
            timeout=300, env=dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), **env),
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.strip()

    return run
