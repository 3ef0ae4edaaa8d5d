"""``neuroloop-train``: learn a desynchronising stimulation policy and export a policy bundle.

Trains PPO (default) or SAC on ``neuroloop/FTSTS-v0`` with environments in subprocesses (or
on threads of this process, ``--vec threads``), VecNormalize, TensorBoard logs, periodic
checkpoints (with the normalisation statistics) and an optional wall-clock budget, then writes
the controller's policy bundle (numpy weights + JSON, with the control period and episode
timing in its ``training`` metadata).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from core.errors import ConfigError, NeuroLoopError
from core.executor.factory import add_executor_arguments
from core.logs import add_log_options, configure_from_args
from core.threads import add_threads_option, warn_if_oversubscribed

if TYPE_CHECKING:  # the environment's modules load only when a command runs
    from controller.envs.config import SimConfig
    from controller.envs.reward import RewardConfig

EPILOG = """\
examples:
  # quick smoke run on a small network (N = 200), one process
  neuroloop-train --n-scale 0.1 --controlled-s 2 --tail-s 1 --total-timesteps 2000 \\
      --n-envs 1 --out runs/rl/smoke

  # the real run: N = 2000, 100 ms control period, two worker processes, 30 min budget
  neuroloop-train --n-scale 1.0 --control-period-ms 100 --n-envs 2 \\
      --total-timesteps 400000 --budget-min 30 --out runs/rl/n2000

  # the same two environments in this process, stepped at once on threads (no worker
  # processes; the same results as --vec dummy, bit for bit)
  neuroloop-train --n-scale 1.0 --control-period-ms 100 --n-envs 2 --vec threads \\
      --total-timesteps 400000 --budget-min 30 --out runs/rl/n2000-threads

  # rollouts on a Ray cluster: each of the 16 environments is an actor on some node
  # (docs/cluster.md); the bundle is the same kind
  neuroloop-train --n-scale 1.0 --control-period-ms 100 --n-envs 16 --ray auto \\
      --total-timesteps 400000 --out runs/rl/n2000-cluster

  # continue from a checkpoint (also to fine-tune on a larger network)
  neuroloop-train --resume runs/rl/n500/checkpoints/model_100000_steps.zip --n-scale 1.0 ...

  # a dose schedule for the emulated stimulator (reads only the delivered charge): CMA-ES
  # over the schedule's numbers on three training networks (the shipped run's command is in
  # docs/rl.md, "A dose schedule")
  neuroloop-train --algo schedule --envelope emulator --observations measurable \\
      --n-scale 1.0 --control-period-ms 100 --seed 100 --train-seeds 3 --budget-min 30 \\
      --out runs/schedule

