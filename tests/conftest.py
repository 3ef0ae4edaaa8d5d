"""Shared test fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """Undo any ``configure_logging`` a CLI ``main()`` did inside a test."""
    yield
    structlog.reset_defaults()
