"""``neuroloop-controller``: run a policy against a backend inside the safety envelope.

Exit codes: 0 the run completed, 2 bad configuration or arguments, 3 backend unavailable,
4 a safety fault ended the run (stimulation stopped, fault latched), 5 operator e-stop
(SIGINT/SIGTERM or the monitor's E-STOP button; stimulation stopped).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import sys
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import structlog
from tqdm import tqdm

from controller.backends import BackendRequest, open_backend
from controller.clock import request_realtime_priority
from controller.config import RunConfig, load_run_config, merge
from controller.envelope.governor import SafetyGovernor
from controller.estop import EStop
from controller.loop import ControlLoop, LoopSettings, RunResult
from controller.monitor.launch import Monitor
from controller.policies.base import Policy
from controller.policies.bundle import BundlePolicy, training_setting
from controller.policies.factory import build_policy
from controller.recorder import NullRecorder, SessionRecorder, TickRecorder
from controller.summary import Summary, advice_for, count_kinds, format_table
from core.errors import (
    BackendUnavailableError,
    ConfigError,
    NeuroLoopError,
    RecordingError,
)
from core.logs import add_log_options, configure_from_args, configure_logging
from core.threads import DEFAULT_THREADS, add_threads_option, warn_if_oversubscribed
from protocol.envelope.config import SafetyEnvelope, default_envelope_for, load_envelope

EXIT_OK, EXIT_CONFIG, EXIT_BACKEND, EXIT_FAULT, EXIT_ESTOP = 0, 2, 3, 4, 5

EPILOG = """\
examples:
  neuroloop-controller --backend sim --policy ftsts --duration 25
      the paper's open-loop FTSTS protocol against a local simulator server, in real time
  neuroloop-controller --policy ftsts --pace fast --config small.toml
      as fast as the simulator runs, network size from the [simulator] table
  neuroloop-controller --policy constant --amplitude 50 --duration 5 --no-record
  neuroloop-controller --policy adbs-onoff --pace fast --duration 25
      clinical on/off aDBS on the sensed band power (docs/rl.md, "Clinical baselines")
  neuroloop-controller --policy runs/ppo-bundle/ --connect ipc:///tmp/neuroloop/sim.sock
  neuroloop-controller --backend serial --connect tcp://127.0.0.1:5560 --policy constant \\
      --amplitude 1.0 --frequency-hz 130 --pulse-width-us 90

units: the simulator's amplitude is mV of drive (model units); devices use mA. Frequencies in
Hz, pulse widths per phase in µs. The envelope (--envelope, default: the shipped 'simulator'
or 'device' file) clamps, rejects and ramps every command; see docs/controller.md.

timing: each tick sends the current setpoint and waits for the window's observation. Against
a device, later than one period: the last setpoint is held; later than two: safe stop; no
answer within the watchdog (3 periods): safe stop and alarm, no automatic restart. Against the
simulator or a replay (lockstep: the model waits for the controller) a late step is counted
and the run goes on; only a stall over --stall-limit-s (5 s) stops it. See docs/controller.md,
Deadlines.

