"""``neuroloop-replay``: verify, serve, plot and export recorded controller sessions.

Exit codes: ``verify``: 0 the session replays exactly and every invariant holds, 1 it does not
(the report says where), 2 unreadable input (not a recording, damaged, bad arguments). Damage
inside a recording (every region is listed with its byte offsets) is exit 2 even with
``--accept-damaged-tail``, which accepts only a torn tail.
``report``/``export``/``info``: 0 done, 2 unreadable input (``info`` of a damaged recording
still prints what is intact and every damaged region, then exits 2). ``serve``: 0 after
SIGINT/SIGTERM, 2 refused to start.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import structlog

from controller.replay.backend import PACES, ReplayBackend
from controller.replay.compare import DEFAULT_ATOL, DEFAULT_RTOL, Tolerance
from controller.replay.session import Session, load_session
from controller.replay.verify import verify_session
from core.errors import CorruptRecordingError, NeuroLoopError
from core.logs import add_log_options, configure_from_args
from protocol.recording import read_recording
from protocol.recording._format import PREAMBLE_LEN
from protocol.serve_cli import EPILOG as SERVE_EPILOG
from protocol.serve_cli import add_serve_arguments, run_backend

EXIT_PASS, EXIT_FAIL, EXIT_INPUT = 0, 1, 2

EPILOG = """\
examples:
  neuroloop-controller --policy ftsts --duration 5 --record runs/s1.nlrec
      record a session (against the simulator)
  neuroloop-replay verify runs/s1.nlrec
      re-run its policy and envelope on the recorded observations; exit 0 when every command,
      envelope finding and raw action is reproduced and every safety invariant holds
  neuroloop-replay verify runs/s1.nlrec --envelope my-envelope.toml --json
      would a new envelope have commanded the same? (mismatches say where: tick, field,
      expected = recorded, got = replayed)
  neuroloop-replay serve runs/s1.nlrec --bind tcp://127.0.0.1:5570 --pace recorded
  neuroloop-controller --backend replay --connect tcp://127.0.0.1:5570 \\
      --policy constant --amplitude 50 --duration 2
      try a new policy against the recorded observations
  neuroloop-replay report runs/s1.nlrec --out runs/s1-figures/
  neuroloop-replay export runs/s1.nlrec --nwb runs/s1.nwb

