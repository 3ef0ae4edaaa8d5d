"""Compile NEURON ``.mod`` files once, into a cache directory keyed by their content hash.

The compiled library is reused by every later run (and by every worker process) as long as the
mod sources are unchanged; a changed file gives a new hash and therefore a fresh compile.
Compilation runs ``nrnivmodl`` (shipped with the ``neuron`` wheel) as a subprocess with a
timeout, so it never touches NEURON state in the calling process.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import structlog

from core.errors import FittingError

log = structlog.get_logger()

COMPILE_TIMEOUT_S = 600.0
_DONE_MARKER = ".neuroloop-compiled"


def default_cache_dir() -> Path:
    """``$NEUROLOOP_CACHE_DIR/mod`` if set, else ``~/.cache/neuroloop/mod``."""
    root = os.environ.get("NEUROLOOP_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "neuroloop"
    return base / "mod"


def find_mod_files(mod_dirs: Sequence[Path]) -> list[Path]:
    """Every ``*.mod`` file in the given directories, sorted by name.

    Raises:
        FittingError: If a directory is missing or two files share a name.
    """
    files: list[Path] = []
    for directory in mod_dirs:
        if not directory.is_dir():
            raise FittingError(
                f"Expected a directory of .mod files, actual missing path {directory}"
            )
        files.extend(sorted(directory.glob("*.mod")))
    names = [f.name for f in files]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise FittingError(
            f"Expected unique .mod file names across mod dirs, actual duplicates {clashes}"
        )
    return sorted(files, key=lambda f: f.name)


def mod_hash(mod_files: Sequence[Path]) -> str:
    """SHA-256 over the names and contents of the mod files (first 16 hex digits)."""
    digest = hashlib.sha256()
    for path in sorted(mod_files, key=lambda f: f.name):
        digest.update(path.name.encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def find_nrnivmodl() -> Path:
    """Locate ``nrnivmodl``: next to the running Python first, then on ``PATH``."""
    beside = Path(sys.executable).parent / "nrnivmodl"
    if beside.exists():
        return beside
    found = shutil.which("nrnivmodl")
    if found is None:
        raise FittingError(
            "Expected nrnivmodl (from the neuron wheel) next to the Python executable or on PATH, "
            "actual not found; install neuron in this environment"
        )
    return Path(found)


def compile_mechanisms(mod_dirs: Sequence[Path], cache_dir: Path | None = None) -> Path | None:
    """Compile the mod files of ``mod_dirs`` unless an identical build is cached.

    Args:
        mod_dirs: Directories holding ``.mod`` files.
        cache_dir: Root of the compile cache (default :func:`default_cache_dir`).

    Returns:
        The directory to pass to ``neuron.load_mechanisms``, or ``None`` if there are no mod files.

    Raises:
        FittingError: If ``nrnivmodl`` or the C compiler fails or times out.
    """
    mod_files = find_mod_files(mod_dirs)
    if not mod_files:
        return None
    root = cache_dir if cache_dir is not None else default_cache_dir()
    target = root / mod_hash(mod_files)
    if (target / _DONE_MARKER).exists():
        log.debug("mechanisms_cached", directory=str(target))
        return target
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        raise FittingError(
            "Expected a C compiler (cc or gcc) to compile .mod files, actual none on PATH; "
            "install build tools (e.g. apt-get install build-essential)"
        )
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="build-", dir=root))
    for path in mod_files:
        shutil.copy2(path, staging / path.name)
    log.info("mechanisms_compiling", files=[f.name for f in mod_files], directory=str(target))
    try:
        result = subprocess.run(
            [str(find_nrnivmodl())],
            cwd=staging,
            capture_output=True,
            text=True,
            timeout=COMPILE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise FittingError(f"nrnivmodl did not finish within {COMPILE_TIMEOUT_S:.0f} s") from err
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        tail = (result.stdout + result.stderr)[-2000:]
        raise FittingError(f"nrnivmodl failed (exit {result.returncode}) on {mod_files}:\n{tail}")
    (staging / _DONE_MARKER).write_text("ok\n")
    try:
        staging.rename(target)
    except OSError:
        # Another process finished the same build first; its result is identical.
        shutil.rmtree(staging, ignore_errors=True)
    return target


_loaded: set[str] = set()


def load_compiled(directory: Path) -> None:
    """Load a compiled mechanism directory into this process's NEURON (once per process)."""
    key = str(directory.resolve())
    if key in _loaded:
        return
    import neuron

    if not neuron.load_mechanisms(key, warn_if_already_loaded=False):
        raise FittingError(f"Expected compiled mechanisms in {directory}, actual load failure")
    _loaded.add(key)
