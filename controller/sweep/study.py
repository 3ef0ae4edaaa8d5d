"""A parameter study of the simulator described in one TOML file, and its points.

A study names what runs at each point (a paper protocol of :mod:`simulator.experiments`, or a
stimulation policy run like ``neuroloop-eval`` runs it), the parameters it varies, how their
values are chosen (``grid``, ``random`` or ``lhs``, a Latin hypercube), and how many network
seeds each point gets. The format is documented in docs/sweep.md.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigError, did_you_mean
from simulator.config import NetworkConfig
from simulator.stimulus import Stimulus

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SAMPLERS = ("grid", "random", "lhs")
#: Parameters of the pulse train (protocol studies).
STIMULUS_PARAMS = ("amplitude_mv", "frequency_hz", "pulse_width_us", "ei_offset_ms")
#: Parameters of the protocol itself (protocol studies).
PROTOCOL_PARAMS = ("onset_ms", "latch_mv")
#: Network constants (both kinds of study), e.g. ``j_i_mv``.
NETWORK_PARAMS = tuple(
    f.name for f in fields(NetworkConfig) if f.name not in ("semantics", "paper_quirks")
)
#: Network constants that take whole numbers (sampled values are rounded).
INTEGER_PARAMS = frozenset(f.name for f in fields(NetworkConfig) if f.type in (int, "int"))
#: Policies a policy study can run: the scripted methods of ``neuroloop-eval`` or a bundle.
SCRIPTED_POLICIES = ("ftsts", "latched", "off")

_STUDY_KEYS = {
    "name",
    "protocol",
    "policy",
    "semantics",
    "n_scale",
    "duration_s",
    "seeds",
    "seed_base",
    "onset_ms",
    "controlled_s",
    "tail_s",
}
_SAMPLE_KEYS = {"method", "points", "seed"}
_PLOT_KEYS = {"x", "y", "metrics"}


@dataclass(frozen=True)
class Range:
    """A continuous range sampled by ``random`` or ``lhs`` (``log``: uniform in log space)."""

    low: float
    high: float
    log: bool = False

    def at(self, u: float) -> float:
        """The value at quantile ``u`` in [0, 1)."""
        if self.log:
            return float(
                math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
            )
        return float(self.low + u * (self.high - self.low))


@dataclass(frozen=True)
class Study:
    """A parsed study file.

    Args:
        name: Study name (titles, file names).
        kind: ``protocol`` or ``policy``.
        target: The protocol name, or the policy (``ftsts``, ``latched``, ``off`` or a bundle
            directory).
        semantics: ``paper`` or ``clean``.
        n_scale: Network size relative to the protocol's (N = 2000 for most).
        duration_s: Protocol run length (``None``: the protocol's own).
        seeds: Network seeds per point.
        seed_base: First seed.
        sampler: ``grid``, ``random`` or ``lhs``.
        points: Parameter sets drawn by ``random``/``lhs``.
        sample_seed: Seed of those draws.
        parameters: Name → list of values (grid) or :class:`Range`.
        fixed: Name → value applied at every point.
        episode: Policy studies: ``onset_ms``, ``controlled_s``, ``tail_s``.
        plot: ``x``, ``y`` and ``metrics`` of the heat maps.
        source: The file's text (kept with the results; a resume must match it).
    """

    name: str
    kind: str
    target: str
    semantics: str
    n_scale: float
    duration_s: float | None
    seeds: int
    seed_base: int
    sampler: str
    points: int
    sample_seed: int
    parameters: dict[str, list[float] | Range]
    fixed: dict[str, Any] = field(default_factory=dict)
    episode: dict[str, float] = field(default_factory=dict)
    plot: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def digest(self) -> str:
        """Hash of the file's text: a resume refuses a different study."""
        return hashlib.sha256(self.source.encode("utf-8")).hexdigest()[:16]

    def parameter_sets(self) -> list[dict[str, float]]:
        """Every point's parameter values, in a fixed order (seeded draws for random/lhs)."""
        names = list(self.parameters)
        if self.sampler == "grid":
            lists = [v for v in self.parameters.values() if isinstance(v, list)]
            return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*lists)]
        rng = np.random.default_rng(self.sample_seed)
        ranges = [v for v in self.parameters.values() if isinstance(v, Range)]
        if self.sampler == "random":
            u = rng.random((self.points, len(names)))
        else:  # Latin hypercube: one draw in each of ``points`` strata per dimension.
            u = np.empty((self.points, len(names)))
            for j in range(len(names)):
                strata = (rng.permutation(self.points) + rng.random(self.points)) / self.points
                u[:, j] = strata
        return [
            {
                n: _sampled(n, r.at(float(u[i, j])))
                for j, (n, r) in enumerate(zip(names, ranges, strict=True))
            }
            for i in range(self.points)
        ]

    def seeds_list(self) -> list[int]:
        """The network seeds of every point."""
        return [self.seed_base + k for k in range(self.seeds)]


