"""Train a dose schedule (:mod:`controller.training.schedule`) by CMA-ES on training seeds.

The search is policy search by evolution strategies: every candidate schedule is written as a
policy bundle and run as ``neuroloop-eval`` runs a bundle
(:func:`controller.training.evaluate.run_one`: the same episode, envelope and tissue map), on
each training network seed; open-loop FTSTS
runs once per seed first and sets that seed's bars. A candidate's cost is

    mean over seeds of (charge / FTSTS's charge) + tail_penalty · max(0, mean R_tail − bar),

with ``bar = FTSTS's mean R_tail over the same seeds − tail_margin``, so that the search trades
charge only while the training networks end, on average, at least ``tail_margin`` less
synchronous than after FTSTS (a seed's own FTSTS R_tail is a noisy bar: the tail R of two
desynchronised networks differs by a few thousandths from seed to seed). CMA-ES runs in
the unit cube of the schedule's parameters (``K`` amplitudes, rate, phase width, total dose),
seeded from ``--seed``; episodes run on the shared executor (local processes, or Ray with
``--ray``). Every candidate's result is appended to ``search.jsonl`` as it arrives; the best
candidate becomes the bundle when the search ends (after its last generation, or the first one
past ``budget_s``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from controller.envs.config import SimConfig
from controller.envs.spaces import DOSE_FEATURES, observation_field_specs
from controller.policies.bundle import FieldSpec, PolicyBundle
from controller.training.schedule import ALGORITHM, DoseSchedule, write_schedule_bundle
from core.errors import ConfigError

FloatArray = npt.NDArray[np.float64]

#: The total dose's search range, as fractions of the dose feature's upper bound (model:
#: 400 000 mV·ms; device: 15 000 µC, 4 mA × 450 µs at 185 Hz for 20 s).
STOP_DOSE_RANGE = (0.03, 0.8)
#: Lowest amplitude searched, as a fraction of the action box's amplitude span.
AMPLITUDE_FLOOR = 0.1


@dataclass(frozen=True)
class Box:
    """The searched ranges of a schedule's parameters, in physical units.

    Args:
        amplitude: Range of every part's amplitude (the envelope's unit).
        frequency_hz: Range of the pulse rate.
        pulse_width_us: Range of the phase width.
        stop_dose: Range of the total dose (the dose field's unit).
        segments: Parts of the dose (``K``).
        dose_field: The dose observation.
    """

    amplitude: tuple[float, float]
    frequency_hz: tuple[float, float]
    pulse_width_us: tuple[float, float]
    stop_dose: tuple[float, float]
    segments: int
    dose_field: str

    @property
    def dim(self) -> int:
        """Parameters searched: ``K`` amplitudes, rate, width, total dose."""
        return self.segments + 3

    def _ranges(self) -> list[tuple[float, float]]:
        return [self.amplitude] * self.segments + [
            self.frequency_hz, self.pulse_width_us, self.stop_dose]  # fmt: skip

    def decode(self, x: Sequence[float]) -> DoseSchedule:
        """The schedule at point ``x`` of the unit cube (clipped to it)."""
        values = [lo + (hi - lo) * min(1.0, max(0.0, float(v)))
                  for v, (lo, hi) in zip(x, self._ranges(), strict=True)]  # fmt: skip
        k = self.segments
        return DoseSchedule(
            amplitudes=tuple(values[:k]),
            frequency_hz=values[k],
            pulse_width_us=values[k + 1],
            stop_dose=values[k + 2],
            dose_field=self.dose_field,
        )

    def encode(self, schedule: DoseSchedule) -> FloatArray:
        """The unit-cube point of ``schedule``.

        Raises:
            ConfigError: It has another number of parts, or a value outside the box.
        """
        if len(schedule.amplitudes) != self.segments:
            raise ConfigError(
                f"Expected {self.segments} amplitudes, actual {len(schedule.amplitudes)}"
            )
        values = [*schedule.amplitudes, schedule.frequency_hz, schedule.pulse_width_us,
                  schedule.stop_dose]  # fmt: skip
        out = []
        for v, (lo, hi), name in zip(values, self._ranges(), self._names(), strict=True):
            if not lo <= v <= hi:
                raise ConfigError(f"Expected {name} in [{lo}, {hi}], actual {v}")
            out.append((v - lo) / (hi - lo))
        return np.array(out)

    def _names(self) -> list[str]:
        return [f"amplitude[{j}]" for j in range(self.segments)] + [
            "frequency_hz", "pulse_width_us", "stop_dose"]  # fmt: skip


def search_box(action_fields: Sequence[FieldSpec], dose: FieldSpec, segments: int) -> Box:
    """The default box for an action box and dose feature (module constants).

    Raises:
        ConfigError: ``segments`` < 1.
    """
    if segments < 1:
        raise ConfigError(f"Expected at least one segment, actual {segments}")
    spec = {f.name: f for f in action_fields}
    amp = spec["amplitude"]
    return Box(
        amplitude=(amp.low + AMPLITUDE_FLOOR * (amp.high - amp.low), amp.high),
        frequency_hz=(spec["frequency_hz"].low, spec["frequency_hz"].high),
        pulse_width_us=(spec["pulse_width_us"].low, spec["pulse_width_us"].high),
        stop_dose=(STOP_DOSE_RANGE[0] * dose.high, STOP_DOSE_RANGE[1] * dose.high),
        segments=segments,
        dose_field=dose.name,
    )


def parse_schedule(text: str, box: Box) -> DoseSchedule:
    """``A1,…,AK,HZ,US,DOSE`` (the envelope's units) as a schedule inside ``box``.

    Raises:
        ConfigError: Not ``K + 3`` numbers, or a value outside the box.
    """
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != box.dim or not all(math.isfinite(v) for v in values):
        raise ConfigError(
            f"Expected {box.segments} amplitudes, then Hz, µs and the total dose "
            f"({box.dim} finite numbers, comma-separated), actual {text!r}"
        )
    k = box.segments
    schedule = DoseSchedule(tuple(values[:k]), values[k], values[k + 1], values[k + 2],
                            box.dose_field)  # fmt: skip
    box.encode(schedule)  # raises if outside
    return schedule


def cost(
    rows: Sequence[dict[str, float]],
    bars: dict[int, dict[str, float]],
    tail_penalty: float,
    tail_margin: float,
) -> float:
    """A candidate's cost from its rows (``seed``, ``charge``, ``r_tail``) (module docstring)."""
    bar = float(np.mean([bars[int(r["seed"])]["r_tail"] for r in rows])) - tail_margin
    excess = max(0.0, float(np.mean([r["r_tail"] for r in rows])) - bar)
    return charge_fraction(rows, bars) + tail_penalty * excess


def charge_fraction(rows: Sequence[dict[str, Any]], bars: dict[int, dict[str, Any]]) -> float:
    """The rows' mean charge as a fraction of FTSTS's on the same seed."""
    return float(np.mean([r["charge"] / bars[int(r["seed"])]["charge"] for r in rows]))


@dataclass(frozen=True)
class GridScore:
    """A grid search's episodes scored with :func:`cost` (the bench scripts' grids).

    Args:
        bars: FTSTS's row per training seed.
        bar_r_tail: FTSTS's mean tail R less the margin: a candidate *meets* it when its mean
            tail R is at or below it.
        candidates: Per setting, in grid order: the setting's own keys, then
            ``charge_vs_ftsts``, ``r_tail_mean``, ``meets``, ``cost``, ``weight_end_mv`` and
            ``runs`` (its rows).
    """

    bars: dict[int, dict[str, Any]]
    bar_r_tail: float
    candidates: list[dict[str, Any]]

    @property
    def best(self) -> dict[str, Any]:
        """The lowest cost (the first of equals)."""
        return min(self.candidates, key=lambda c: c["cost"])

    @property
    def cheapest_meeting_the_bar(self) -> dict[str, Any] | None:
        """The least charge among the candidates that meet the bar (``None``: none does)."""
        meeting = [c for c in self.candidates if c["meets"]]
        return min(meeting, key=lambda c: c["charge_vs_ftsts"]) if meeting else None

    def report(self) -> dict[str, Any]:
        """The JSON the grid scripts print: FTSTS's bars, the bar, best, cheapest, every one."""

        def brief(c: dict[str, Any] | None) -> dict[str, Any] | None:
            return None if c is None else {k: v for k, v in c.items() if k != "runs"}

        return {
            "ftsts": {
                str(s): {"charge": b["charge"], "r_tail": b["r_tail"]} for s, b in self.bars.items()
            },
            "bar_r_tail_mean": self.bar_r_tail,
            "best": brief(self.best),
            "cheapest_meeting_the_bar": brief(self.cheapest_meeting_the_bar),
            "candidates": self.candidates,
        }


def score_grid(
    rows: Sequence[dict[str, Any]],
    n_seeds: int,
    settings: Sequence[dict[str, Any]],
    tail_penalty: float,
    tail_margin: float,
) -> GridScore:
    """Score a grid from its episodes' rows (:func:`episode`'s), in task order.

    Args:
        rows: FTSTS's ``n_seeds`` rows first, then ``n_seeds`` rows per setting, in order.
        n_seeds: Training networks per candidate.
        settings: What each candidate is (its keys lead its entry).
        tail_penalty: As the search's.
        tail_margin: As the search's.

    Raises:
        ConfigError: ``rows`` is not ``n_seeds × (1 + len(settings))`` long.
    """
    if n_seeds < 1 or len(rows) != n_seeds * (1 + len(settings)):
        raise ConfigError(
            f"Expected {n_seeds} × (1 + {len(settings)}) rows, actual {len(rows)} rows"
        )
    bars = {int(r["seed"]): dict(r) for r in rows[:n_seeds]}
    bar = float(np.mean([b["r_tail"] for b in bars.values()])) - tail_margin
    candidates = []
    for k, setting in enumerate(settings):
        mine = [dict(r) for r in rows[n_seeds * (k + 1) : n_seeds * (k + 2)]]
        r_mean = float(np.mean([r["r_tail"] for r in mine]))
        candidates.append({
            **setting,
            "charge_vs_ftsts": charge_fraction(mine, bars),
            "r_tail_mean": r_mean, "meets": r_mean <= bar,
            "cost": cost(mine, bars, tail_penalty, tail_margin),
            "weight_end_mv": float(np.mean([r["weight_end_mv"] for r in mine])),
            "runs": mine,
        })  # fmt: skip
    return GridScore(bars, bar, candidates)


def episode(
    method: str,
    seed: int,
    sim_config: SimConfig,
    model_params: dict[str, Any],
    schedule: dict[str, Any] | None = None,
    train: tuple[float, float, float, float] | None = None,
) -> dict[str, Any]:
    """One evaluated episode's metrics (an executor task: runs in a worker, on any node).

    Args:
        method: ``policy`` (the schedule, written as a bundle in a temporary directory of the
            worker) or a baseline of :data:`controller.training.evaluate.METHODS`.
        seed: Network seed.
        sim_config: The episode.
        model_params: Network parameters.
        schedule: :meth:`DoseSchedule.as_dict` of the candidate (``policy`` only).
        train: ``(amplitude, frequency_hz, pulse_width_us, latch_mv)`` replacing a scripted
            baseline's train (grid searches; ``run_one``'s ``train``).
    """
    import tempfile

    from controller.training.evaluate import run_one
    from protocol.envelope.setpoint import Setpoint

    scripted = None
    if train is not None:
        amp, hz, us, latch_mv = train
        scripted = (Setpoint(amplitude=amp, frequency_hz=hz, pulse_width_us=us), latch_mv)

    with tempfile.TemporaryDirectory(prefix="neuroloop-schedule-") as tmp:
        bundle = None
        if schedule is not None:
            bundle = str(
                write_for_episode(
                    DoseSchedule.from_dict(schedule),
                    Path(tmp) / "bundle",
                    sim_config,
                    {},
                ).path
            )
        record = run_one(method, seed, sim_config, model_params, bundle, scripted)
    return {"seed": seed, "r_tail": record.r_tail, "charge": record.charge,
            "weight_end_mv": record.weight_end_mv,
            "time_to_desync_s": record.time_to_desync_s,
            "stim_off_s": record.stim_off_s}  # fmt: skip


def schedule_observation(domain: str) -> tuple[FieldSpec, ...]:
    """What a schedule's bundle observes: the dose alone (it runs where nothing is sensed)."""
    return observation_field_specs((DOSE_FEATURES[domain],))


def write_for_episode(
    schedule: DoseSchedule, path: Path, sim_config: SimConfig, training: dict[str, Any]
) -> PolicyBundle:
    """``schedule`` as a bundle for the episode's envelope and measurable observations."""
    from controller.training.export import action_fields_for, episode_settings
    from protocol.envelope.config import load_envelope

    envelope = load_envelope(sim_config.envelope)
    return write_schedule_bundle(
        schedule, path,
        observation_fields=schedule_observation(envelope.domain),
        action_fields=action_fields_for(envelope), envelope_hash=envelope.sha256(),
        training={**episode_settings(sim_config), **training},
    )  # fmt: skip


@dataclass(frozen=True)
class SearchConfig:
    """What the search runs.

    Args:
        sim_config: The episode (its envelope sets the action box and units; its observation
            set must be ``measurable``).
        model_params: Network parameters of the episodes (``n_scale``, ``semantics``).
        seeds: Training network seeds.
        segments: Parts of the dose.
        generations: CMA-ES generations.
        popsize: Candidates per generation.
        sigma0: Initial step size in the unit cube.
        seed: Seed of CMA-ES's sampling.
        tail_penalty: Cost per unit of mean tail R above the bar.
        tail_margin: How far below FTSTS's mean tail R the bar sits.
        init: Starting schedule (default: the middle of the box).
        budget_s: Stop after the generation that passes this wall time (``None``: none).
    """

    sim_config: SimConfig
    model_params: dict[str, Any]
    seeds: tuple[int, ...]
    segments: int = 4
    generations: int = 30
    popsize: int = 8
    sigma0: float = 0.15
    seed: int = 0
    tail_penalty: float = 30.0
    tail_margin: float = 0.0
    init: str | None = None
    budget_s: float | None = None


def _tasks(cfg: SearchConfig, method: str, schedule: dict[str, Any] | None, tag: str) -> list[Any]:
    from core.executor import Task

    return [Task(key=f"{tag}/seed{s}", fn=episode,
                 args=(method, s, cfg.sim_config, cfg.model_params, schedule),
                 params={"method": method, "seed": s, "schedule": schedule})
            for s in cfg.seeds]  # fmt: skip


def episode_values(outcomes: Sequence[Any]) -> list[dict[str, Any]]:
    """The metrics of a job of :func:`episode` tasks, in order.

    Raises:
        ConfigError: An episode failed (how many, and the first one's key and error).
    """
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise ConfigError(
            f"Expected every episode to run, actual {len(failed)} failed: first "
            f"{failed[0].key}: {failed[0].error}"
        )
    return [o.value for o in outcomes]


def search(cfg: SearchConfig, out: Path, executor: Any) -> dict[str, Any]:
    """Run the search; write ``out/bundle`` (the best schedule) and ``out/search.jsonl``.

    Returns:
        The summary (``train.json``'s content).

    Raises:
        ConfigError: A bad configuration or an episode that fails.
    """
    import cma
    from tqdm import tqdm

    from controller.envs.models import network_params
    from controller.training.export import action_fields_for
    from core.executor import run_ordered
    from protocol.envelope.config import load_envelope

    log = structlog.get_logger()
    if cfg.sim_config.observations != "measurable":
        raise ConfigError(
            "Expected observations 'measurable' for a dose schedule, actual "
            f"{cfg.sim_config.observations!r}"
        )
    if not cfg.seeds:
        raise ConfigError("Expected at least one training seed, actual none")
    envelope = load_envelope(cfg.sim_config.envelope)
    obs_fields = schedule_observation(envelope.domain)
    act_fields = action_fields_for(envelope)
    box = search_box(act_fields, obs_fields[-1], cfg.segments)
    x0 = np.full(box.dim, 0.5) if cfg.init is None else box.encode(parse_schedule(cfg.init, box))
    journal = out / "search.jsonl"
    if journal.exists() and journal.stat().st_size > 0:
        raise ConfigError(
            f"Expected a new output directory (a search journal is never overwritten), actual "
            f"{journal} exists; pass another --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    ftsts_rows = episode_values(run_ordered(executor, _tasks(cfg, "ftsts", None, "ftsts")))
    bars = {r["seed"]: r for r in ftsts_rows}
    log.info("schedule_bars", bars={s: {"charge": b["charge"], "r_tail": b["r_tail"]}
                                    for s, b in bars.items()})  # fmt: skip
    strategy = cma.CMAEvolutionStrategy(
        x0.tolist(), cfg.sigma0,
        {"bounds": [0.0, 1.0], "popsize": cfg.popsize, "seed": cfg.seed + 1, "verbose": -9},
    )  # fmt: skip
    best: dict[str, Any] | None = None
    evaluations = 0
    budget_hit = False
    with (
        journal.open("a", encoding="utf-8") as jf,
        tqdm(total=cfg.generations, desc="generations", unit="gen") as bar,
    ):
        for gen in range(cfg.generations):
            xs = strategy.ask()
            schedules = [box.decode(x) for x in xs]
            tasks = []
            for i, schedule in enumerate(schedules):
                tasks += _tasks(cfg, "policy", schedule.as_dict(), f"g{gen:03d}c{i:02d}")
            rows = episode_values(run_ordered(executor, tasks))
            costs = []
            n = len(cfg.seeds)
            for i, schedule in enumerate(schedules):
                mine = rows[i * n : (i + 1) * n]
                c = cost(mine, bars, cfg.tail_penalty, cfg.tail_margin)
                costs.append(c)
                entry = {
                    "generation": gen, "candidate": i, "cost": c,
                    "schedule": schedule.as_dict(),
                    "charge_vs_ftsts": [r["charge"] / bars[r["seed"]]["charge"] for r in mine],
                    "runs": mine,
                }  # fmt: skip
                jf.write(json.dumps(entry) + "\n")
                jf.flush()
                if best is None or c < best["cost"]:
                    best = entry
            evaluations += len(tasks)
            strategy.tell(xs, costs)
            bar.update(1)
            assert best is not None
            bar.set_postfix(best=f"{best['cost']:.3f}", gen_min=f"{min(costs):.3f}")
            log.info("schedule_generation", generation=gen, best_cost=best["cost"],
                     generation_min=min(costs))  # fmt: skip
            if cfg.budget_s is not None and time.monotonic() - t0 > cfg.budget_s:
                budget_hit = True
                break
    assert best is not None
    winner = DoseSchedule.from_dict(best["schedule"])
    summary: dict[str, Any] = {
        "algorithm": ALGORITHM,
        "generations": gen + 1,
        "popsize": cfg.popsize,
        "episodes": evaluations + len(cfg.seeds),
        "train_wall_s": round(time.monotonic() - t0, 1),
        "budget_reached": budget_hit,
        "seed": cfg.seed,
        "training_network_seeds": list(cfg.seeds),
        "network": network_params(cfg.model_params),
        "segments": cfg.segments,
        "sigma0": cfg.sigma0,
        "tail_penalty": cfg.tail_penalty,
        "tail_margin": cfg.tail_margin,
        "init": cfg.init,
        "ftsts_bars": {
            str(s): {"charge": b["charge"], "r_tail": b["r_tail"]} for s, b in bars.items()
        },
        "best": best,
    }
    bundle = write_for_episode(winner, out / "bundle", cfg.sim_config,
                    {**{k: v for k, v in summary.items() if k != "best"},
                     "best_cost": best["cost"],
                     "charge_vs_ftsts_training": best["charge_vs_ftsts"]})  # fmt: skip
    summary["bundle"] = str(bundle.path)
    summary["threads"] = cfg.model_params.get("threads", 1)  # in train.json, not in the bundle
    (out / "train.json").write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
    return summary
