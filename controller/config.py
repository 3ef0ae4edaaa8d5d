"""Run configuration of ``neuroloop-controller``: defaults, a TOML file, then command-line flags.

Precedence is explicit: a flag given on the command line beats the ``--config`` file, which beats
the defaults here. Every value is validated with a message that names the key, the expected
range and what arrived. The file layout is documented in ``docs/controller.md``::

    [controller]            # backend, connect, in_process, period_ms, duration_s, tail_s,
                            # pace, seed, envelope, record, record_dir, log_format, log_level,
                            # timeout_s, stall_limit_s, threads
    [policy]                # name, amplitude, frequency_hz, pulse_width_us, onset_ms,
                            # latch_below_mv
    [simulator]             # network parameters (simulator.config.NetworkConfig fields)
    [backend.options]       # backend-specific configure options
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

from core.errors import ConfigError, did_you_mean
from core.logs import DEFAULT_LOG_FORMAT, DEFAULT_LOG_LEVEL, LOG_FORMATS, LOG_LEVELS
from core.threads import check_threads
from simulator.config import NetworkConfig

_CONTROLLER_KEYS = {
    "backend": str,
    "session": str,
    "connect": str,
    "in_process": bool,
    "period_ms": float,
    "duration_s": float,
    "tail_s": float,
    "pace": str,
    "seed": int,
    "envelope": str,
    "record": str,
    "record_dir": str,
    "no_record": bool,
    "log_format": str,
    "log_level": str,
    "timeout_s": float,
    "stall_limit_s": float,
    "threads": object,  # an integer or "auto": core.threads.check_threads
}
_POLICY_KEYS = {
    "name": str,
    "amplitude": float,
    "frequency_hz": float,
    "pulse_width_us": float,
    "onset_ms": float,
    "latch_below_mv": float,
}


@dataclass(frozen=True)
class RunConfig:
    """Everything one controller run needs (units in the names; amplitude in the envelope unit)."""

    backend: str = "sim"
    session: str | None = None
    connect: str | None = None
    in_process: bool = False
    policy: str = "ftsts"
    amplitude: float | None = None
    frequency_hz: float | None = None
    pulse_width_us: float | None = None
    onset_ms: float = 1980.0
    latch_below_mv: float = 75.0
    period_ms: float = 20.0
    duration_s: float = 25.0
    tail_s: float = 0.0
    pace: str = "realtime"
    seed: int = 0
    envelope: str | None = None
    record: str | None = None
    record_dir: str = "runs"
    no_record: bool = False
    log_format: str = DEFAULT_LOG_FORMAT
    log_level: str = DEFAULT_LOG_LEVEL
    timeout_s: float = 5.0
    stall_limit_s: float = 5.0
    threads: int | str | None = None
    simulator: dict[str, Any] = field(default_factory=dict)
    backend_options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> RunConfig:
        """Check every value; return ``self``.

        Raises:
            ConfigError: Naming the first bad value.
        """
        self.check_values()
        self._check_combinations()
        return self

    def check_values(self) -> None:
        """Check each value on its own (choices, ranges), whatever the others are.

        Raises:
            ConfigError: Naming the first bad value.
        """
        _choice("backend", self.backend, ("sim", "serial", "replay"))
        _choice("pace", self.pace, ("realtime", "fast"))
        _choice("log_format", self.log_format, LOG_FORMATS)
        _choice("log_level", self.log_level, LOG_LEVELS)
        _range("period_ms", self.period_ms, 1.0, 10_000.0)
        _range("duration_s", self.duration_s, 1e-3, 7 * 24 * 3600.0)
        _range("tail_s", self.tail_s, 0.0, 7 * 24 * 3600.0)
        _range("timeout_s", self.timeout_s, 0.01, 600.0)
        _range("stall_limit_s", self.stall_limit_s, 0.01, 3600.0)
        _range("onset_ms", self.onset_ms, 0.0, 1e9)
        _range("latch_below_mv", self.latch_below_mv, -1e6, 1e6)
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"Expected seed in [0, 2**63), actual {self.seed}")
        if self.threads is not None:
            check_threads(self.threads)

    def _check_combinations(self) -> None:
        if self.tail_s >= self.duration_s:
            raise ConfigError(
                f"Expected tail_s < duration_s ({self.duration_s} s: the policy must get some "
                f"of the run), actual {self.tail_s}"
            )
        if self.pace == "fast" and self.backend == "serial":
            raise ConfigError(
                "Expected --pace realtime for --backend serial (fast is for the simulator and "
                "replays only), actual fast"
            )
        if self.session is not None and self.backend != "replay":
            raise ConfigError(
                f"Expected a SESSION recording only with --backend replay, actual --backend "
                f"{self.backend} with {self.session!r}"
            )
        if self.backend == "replay" and self.session is None and self.connect is None:
            raise ConfigError(
                "Expected --backend replay SESSION (a recording to serve) or --connect ADDR of a "
                "running replay backend, actual neither"
            )
        if self.in_process and self.backend != "sim":
            raise ConfigError(
                f"Expected --in-process only with --backend sim, actual {self.backend}"
            )
        if self.threads is not None and (self.backend != "sim" or self.connect is not None):
            used = f"--connect {self.connect}"
            if self.backend != "sim":
                used = f"--backend {self.backend}"
            raise ConfigError(
                "Expected threads only for a simulator this command starts (--backend sim, "
                "without --connect; a running server has its own: neuroloop-sim serve "
                f"--threads N), actual threads {self.threads!r} with {used}"
            )
        if self.simulator and not self.in_process:
            raise ConfigError(
                "Expected a [simulator] table only with in_process = true (a simulator server "
                f"takes [backend.options], e.g. n_scale), actual keys {sorted(self.simulator)}"
            )
        for name in ("amplitude", "frequency_hz", "pulse_width_us"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ConfigError(f"Expected a finite {name}, actual {value}")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"Expected {name} in {list(choices)}, actual {value!r}")


def _range(name: str, value: float, lo: float, hi: float) -> None:
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ConfigError(f"Expected {name} in [{lo}, {hi}], actual {value}")


def _typed(where: str, value: Any, kind: type) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected an integer, actual {value!r}")
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: expected a {kind.__name__}, actual {value!r}")
    return value


def _known_key(path: Path, section: str, key: str, known: Iterable[str]) -> None:
    """Refuse a key the section does not have, naming the file and the closest keys."""
    if key not in known:
        raise ConfigError(
            f"{path}: [{section}] has no key {key!r}.{did_you_mean(key, known)} "
            f"Expected one of {sorted(known)}"
        )


def load_run_config(path: Path) -> dict[str, Any]:
    """Read a run-config TOML file into :class:`RunConfig` keyword arguments.

    Raises:
        ConfigError: Unreadable file, bad TOML, unknown section or key, or a wrong type.
    """
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except OSError as err:
        raise ConfigError(f"Expected a readable --config file at {path}, actual {err}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"Expected TOML in {path}, actual parse error: {err}") from err
    allowed = {"controller", "policy", "simulator", "backend"}
    extra = sorted(set(data) - allowed)
    if extra:
        hints = "".join(did_you_mean(name, allowed) for name in extra)
        raise ConfigError(
            f"{path}: expected sections {sorted(allowed)}, actual unknown {extra}.{hints}"
        )
    out: dict[str, Any] = {}
    sections: tuple[tuple[str, dict[str, type], dict[str, str]], ...] = (
        ("controller", _CONTROLLER_KEYS, {}),
        ("policy", _POLICY_KEYS, {"name": "policy"}),
    )
    for section, keys, rename in sections:
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: expected [{section}] to be a table, actual {table!r}")
        for key, value in table.items():
            _known_key(path, section, str(key), keys)
            where = f"{path}: [{section}] {key}"
            name = rename.get(str(key), str(key))
            out[name] = _typed(where, value, keys[key])
            try:  # each value on its own, so that the message names the file and section
                replace(RunConfig(), **{name: out[name]}).check_values()
            except ConfigError as err:
                raise ConfigError(f"{where}: {err}") from None
    simulator = data.get("simulator", {})
    if not isinstance(simulator, dict):
        raise ConfigError(f"{path}: expected [simulator] to be a table, actual {simulator!r}")
    network_keys = {f.name for f in fields(NetworkConfig)}
    for key in simulator:
        _known_key(path, "simulator", str(key), network_keys)
    out["simulator"] = dict(simulator)
    backend = data.get("backend", {})
    if not isinstance(backend, dict) or set(backend) - {"options"}:
        raise ConfigError(
            f"{path}: expected [backend] with only an 'options' table, actual {backend!r}"
        )
    options = backend.get("options", {})
    if not isinstance(options, dict):
        raise ConfigError(f"{path}: expected [backend.options] to be a table, actual {options!r}")
    out["backend_options"] = dict(options)
    return out


def merge(file_values: dict[str, Any], cli_values: dict[str, Any]) -> RunConfig:
    """Defaults ← file ← command line (``None`` on the command line means "not given")."""
    names = {f.name for f in fields(RunConfig)}
    config = replace(RunConfig(), **{k: v for k, v in file_values.items() if k in names})
    given = {k: v for k, v in cli_values.items() if k in names and v is not None}
    if given.get("record") is not None:
        given.setdefault("no_record", False)  # --record beats no_record in the file
    return replace(config, **given).validate()