def _sampled(name: str, value: float) -> float:
    return round(value) if name in INTEGER_PARAMS else round(value, 10)


def point_key(params: Mapping[str, Any], seed: int) -> str:
    """A stable name of one (parameter set, seed) pair: same values, same key."""
    text = json.dumps({"params": dict(sorted(params.items())), "seed": seed}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def load_study(path: Path) -> Study:
    """Read and check a study file.

    Raises:
        ConfigError: Unreadable file, unknown keys, bad values; the message names the file,
            the key, what was expected and what arrived.
    """
    try:
        source = path.read_text("utf-8")
        data = tomllib.loads(source)
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"{path}: expected a readable TOML study file, actual: {err}") from None
    return parse_study(data, source, str(path))


def _unknown(section: str, keys: Mapping[str, Any], known: set[str], where: str) -> None:
    for key in keys:
        if key not in known:
            raise ConfigError(
                f"{where}: [{section}] expected keys from {sorted(known)}, actual {key!r}."
                + did_you_mean(key, known)
            )


def _number(where: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number for {name}, actual {value!r}")
    return float(value)


def parse_study(data: Mapping[str, Any], source: str = "", where: str = "study") -> Study:
    """Build a :class:`Study` from parsed TOML (see :func:`load_study`)."""
    _unknown("top level", data, {"study", "sample", "parameters", "fixed", "plot"}, where)
    st = dict(data.get("study", {}))
    _unknown("study", st, _STUDY_KEYS, where)
    if ("protocol" in st) == ("policy" in st):
        raise ConfigError(
            f"{where}: [study] expected exactly one of protocol or policy, "
            f"actual {sorted(k for k in ('protocol', 'policy') if k in st)}"
        )
    kind = "protocol" if "protocol" in st else "policy"
    target = str(st[kind])
    if kind == "protocol":
        from simulator.experiments import get_experiment

        get_experiment(target)
        allowed = set(STIMULUS_PARAMS + PROTOCOL_PARAMS + NETWORK_PARAMS)
    else:
        if target not in SCRIPTED_POLICIES and not Path(target).is_dir():
            raise ConfigError(
                f"{where}: [study] policy expected one of {SCRIPTED_POLICIES} or a "
                f"bundle directory, actual {target!r}"
            )
        allowed = set(NETWORK_PARAMS)
    semantics = str(st.get("semantics", "paper"))
    if semantics not in ("paper", "clean"):
        raise ConfigError(
            f"{where}: [study] semantics expected paper or clean, actual {semantics!r}"
        )
    seeds = st.get("seeds", 1)
    if not isinstance(seeds, int) or not 1 <= seeds <= 10_000:
        raise ConfigError(
            f"{where}: [study] seeds expected an integer in [1, 10000], actual {seeds!r}"
        )
    seed_base = st.get("seed_base", 0)
    if not isinstance(seed_base, int) or seed_base < 0:
        raise ConfigError(
            f"{where}: [study] seed_base expected an integer >= 0, actual {seed_base!r}"
        )
    n_scale = _number(where, "[study] n_scale", st.get("n_scale", 1.0))
    if not 0.001 <= n_scale <= 4.0:
        raise ConfigError(f"{where}: [study] n_scale expected in [0.001, 4], actual {n_scale}")
    duration = st.get("duration_s")
    duration_s = None if duration is None else _number(where, "[study] duration_s", duration)
    if duration_s is not None and duration_s <= 0:
        raise ConfigError(f"{where}: [study] duration_s expected > 0, actual {duration_s}")
    episode = {
        k: _number(where, f"[study] {k}", st[k])
        for k in ("onset_ms", "controlled_s", "tail_s")
        if k in st
    }
    if kind == "protocol" and episode:
        raise ConfigError(
            f"{where}: [study] {sorted(episode)} apply to policy studies only; a "
            "protocol study varies onset_ms as a parameter"
        )

    sample = dict(data.get("sample", {}))
    _unknown("sample", sample, _SAMPLE_KEYS, where)
    sampler = str(sample.get("method", "grid"))
    if sampler not in SAMPLERS:
        raise ConfigError(
            f"{where}: [sample] method expected one of {SAMPLERS}, actual {sampler!r}"
        )
    points = sample.get("points", 0 if sampler == "grid" else None)
    if sampler != "grid" and (not isinstance(points, int) or points < 1):
        raise ConfigError(
            f"{where}: [sample] points expected an integer >= 1 for {sampler}, actual {points!r}"
        )
    sample_seed = sample.get("seed", 0)
    if not isinstance(sample_seed, int):
        raise ConfigError(f"{where}: [sample] seed expected an integer, actual {sample_seed!r}")

    raw = dict(data.get("parameters", {}))
    if not raw:
        raise ConfigError(f"{where}: expected a [parameters] table with at least one parameter")
    params: dict[str, list[float] | Range] = {}
    for name, spec in raw.items():
        if name not in allowed:
            raise ConfigError(
                f"{where}: [parameters] expected a {kind} study parameter, actual "
                f"{name!r}." + did_you_mean(name, allowed)
            )
        params[name] = _parameter(where, name, spec, sampler)
    fixed = dict(data.get("fixed", {}))
    for name in fixed:
        if name not in allowed:
            raise ConfigError(
                f"{where}: [fixed] expected a {kind} study parameter, actual "
                f"{name!r}." + did_you_mean(name, allowed)
            )
        if name in params:
            raise ConfigError(f"{where}: {name!r} is both varied and fixed; keep one")
    plot = dict(data.get("plot", {}))
    _unknown("plot", plot, _PLOT_KEYS, where)
    for axis in ("x", "y"):
        if axis in plot and plot[axis] not in params:
            raise ConfigError(
                f"{where}: [plot] {axis} expected a varied parameter from "
                f"{sorted(params)}, actual {plot[axis]!r}"
            )
    study = Study(
        name=str(st.get("name", Path(where).stem)),
        kind=kind,
        target=target,
        semantics=semantics,
        n_scale=n_scale,
        duration_s=duration_s,
        seeds=seeds,
        seed_base=seed_base,
        sampler=sampler,
        points=int(points or 0),
        sample_seed=sample_seed,
        parameters=params,
        fixed=fixed,
        episode=episode,
        plot=plot,
        source=source,
    )
    for point in study.parameter_sets():
        check_point(study, {**fixed, **point}, where)
    return study


def _parameter(where: str, name: str, spec: Any, sampler: str) -> list[float] | Range:
    if sampler == "grid":
        if not isinstance(spec, list) or not spec:
            raise ConfigError(
                f"{where}: [parameters] {name} expected a non-empty list of values "
                f"for a grid, actual {spec!r}"
            )
        values = [_number(where, f"[parameters] {name}", v) for v in spec]
        return [int(v) if name in INTEGER_PARAMS and v == int(v) else v for v in values]
    if (
        not isinstance(spec, dict)
        or set(spec) - {"low", "high", "log"}
        or not {"low", "high"} <= set(spec)
    ):
        raise ConfigError(
            f"{where}: [parameters] {name} expected {{low = A, high = B}} (and "
            f"optionally log = true) for {sampler}, actual {spec!r}"
        )
    low = _number(where, f"[parameters] {name}.low", spec["low"])
    high = _number(where, f"[parameters] {name}.high", spec["high"])
    log = bool(spec.get("log", False))
    if not low < high or (log and low <= 0):
        raise ConfigError(
            f"{where}: [parameters] {name} expected low < high (and low > 0 with "
            f"log), actual low={low}, high={high}"
        )
    return Range(low, high, log)


def check_point(study: Study, values: Mapping[str, Any], where: str = "study") -> None:
    """Build the point's stimulus and network once, so a bad value fails before any run.

    Raises:
        ConfigError: The value the simulator refuses, with the point it belongs to.
    """
    try:
        if study.kind == "protocol":
            from controller.sweep.point import protocol_for

            proto = protocol_for(study.target, values)
            proto.network_config(study.semantics, study.n_scale)  # type: ignore[arg-type]
        else:
            net = {k: v for k, v in values.items() if k in NETWORK_PARAMS}
            NetworkConfig(**net)
    except (ConfigError, TypeError, ValueError) as err:
        raise ConfigError(f"{where}: point {dict(values)} is not a valid run: {err}") from None


__all__ = ["Range", "Stimulus", "Study", "load_study", "parse_study", "point_key"]
