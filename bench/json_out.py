"""How a bench script hands over its result: JSON on stdout and, if asked, in a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: The repository (a bench script's paths are reported relative to it).
ROOT = Path(__file__).resolve().parents[1]


def emit(report: dict[str, Any], path: Path | None) -> None:
    """Print ``report`` as indented JSON, and write the same text to ``path`` unless ``None``."""
    text = json.dumps(report, indent=2)
    print(text)
    if path is not None:
        path.write_text(text + "\n", "utf-8")


def shown(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (as a result records it)."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)