outputs in --out: bundle/ (policy bundle for `neuroloop-controller --policy`), model.zip and
vecnormalize.pkl (SB3 model and normalisation statistics), checkpoints/, tb/ (TensorBoard:
losses, episode reward, episode/r_tail, episode/charge_mv_ms), monitor.csv (one row per
episode), train.json (the run's configuration and timing). With --algo schedule: bundle/,
search.jsonl (every candidate's schedule, runs and cost) and train.json.
"""


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(
        prog="neuroloop-train",
        description=(
            "Train a closed-loop stimulation policy on the FTSTS spiking network. Each episode: "
            "an unstimulated lead-in (the network synchronises), a controlled period in which "
            "the agent sets amplitude 10-200 mV, frequency 5-180 Hz and pulse width 50-500 us "
            "every control period (through the controller's safety envelope), then a "
            "stimulation-free tail whose mean Kuramoto R is the final penalty. The reward "
            "trades lasting desynchronisation against delivered charge (docs/rl.md)."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("run")
    g.add_argument("--out", type=Path, required=True, help="Output directory (created).")
    g.add_argument(
        "--algo",
        choices=("ppo", "sac", "schedule"),
        default="ppo",
        help="ppo (default) or sac: an MLP policy by stable-baselines3; schedule: a dose "
        "schedule (amplitude by delivered charge, then off) by CMA-ES, measurable "
        "observations only (docs/rl.md).",
    )
    g.add_argument(
        "--total-timesteps",
        type=int,
        default=200_000,
        help="Agent steps to train for (default 200000).",
    )
    g.add_argument(
        "--budget-min",
        type=float,
        default=None,
        help="Stop after this many minutes of wall time even if the timesteps are "
        "not done (the bundle is still written).",
    )
    g.add_argument(
        "--n-envs",
        type=int,
        default=2,
        help="Parallel environments (default 2 = the cores of this machine).",
    )
    g.add_argument(
        "--vec",
        choices=("auto", "subproc", "threads", "dummy"),
        default="auto",
        help="How the --n-envs environments run: subproc (a process each), threads (in this "
        "process, stepped at once on threads: the kernel releases the GIL), dummy (in this "
        "process, one after the other). auto: subproc when --n-envs > 1, else dummy.",
    )
    add_executor_arguments(g)
    add_threads_option(g, per_worker=True)
    g.add_argument("--seed", type=int, default=0, help="Seed of agent and network draws.")
    g.add_argument(
        "--resume",
        type=Path,
        default=None,
        help="Continue from a model .zip (its vecnormalize .pkl is looked up next "
        "to it: same stem with _vecnormalize, or vecnormalize.pkl).",
    )
    g.add_argument(
        "--checkpoint-every",
        type=int,
        default=20_000,
        help="Save model + normalisation every N agent steps (default 20000).",
    )
    g.add_argument(
        "--copy-bundle-to",
        type=Path,
        default=None,
        help="Also copy the exported bundle here (e.g. controller/policies/pretrained/ftsts_ppo).",
    )
    e = p.add_argument_group("episode and network")
    e.add_argument(
        "--n-scale",
        type=float,
        default=0.25,
        help="Network size relative to N = 2000 (default 0.25 = N 500).",
    )
    e.add_argument("--semantics", choices=("paper", "clean"), default="paper")
    e.add_argument(
        "--control-period-ms",
        type=float,
        default=20.0,
        help="Control period, a multiple of 20 ms (100 is far more sample-efficient).",
    )
    e.add_argument("--onset-ms", type=float, default=2000.0, help="Unstimulated lead-in (ms).")
    e.add_argument("--controlled-s", type=float, default=20.0, help="Controlled period (s).")
    e.add_argument("--tail-s", type=float, default=5.0, help="Stimulation-free tail (s).")
    e.add_argument(
        "--envelope",
        default="simulator",
        help="Safety envelope: simulator (default, model units), emulator (the device "
        "emulator's FTSTS tissue, mA) or a TOML path. A physical (mA) envelope trains in the "
        "device's units through the emulator's tissue map, so the bundle runs on "
        "neuroloop-controller --backend serial unchanged.",
    )
    e.add_argument(
        "--observations",
        choices=("oracle", "measurable"),
        default="oracle",
        help="What the agent observes: oracle (population statistics and the mean E->I "
        "weight; simulation studies only) or measurable (the LFP features a sensing implant "
        "computes; the only kind a device backend accepts). The reward always uses the "
        "simulator's synchrony and weight.",
    )
    r = p.add_argument_group("reward (docs/rl.md)")
    r.add_argument("--charge-weight", type=float, default=1.0)
    r.add_argument("--tail-weight", type=float, default=10.0)
    r.add_argument("--sync-weight", type=float, default=0.0)
    r.add_argument("--shaping-weight", type=float, default=3.0)
    r.add_argument("--weight-floor-mv", type=float, default=75.0)
    h = p.add_argument_group("agent")
    h.add_argument("--gamma", type=float, default=0.99)
    h.add_argument("--gae-lambda", type=float, default=0.98, help="PPO: GAE lambda.")
    h.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        help="Learning rate (default 3e-4; with --resume: the checkpoint's unless given, e.g. "
        "to continue more gently after an overshoot).",
    )
    h.add_argument("--n-steps", type=int, default=512, help="PPO: steps per env per rollout.")
    h.add_argument("--batch-size", type=int, default=128)
    h.add_argument("--n-epochs", type=int, default=10, help="PPO epochs per rollout.")
    h.add_argument("--ent-coef", type=float, default=0.0)
    h.add_argument(
        "--log-std-init",
        type=float,
        default=-1.0,
        help="PPO: initial log SD of the Gaussian policy (normalised actions).",
    )
    h.add_argument("--net-arch", default="64,64", help="Hidden layer widths (default 64,64).")
    h.add_argument(
        "--init-setpoint",
        default=None,
        metavar="MV,HZ,US",
        help="PPO: start the policy's mean action at this setpoint (amplitude in the "
        "envelope's unit, frequency Hz, pulse width us), e.g. 115,180,500 (simulator) or "
        "2.75,180,450 (emulator); default: the middle of the action box. A "
        "prior from scripted runs (docs/rl.md); exploration and learning are unchanged.",
    )
    d = p.add_argument_group("dose schedule (--algo schedule; docs/rl.md)")
    d.add_argument("--generations", type=int, default=30, help="CMA-ES generations (30).")
    d.add_argument("--popsize", type=int, default=8, help="Candidates per generation (8).")
    d.add_argument("--segments", type=int, default=4,
                   help="Equal parts of the dose, each with its own amplitude (4).")  # fmt: skip
    d.add_argument("--train-seeds", type=int, default=3,
                   help="Training networks: seeds --seed ... --seed + N - 1 (3).")  # fmt: skip
    d.add_argument("--sigma0", type=float, default=0.15,
                   help="CMA-ES initial step in the parameters' unit cube (0.15).")  # fmt: skip
    d.add_argument("--init-schedule", default=None, metavar="A1,...,AK,HZ,US,DOSE",
                   help="Start: K amplitudes (the envelope's unit), rate, phase width and "
                   "total dose (uC on a device envelope, mV*ms in model units); default: "
                   "the middle of the searched box.")  # fmt: skip
    d.add_argument("--tail-penalty", type=float, default=30.0,
                   help="Cost per unit of mean tail R above the bar (30).")  # fmt: skip
    d.add_argument("--tail-margin", type=float, default=0.0,
                   help="Bar: FTSTS's mean tail R on the training seeds, minus this.")  # fmt: skip
    d.add_argument("--workers", type=int, default=2,
                   help="Episodes at once (local processes; default 2).")  # fmt: skip
    o = p.add_argument_group("logging")
    add_log_options(o)
    return p


def _check_schedule_args(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    for flag, value in (("--resume", a.resume), ("--init-setpoint", a.init_setpoint)):
        if value is not None:
            p.error(f"Expected no {flag} with --algo schedule (PPO/SAC only), actual {value}")
    if a.observations != "measurable":
        p.error(f"Expected --observations measurable with --algo schedule, actual {a.observations}")
    for flag in ("generations", "popsize", "segments", "train_seeds", "workers"):
        if getattr(a, flag) < 1:
            p.error(f"Expected --{flag.replace('_', '-')} >= 1, actual {getattr(a, flag)}")
    if a.popsize < 2:
        p.error(f"Expected --popsize >= 2, actual {a.popsize}")
    if not (math.isfinite(a.sigma0) and 0.0 < a.sigma0 <= 1.0):
        p.error(f"Expected --sigma0 in (0, 1], actual {a.sigma0}")
    for flag in ("tail_penalty", "tail_margin"):
        value = getattr(a, flag)
        if not (math.isfinite(value) and value >= 0.0):
            p.error(f"Expected --{flag.replace('_', '-')} >= 0, actual {value}")
    if not (a.seed >= 0 and a.seed + a.train_seeds <= 2**31):
        p.error(f"Expected training seeds in [0, 2**31) (held-out seeds are above), actual "
                f"{a.seed} ... {a.seed + a.train_seeds - 1}")  # fmt: skip


def _check_args(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    if a.algo == "schedule":
        _check_schedule_args(p, a)
    if a.learning_rate is None and a.resume is None:
        a.learning_rate = 3e-4
    if a.learning_rate is not None and not (math.isfinite(a.learning_rate) and a.learning_rate > 0):
        p.error(f"Expected --learning-rate > 0, actual {a.learning_rate}")
    if a.total_timesteps < 1:
        p.error(f"Expected --total-timesteps >= 1, actual {a.total_timesteps}")
    if not 1 <= a.n_envs <= 64:
        p.error(f"Expected --n-envs in [1, 64], actual {a.n_envs}")
    if a.vec == "threads" and a.threads != 1 and a.ray is None:
        p.error(
            f"Expected --threads 1 with --vec threads (networks stepped on threads share the "
            f"process's helper threads), actual {a.threads}"
        )
    if a.budget_min is not None and not a.budget_min > 0:
        p.error(f"Expected --budget-min > 0, actual {a.budget_min}")
    if not 0.005 <= a.n_scale <= 4.0:
        p.error(f"Expected --n-scale in [0.005, 4], actual {a.n_scale}")
    if a.checkpoint_every < 1:
        p.error(f"Expected --checkpoint-every >= 1, actual {a.checkpoint_every}")
    if a.resume is not None and not a.resume.is_file():
        p.error(f"Expected --resume to be a model .zip file, actual {a.resume} (not found)")
    try:
        widths = [int(x) for x in a.net_arch.split(",")]
    except ValueError:
        p.error(f"Expected --net-arch as comma-separated integers, actual {a.net_arch!r}")
    if not widths or min(widths) < 1:
        p.error(f"Expected --net-arch widths >= 1, actual {a.net_arch!r}")
    a.net_arch_list = widths
    a.init_action = None
    if a.init_setpoint is not None:
        if a.algo != "ppo" or a.resume is not None:
            p.error("Expected --init-setpoint only with --algo ppo and without --resume")
        try:
            values = [float(x) for x in a.init_setpoint.split(",")]
        except ValueError:
            values = []
        if len(values) != 3:
            p.error(f"Expected --init-setpoint as MV,HZ,US (3 numbers), actual {a.init_setpoint!r}")
        from controller.envs.dbs import action_map_for
        from protocol.envelope.config import load_envelope
        from protocol.envelope.setpoint import Setpoint

        try:
            amap = action_map_for(load_envelope(a.envelope))
            a.init_action = amap.to_action(
                Setpoint(amplitude=values[0], frequency_hz=values[1], pulse_width_us=values[2])
            )
        except ConfigError as err:
            p.error(f"Expected --init-setpoint inside the action box: {err}")


def _vecnormalize_for(model_zip: Path) -> Path | None:
    stem = model_zip.with_suffix("")
    name = stem.name.replace("model_", "model_vecnormalize_") + ".pkl"
    for candidate in (stem.parent / name, stem.with_name("vecnormalize.pkl")):
        if candidate.is_file():
            return candidate
    return None


def _sim_config(a: argparse.Namespace, reward: RewardConfig | None = None) -> SimConfig:
    """The episode of the command line (``reward``: a ``RewardConfig``, or the default)."""
    from controller.envs.config import SimConfig
    from controller.envs.reward import RewardConfig

    return SimConfig(
        control_period_ms=a.control_period_ms,
        onset_ms=a.onset_ms,
        controlled_s=a.controlled_s,
        tail_s=a.tail_s,
        envelope=a.envelope,
        observations=a.observations,
        reward=RewardConfig() if reward is None else reward,
    )


def train(a: argparse.Namespace) -> dict[str, Any]:
    """Run the training described by parsed arguments; return the ``train.json`` summary."""
    import torch
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback

    from controller.envs.models import network_params
    from controller.envs.reward import RewardConfig
    from controller.training.callbacks import (
        EpisodeMetricsCallback,
        TqdmCallback,
        WallClockBudget,
    )
    from controller.training.export import export_bundle
    from controller.training.vec import make_training_env
    from protocol.envelope.config import load_envelope

    log = structlog.get_logger()
    torch.set_num_threads(1)
    sim_config = _sim_config(
        a,
        RewardConfig(
            charge_weight=a.charge_weight,
            tail_weight=a.tail_weight,
            sync_weight=a.sync_weight,
            shaping_weight=a.shaping_weight,
            weight_floor_mv=a.weight_floor_mv,
            gamma=a.gamma,
        ),
    )
    model_params: dict[str, Any] = {"n_scale": a.n_scale, "semantics": a.semantics}
    if load_envelope(a.envelope).domain == "physical":
        model_params["device_units"] = True
    model_params["threads"] = a.threads
    out: Path = a.out
    out.mkdir(parents=True, exist_ok=True)
    vec_path = None if a.resume is None else _vecnormalize_for(a.resume)
    if a.resume is not None and vec_path is None:
        raise ConfigError(
            f"Expected the VecNormalize statistics next to {a.resume} "
            "(model_vecnormalize_<N>_steps.pkl or vecnormalize.pkl), actual none"
        )
    vec = a.vec if a.vec != "auto" else "subproc" if a.n_envs > 1 else "dummy"
    monitor = out / f"monitor_{int(time.time())}.csv"
    if a.ray is None:
        warn_if_oversubscribed(a.threads, 1 if vec == "dummy" else a.n_envs)
    venv = make_training_env(a.n_envs, a.seed, sim_config, model_params, monitor, vec,
                             a.gamma, vec_path, (a.log_format, a.log_level),
                             a.ray)  # fmt: skip
    policy_kwargs: dict[str, Any] = {"net_arch": a.net_arch_list}
    algo = PPO if a.algo == "ppo" else SAC
    try:
        if a.resume is not None:
            custom = {} if a.learning_rate is None else {"learning_rate": a.learning_rate}
            model = algo.load(str(a.resume), env=venv, device="cpu",
                              tensorboard_log=str(out / "tb"), custom_objects=custom)  # fmt: skip
            log.warning("training_resumed", checkpoint=str(a.resume), steps=model.num_timesteps,
                        learning_rate=model.learning_rate)  # fmt: skip
        elif a.algo == "ppo":
            policy_kwargs["log_std_init"] = a.log_std_init
            model = PPO("MlpPolicy", venv, learning_rate=a.learning_rate, n_steps=a.n_steps,
                        batch_size=a.batch_size, n_epochs=a.n_epochs, gamma=a.gamma,
                        gae_lambda=a.gae_lambda, ent_coef=a.ent_coef,
                        policy_kwargs=policy_kwargs, seed=a.seed, device="cpu",
                        tensorboard_log=str(out / "tb"), verbose=0)  # fmt: skip
            if a.init_action is not None:
                # The action head's weights start near zero (orthogonal, gain 0.01), so its
                # bias is the initial mean action in every state.
                head: torch.nn.Linear = model.policy.action_net  # type: ignore[assignment]
                with torch.no_grad():
                    head.bias.copy_(torch.tensor(a.init_action))
                log.info("policy_mean_initialised", setpoint=a.init_setpoint)
        else:
            model = SAC("MlpPolicy", venv, learning_rate=a.learning_rate,
                        batch_size=a.batch_size, gamma=a.gamma, policy_kwargs=policy_kwargs,
                        seed=a.seed, device="cpu", tensorboard_log=str(out / "tb"),
                        learning_starts=min(1000, a.total_timesteps), verbose=0)  # fmt: skip
        budget = WallClockBudget(a.budget_min * 60.0 if a.budget_min else float("inf"))
        callbacks = CallbackList([
            TqdmCallback(a.total_timesteps),
            EpisodeMetricsCallback(),
            CheckpointCallback(max(1, a.checkpoint_every // a.n_envs), str(out / "checkpoints"),
                               name_prefix="model", save_vecnormalize=True),
            budget,
        ])  # fmt: skip
        t0 = time.monotonic()
        model.learn(a.total_timesteps, callback=callbacks, tb_log_name=a.algo,
                    reset_num_timesteps=a.resume is None)  # fmt: skip
        wall_s = time.monotonic() - t0
        model.save(str(out / "model.zip"))
        venv.save(str(out / "vecnormalize.pkl"))
        summary: dict[str, Any] = {
            "algorithm": a.algo.upper(),
            "timesteps": int(model.num_timesteps),
            "train_wall_s": round(wall_s, 1),
            "budget_reached": budget.expired,
            "n_envs": a.n_envs,
            "vec": "ray" if a.ray else vec,
            "seed": a.seed,
            "resumed_from": None if a.resume is None else str(a.resume),
            "network": network_params(model_params),
            "training_network_seeds": f"{a.seed}..{a.seed + a.n_envs - 1}, then draws < 2**31",
            "hyperparameters": {
                "gamma": a.gamma, "gae_lambda": a.gae_lambda,
                "learning_rate": float(model.learning_rate)
                if not callable(model.learning_rate) else a.learning_rate,
                "n_steps": a.n_steps, "batch_size": a.batch_size, "n_epochs": a.n_epochs,
                "ent_coef": a.ent_coef, "log_std_init": a.log_std_init,
                "net_arch": a.net_arch_list, "init_setpoint": a.init_setpoint,
            },
        }  # fmt: skip
        bundle = export_bundle(model, venv, out / "bundle", sim_config, summary)
        if a.copy_bundle_to is not None:
            shutil.copytree(bundle.path, a.copy_bundle_to, dirs_exist_ok=True)
        summary["bundle"] = str(bundle.path)
        summary["threads"] = a.threads  # a speed setting: in train.json, not in the bundle
        (out / "train.json").write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
        return summary
    finally:
        venv.close()


def train_schedule(a: argparse.Namespace) -> dict[str, Any]:
    """``--algo schedule``: search a dose schedule by CMA-ES; return the ``train.json`` summary."""
    from controller.training.schedule_search import SearchConfig, search
    from core.executor.factory import make_executor

    sim_config = _sim_config(a)
    # run_one puts a bundle for a device envelope into device units itself (and the FTSTS
    # bars stay in model units)
    model_params: dict[str, Any] = {
        "n_scale": a.n_scale, "semantics": a.semantics, "threads": a.threads,
    }  # fmt: skip
    cfg = SearchConfig(
        sim_config=sim_config,
        model_params=model_params,
        seeds=tuple(range(a.seed, a.seed + a.train_seeds)),
        segments=a.segments,
        generations=a.generations,
        popsize=a.popsize,
        sigma0=a.sigma0,
        seed=a.seed,
        tail_penalty=a.tail_penalty,
        tail_margin=a.tail_margin,
        init=a.init_schedule,
        budget_s=None if a.budget_min is None else a.budget_min * 60.0,
    )
    with make_executor(a.ray, a.workers, threads=a.threads) as executor:
        summary = search(cfg, a.out, executor)
    if a.copy_bundle_to is not None:
        shutil.copytree(summary["bundle"], a.copy_bundle_to, dirs_exist_ok=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``neuroloop-train``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    configure_from_args(args)
    try:
        summary = train_schedule(args) if args.algo == "schedule" else train(args)
    except NeuroLoopError as err:
        print(f"neuroloop-train: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