exit codes: 0 completed, 2 bad configuration, 3 backend unavailable, 4 safety fault,
5 operator e-stop (SIGINT/SIGTERM, or the --monitor page's E-STOP button).
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (every flag defaults to "not given" so the config file can fill it)."""
    p = argparse.ArgumentParser(
        prog="neuroloop-controller",
        description="Run a stimulation policy in a fixed-rate closed loop against a simulator, "
        "a stimulator device or a replay, always inside the safety envelope; record the session "
        "and print a summary.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--backend", choices=["sim", "serial", "replay"], help="what to control (default sim)"
    )
    p.add_argument(
        "session",
        nargs="?",
        metavar="SESSION",
        help="with --backend replay: the recording (.nlrec) to serve as the backend; its "
        "observations are replayed in order (at the recorded pace with --pace realtime, as fast "
        "as possible with --pace fast)",
    )
    p.add_argument(
        "--policy",
        metavar="NAME|PATH",
        help="off | constant (needs --amplitude) | ftsts (the paper's open-loop protocol with the "
        "75 mV weight latch; default) | ftsts-sensed, adbs-onoff, adbs-single, adbs-dual, "
        "adbs-prop (clinical "
        "baselines on sensed features, calibrated on the lead-in before --onset-ms; docs/rl.md) "
        "| path of a policy bundle directory",
    )
    p.add_argument(
        "--amplitude",
        type=float,
        help="constant/ftsts amplitude in the envelope unit (mV sim, mA device)",
    )
    p.add_argument(
        "--frequency-hz", type=float, help="constant/ftsts pulse rate in Hz (sim default 83.33)"
    )
    p.add_argument(
        "--pulse-width-us", type=float, help="constant/ftsts phase width in µs (sim default 1000)"
    )
    p.add_argument(
        "--onset-ms",
        type=float,
        help="ftsts and clinical baselines: model time when stimulation may start (default 1980)",
    )
    p.add_argument(
        "--latch-below-mv",
        type=float,
        help="ftsts: weight_mv below which stimulation stops for good (default 75)",
    )
    p.add_argument("--period-ms", type=float, help="control period T in ms (default 20)")
    p.add_argument(
        "--duration",
        dest="duration_s",
        type=float,
        help="run length in seconds of control time (default 25)",
    )
    p.add_argument(
        "--tail-s",
        type=float,
        help="make the last S seconds of the run stimulation-free: the policy is no longer "
        "asked, the envelope ramps the output off and the run keeps observing and recording "
        "(the tail of neuroloop-eval's episodes; default 0: the policy acts to the end)",
    )
    p.add_argument(
        "--config",
        type=Path,
        help="TOML run configuration (flags override it); see docs/controller.md",
    )
    p.add_argument(
        "--envelope",
        metavar="PATH|simulator|device",
        help="safety envelope TOML (default: per backend)",
    )
    rec = p.add_mutually_exclusive_group()
    rec.add_argument(
        "--record", metavar="PATH", help="recording file (default runs/controller-<UTC time>.nlrec)"
    )
    rec.add_argument(
        "--no-record", action="store_true", default=None, help="do not record the session"
    )
    add_log_options(p, defaults=False)  # a --config file may set them too
    p.add_argument(
        "--pace",
        choices=["realtime", "fast"],
        help="realtime (default): one tick per period of wall-clock time (a replay answers "
        "at the recorded pace); fast: no sleeping, each tick as soon as the backend answers "
        "(simulator and replay; not serial, whose tissue does not wait)",
    )
    p.add_argument(
        "--connect",
        metavar="ADDR",
        help="use a running backend (ipc://... or tcp://127.0.0.1:PORT)",
    )
    p.add_argument(
        "--in-process",
        action="store_true",
        default=None,
        help="sim only: run the network inside this process instead of a server process",
    )
    p.add_argument(
        "--rt-priority",
        type=int,
        metavar="N",
        help="run the controller under SCHED_FIFO priority N (1-99; needs CAP_SYS_NICE) so it "
        "wakes on time on a busy host; not with --in-process",
    )
    p.add_argument(
        "--stall-limit-s",
        type=float,
        metavar="S",
        help="lockstep backends (simulator, replay): stop when one step takes longer than S "
        "seconds (default 5; late steps below it are counted, not faults)",
    )
    p.add_argument(
        "--monitor",
        nargs="?",
        const="127.0.0.1:8765",
        metavar="HOST[:PORT]",
        help="serve a live web view of the run (default 127.0.0.1:8765; any other address "
        "needs $NEUROLOOP_MONITOR_TOKEN). The page follows the run's recording, so the loop "
        "does no telemetry work; a browser on a small host still competes for the CPU: add "
        "--rt-priority for timing-critical runs. See docs/monitor.md",
    )
    add_threads_option(p, default=None, note=" of a simulator started with --backend sim")
    p.add_argument("--seed", type=int, help="backend seed (default 0)")
    p.add_argument("--timeout-s", type=float, help="handshake deadline in s (default 5)")
    return p


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for pkg in ("neuroloop", "numpy", "pyzmq", "msgpack"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def _policy_meta(policy: Policy) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": policy.name, "required_fields": list(policy.required_fields)}
    if isinstance(policy, BundlePolicy):
        meta_file = policy.bundle.path / "bundle.json"
        meta["bundle_path"] = str(policy.bundle.path)
        meta["bundle_sha256"] = hashlib.sha256(meta_file.read_bytes()).hexdigest()
        meta["weights_sha256"] = policy.bundle.metadata.get("weights_sha256")
        meta["onset_ms"] = policy.onset_ms
    return meta


def _meta(cfg: RunConfig, env: SafetyEnvelope, policy: Policy) -> dict[str, Any]:
    config = {k: v for k, v in vars(cfg).items()}
    return {
        "tool": "neuroloop-controller",
        "config": config,
        "envelope": env.as_dict(),
        "envelope_hash": env.sha256(),
        "policy": _policy_meta(policy),
        "seed": cfg.seed,
        "versions": _versions(),
    }


def _recorder(cfg: RunConfig, env: SafetyEnvelope, policy: Policy) -> TickRecorder:
    if cfg.no_record:
        return NullRecorder()
    if cfg.record is not None:
        path = Path(cfg.record)
    else:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = Path(cfg.record_dir) / f"controller-{stamp}.nlrec"
    path.parent.mkdir(parents=True, exist_ok=True)
    return SessionRecorder(path, _meta(cfg, env, policy))


def _recording_path(recorder: TickRecorder) -> Path | None:
    """The absolute path of the run's recording (``None`` without one)."""
    path = getattr(recorder, "path", None)
    return None if path is None else Path(path).resolve()


def make_summary(
    cfg: RunConfig,
    env: SafetyEnvelope,
    gov: SafetyGovernor,
    policy: Policy,
    result: RunResult,
    record: Path | None,
) -> Summary:
    """Assemble the end-of-run summary."""
    stats = result.stats
    counts, kinds = gov.counts, gov.reason_kinds
    return Summary(
        backend=f"{cfg.backend} ({result.info.name})",
        policy=policy.name,
        pace=cfg.pace,
        period_ms=cfg.period_ms,
        envelope_name=env.name,
        envelope_hash=env.sha256(),
        amplitude_unit=env.amplitude_unit,
        charge_unit=env.charge_unit,
        ticks=result.ticks,
        model_time_s=result.last_model_ms / 1000.0,
        end_reason=result.end_reason,
        fault=result.fault,
        deadline_misses=stats.deadline_misses,
        overruns=stats.overruns,
        clamps=count_kinds(counts, kinds, "clamp"),
        rejects=count_kinds(counts, kinds, "reject"),
        holds=count_kinds(counts, kinds, "hold"),
        recoveries=count_kinds(counts, kinds, "recovery"),
        charge_delivered=stats.charge,
        synchrony=stats.synchrony_trend(),
        latch_time_ms=getattr(policy, "latched_at_ms", None),
        timing=stats.timing(),
        recording=None if record is None else str(record),
        lockstep=result.info.lockstep,
        late_steps=stats.late_steps,
        fault_detail=result.fault_detail if result.fault is not None else None,
        advice=advice_for(result.fault, result.info.lockstep),
    )


def _bundle_timing(cfg: RunConfig, policy: BundlePolicy, period_given: bool, log: Any) -> RunConfig:
    """Run a bundle at the control period it was trained with unless one was given.

    A replay keeps the period it was asked for (the recording's: the replay backend refuses
    any other), and the bundle's onset lives in the policy, not in the run configuration.
    """
    trained = training_setting(policy.bundle, "control_period_ms")
    if trained is None:
        return cfg
    if not period_given and cfg.backend != "replay":
        log.info("period_from_bundle", period_ms=trained, onset_ms=policy.onset_ms)
        return replace(cfg, period_ms=trained).validate()
    if abs(cfg.period_ms - trained) > 1e-9:
        log.warning(
            "period_differs_from_training",
            period_ms=cfg.period_ms,
            trained_period_ms=trained,
            reason="the policy was trained on another control period; its actions may not transfer",
        )
    return cfg


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``neuroloop-controller``; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        file_values = load_run_config(args.config) if args.config is not None else {}
        cfg = merge(file_values, vars(args))
    except ConfigError as err:
        configure_logging()
        print(f"neuroloop-controller: error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    configure_from_args(cfg)
    log = structlog.get_logger("controller.cli")
    try:
        if args.rt_priority is not None:
            if cfg.in_process:
                raise ConfigError("Expected no --rt-priority with --in-process, actual both")
            request_realtime_priority(args.rt_priority)
            log.info("realtime_priority", policy="SCHED_FIFO", priority=args.rt_priority)
        elif args.monitor is not None:
            # the browsers' rendering competes with the loop on a small host (docs/monitor.md)
            log.info(
                "monitor_hint",
                hint="a browser on this host competes with the loop for the CPU: for "
                "timing-critical runs add --rt-priority N or watch from another machine",
            )
        env = load_envelope(cfg.envelope or default_envelope_for(cfg.backend))
        given = set(file_values) | {k for k, v in vars(args).items() if v is not None}
        policy = build_policy(
            cfg.policy,
            env,
            amplitude=cfg.amplitude,
            frequency_hz=cfg.frequency_hz,
            pulse_width_us=cfg.pulse_width_us,
            onset_ms=cfg.onset_ms,
            latch_below_mv=cfg.latch_below_mv,
            bundle_onset_ms=cfg.onset_ms if "onset_ms" in given else None,
            backend_kind=cfg.backend,
        )
        if isinstance(policy, BundlePolicy):
            cfg = _bundle_timing(cfg, policy, "period_ms" in given, log)
        settings = LoopSettings(
            cfg.period_ms,
            cfg.duration_s,
            "fast" if cfg.pace == "fast" else "realtime",
            cfg.seed,
            lockstep_stall_s=cfg.stall_limit_s,
            tail_s=cfg.tail_s,
        )
    except ConfigError as err:
        _report(cfg, "config_error", "error", err)
        return EXIT_CONFIG
    return run(cfg, env, policy, settings, args.monitor)


def _report(cfg: RunConfig, event: str, headline: str, err: Exception) -> None:
    """One line per error: ``prog: headline: message`` for people, or one JSON log record."""
    if cfg.log_format == "json":
        log = structlog.get_logger("controller.cli")
        level = "error" if event == "config_error" else "critical"
        getattr(log, level)(event, error=str(err))
    else:
        print(f"neuroloop-controller: {headline}: {err}", file=sys.stderr)


def run(
    cfg: RunConfig,
    env: SafetyEnvelope,
    policy: Policy,
    settings: LoopSettings,
    monitor_bind: str | None = None,
) -> int:
    """Open the backend, run the loop, stop, record and summarise (and serve a monitor)."""
    log = structlog.get_logger("controller.cli")
    try:
        governor = SafetyGovernor(env, cfg.period_ms / 1000.0, policy.action_map)
    except ConfigError as err:  # e.g. a lease too long in absolute time for --period-ms
        _report(cfg, "config_error", "error", err)
        return EXIT_CONFIG
    estop = EStop()
    estop.install()
    recorder: TickRecorder = NullRecorder()
    opened = None
    bar: tqdm[Any] | None = None
    monitor: Monitor | None = None
    code, error = EXIT_OK, ""
    try:
        request = BackendRequest(
            cfg.backend,
            cfg.connect,
            cfg.in_process,
            cfg.backend_options,
            cfg.simulator,
            cfg.seed,
            cfg.timeout_s,
            session=cfg.session,
            pace=cfg.pace,
            log_format="json" if cfg.log_format == "json" else "console",
            log_level=cfg.log_level,
            threads=DEFAULT_THREADS if cfg.threads is None else cfg.threads,
        )
        if cfg.threads is not None:
            warn_if_oversubscribed(cfg.threads, 1)
        recorder = _recorder(cfg, env, policy)
        if monitor_bind is not None:
            monitor = Monitor(
                monitor_bind,
                _meta(cfg, env, policy),
                estop,
                recording=_recording_path(recorder),
            )
            recorder = monitor.recorder(recorder)
            monitor.wait_ready()
        opened = open_backend(request)
        bar = tqdm(
            total=settings.ticks,
            unit="tick",
            desc=f"{cfg.backend}/{policy.name}",
            disable=cfg.log_format == "json" or not sys.stderr.isatty(),
            mininterval=0.5,
        )
        progress = bar
        loop = ControlLoop(
            opened.backend,
            policy,
            governor,
            settings,
            recorder=recorder,
            estop=estop,
            on_tick=lambda _k: progress.update(1),
        )
        estop.at_exit(lambda: loop.stop_backend("exit"))
        log.info("backend_connecting", backend=opened.description, envelope_hash=env.sha256())
        result = loop.run()
        estop.disarm_exit()
    except (ConfigError, RecordingError) as err:
        _report(cfg, "config_error", "error", err)
        code, error = EXIT_CONFIG, str(err)
    except (BackendUnavailableError, TimeoutError) as err:
        _report(cfg, "alarm_backend_unavailable", "backend unavailable", err)
        code, error = EXIT_BACKEND, str(err)
    except NeuroLoopError as err:
        _report(cfg, "alarm_safety_fault", "stopped by a fault", err)
        code, error = EXIT_FAULT, str(err)
    finally:
        if bar is not None:
            bar.close()
        if opened is not None:
            opened.close()  # stops stimulation and ends the session: nothing is left for exit
        estop.disarm_exit()
        estop.uninstall()
    if code != EXIT_OK:
        recorder.event("run_error", {"exit_code": code, "error": error})
        recorder.close()
        if monitor is not None:
            monitor.close()
        return code
    record_path = getattr(recorder, "path", None)
    summary = make_summary(cfg, env, governor, policy, result, record_path)
    recorder.event("summary", summary.as_dict())
    recorder.close()
    if monitor is not None:
        monitor.linger()
        monitor.close()
    print(format_table(summary))
    if record_path is not None:
        json_path = Path(str(record_path) + ".summary.json")
        summary.write_json(json_path)
        log.info("summary_written", path=str(json_path))
    if result.end_reason.startswith("estop"):
        return EXIT_ESTOP
    return EXIT_FAULT if result.fault is not None else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