see docs/replay.md for what is checked and how.
"""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("session", type=Path, metavar="SESSION", help="recording file (.nlrec)")
    p.add_argument(
        "--accept-damaged-tail",
        action="store_true",
        help="use the intact records before a torn tail (a recorder that stopped mid-record) "
        "instead of refusing the file; damage anywhere else is always refused",
    )
    add_log_options(p)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with its five subcommands."""
    parser = argparse.ArgumentParser(
        prog="neuroloop-replay",
        description="Replay recorded controller sessions: verify them as regression tests, "
        "serve them as a backend, plot them, export them to NWB.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    v = sub.add_parser(
        "verify",
        help="re-run policy + envelope on the recorded observations and check every tick",
        description="Rebuild the session's envelope and policy from the recording header "
        "(hashes checked), feed them the recorded observations in order, and compare every "
        "command, envelope finding and raw action with the recording; check the envelope's "
        "invariants (bounds, charge, duty, slew, soft start, latched faults, reasons, NaN) on "
        "every tick; report latency, jitter and deadline misses. Exit 0 pass, 1 fail, 2 "
        "unreadable input.",
    )
    _add_common(v)
    v.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    v.add_argument(
        "--rtol",
        type=float,
        default=DEFAULT_RTOL,
        help=f"relative float tolerance (default {DEFAULT_RTOL:g})",
    )
    v.add_argument(
        "--atol",
        type=float,
        default=DEFAULT_ATOL,
        help=f"absolute float tolerance (default {DEFAULT_ATOL:g})",
    )
    v.add_argument(
        "--envelope",
        metavar="PATH|simulator|device",
        help="replay under this envelope instead of the recorded one",
    )
    v.add_argument(
        "--policy",
        metavar="NAME|DIR",
        help="replay this policy (off|constant|ftsts with the recorded arguments, or a bundle "
        "directory) instead of the recorded one",
    )
    v.add_argument(
        "--jitter-budget-ms",
        type=float,
        metavar="MS",
        help="also fail when the p99 period error of a real-time session exceeds MS",
    )
    v.add_argument(
        "--max-lines", type=int, default=20, help="failures listed per kind in the text report"
    )
    s = sub.add_parser(
        "serve",
        help="serve the recording as a protocol backend (observations in order)",
        description="Serve the session's observations, in order, as a NeuroLoop protocol "
        "backend (kind 'replay'); every step is checked against the advertised ranges and the "
        "configured envelope like any backend, and the step duration must be the recorded "
        "period.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("session", type=Path, metavar="SESSION", help="recording file (.nlrec)")
    s.add_argument(
        "--pace",
        choices=PACES,
        default="fast",
        help="fast: answer each step at once (default); recorded: hold each answer for the "
        "recorded round trip of that tick",
    )
    s.add_argument(
        "--accept-damaged-tail",
        action="store_true",
        help="serve the intact records before a torn tail (damage anywhere else is refused)",
    )
    add_serve_arguments(s)
    r = sub.add_parser(
        "report",
        help="PNG figures of the session",
        description="Write stimulation.png, observations.png, envelope.png and "
        "timing.png of the session into DIR.",
    )
    _add_common(r)
    r.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    e = sub.add_parser(
        "export",
        help="NWB export (needs pynwb: neuroloop[nwb])",
        description="Write the session as NWB: observation fields and commands "
        "as TimeSeries, envelope events as a table, header metadata in the file "
        "description and notes.",
    )
    _add_common(e)
    e.add_argument("--nwb", type=Path, required=True, metavar="OUT.nwb", help="new NWB file")
    i = sub.add_parser(
        "info",
        help="header, record counts and how the file ends (every damaged region with its "
        "byte offsets)",
    )
    _add_common(i)
    i.add_argument("--json", action="store_true", help="print as JSON")
    return parser


def _load(args: argparse.Namespace) -> Session:
    return load_session(args.session, accept_damaged_tail=args.accept_damaged_tail)


def _verify(args: argparse.Namespace) -> int:
    tol = Tolerance(atol=args.atol, rtol=args.rtol)
    report = verify_session(
        _load(args),
        tolerance=tol,
        envelope_path=args.envelope,
        policy_spec=args.policy,
        jitter_budget_ms=args.jitter_budget_ms,
    )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(report.text(limit=max(1, args.max_lines)))
    return EXIT_PASS if report.passed else EXIT_FAIL


def _print_info(info: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(info, indent=2, default=str))
    else:
        for key, value in info.items():
            if key == "damaged_regions":
                print(f"{key:<20} {len(value)}")
                for region in value:
                    print(f"  {region['text']}")
            else:
                print(f"{key:<20} {value}")


def _damaged_info(args: argparse.Namespace) -> int:
    """``info`` of a recording refused for damage: what is intact and every damaged region."""
    recording = read_recording(args.session)
    kinds: dict[str, int] = {}
    for rec in recording.records:
        kinds[rec.kind] = kinds.get(rec.kind, 0) + 1
    meta = recording.header.meta
    envelope = meta.get("envelope")
    info: dict[str, Any] = {
        "session": str(args.session),
        "format_version": recording.header.format_version,
        "tail": str(recording.tail),
        "tool": meta.get("tool"),
        "policy": meta.get("policy"),
        "envelope": envelope.get("name") if isinstance(envelope, dict) else None,
        "envelope_hash": meta.get("envelope_hash"),
        "intact_records": len(recording.records),
        "records": kinds,
        "damaged_regions": [
            {
                "start": r.start,
                "end": r.end,
                "kind": r.kind,
                "reason": r.reason,
                "records_before": r.records_before,
                "lost": list(r.lost) if r.lost is not None else None,
                "text": str(r),
            }
            for r in recording.tail.regions
        ],
    }
    _print_info(info, args.json)
    return EXIT_INPUT


def _info(args: argparse.Namespace) -> int:
    try:
        session = _load(args)
    except CorruptRecordingError as err:
        if err.offset <= PREAMBLE_LEN:  # the header itself is damaged
            raise
        print(f"neuroloop-replay info: error: {err}", file=sys.stderr)
        return _damaged_info(args)
    kinds: dict[str, int] = {}
    for rec in session.records:
        kinds[rec.kind] = kinds.get(rec.kind, 0) + 1
    meta = session.meta
    info = {
        "session": str(session.path),
        "format_version": session.header.format_version,
        "tail": str(session.tail),
        "tool": meta.get("tool"),
        "policy": meta["policy"],
        "envelope": meta["envelope"].get("name"),
        "envelope_hash": meta["envelope_hash"],
        "period_ms": session.period_ms,
        "pace": session.pace,
        "ticks": len(session.ticks),
        "control_time_s": len(session.ticks) * session.period_ms / 1000.0,
        "observation_fields": list(session.observation_fields()),
        "records": kinds,
    }
    _print_info(info, args.json)
    return EXIT_PASS


def _report(args: argparse.Namespace) -> int:
    from controller.replay.figures import write_figures

    for path in write_figures(_load(args), args.out):
        print(path)
    return EXIT_PASS


def _export(args: argparse.Namespace) -> int:
    from controller.replay.nwb import export_nwb

    print(export_nwb(_load(args), args.nwb))
    return EXIT_PASS


def _serve(args: argparse.Namespace) -> int:
    backend = ReplayBackend(_load(args), pace=args.pace, session_timeout_s=args.session_timeout_s)
    return run_backend(backend, args)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``neuroloop-replay``; returns the exit code."""
    args = build_parser().parse_args(argv)
    configure_from_args(args)
    log = structlog.get_logger("controller.replay")
    handlers = {
        "verify": _verify,
        "serve": _serve,
        "report": _report,
        "export": _export,
        "info": _info,
    }
    try:
        return handlers[args.command](args)
    except (NeuroLoopError, ValueError, OSError) as err:
        log.error("replay_input_error", command=args.command, error=str(err))
        print(f"neuroloop-replay {args.command}: error: {err}", file=sys.stderr)
        return EXIT_INPUT


if __name__ == "__main__":
    sys.exit(main())
