"""Every command line takes the same --log-format/--log-level with the same defaults.

Each command's ``--help`` is read through its own ``main()`` (the parser users see), so a
command that defines the options again, or forgets one, fails here.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest

from core.logs import (
    DEFAULT_LOG_FORMAT,
    DEFAULT_LOG_LEVEL,
    LOG_FORMATS,
    LOG_LEVELS,
    add_log_options,
    configure_from_args,
    is_configured,
)


def _mains() -> dict[str, tuple[Callable[[list[str]], int], list[str]]]:
    from controller.cli import main as controller_main
    from controller.eval_cli import main as eval_main
    from controller.replay_cli import main as replay_main
    from controller.sweep.cli import main as sweep_main
    from controller.train_cli import main as train_main
    from drivers.cli import main as driver_main
    from drivers.emulator_cli import main as emulator_main
    from fitting.cli import main as fit_main
    from protocol.conformance.cli import main as check_main
    from protocol.keys_cli import main as keys_main
    from protocol.loopback import main as loopback_main
    from simulator.cli import main as sim_main

    return {
        "neuroloop-sim run": (sim_main, ["run"]),
        "neuroloop-sim serve": (sim_main, ["serve"]),
        "neuroloop-controller": (controller_main, []),
        "neuroloop-train": (train_main, []),
        "neuroloop-eval": (eval_main, []),
        "neuroloop-replay verify": (replay_main, ["verify"]),
        "neuroloop-replay serve": (replay_main, ["serve"]),
        "neuroloop-replay report": (replay_main, ["report"]),
        "neuroloop-driver serve": (driver_main, ["serve"]),
        "neuroloop-driver probe": (driver_main, ["probe"]),
        "neuroloop-device-emulator": (emulator_main, []),
        "neuroloop-keys": (keys_main, []),
        "neuroloop-fit": (fit_main, []),
        "neuroloop-sweep": (sweep_main, []),
        "neuroloop-check-backend": (check_main, []),
        "python -m protocol.loopback": (loopback_main, []),
    }


COMMANDS = list(_mains())


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_offers_both_log_options(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    main, prefix = _mains()[command]
    with pytest.raises(SystemExit) as done:
        main([*prefix, "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--log-format {console,json}" in text, command
    assert "--log-level {debug,info,warning,error}" in text, command
    assert f"(default {DEFAULT_LOG_FORMAT})" in text, command
    assert f"(default {DEFAULT_LOG_LEVEL})" in text, command


def test_the_shared_options_parse_to_the_shared_defaults() -> None:
    parser = argparse.ArgumentParser()
    add_log_options(parser)
    args = parser.parse_args([])
    assert (args.log_format, args.log_level) == (DEFAULT_LOG_FORMAT, DEFAULT_LOG_LEVEL)
    assert DEFAULT_LOG_FORMAT in LOG_FORMATS
    assert DEFAULT_LOG_LEVEL in LOG_LEVELS
    configure_from_args(parser.parse_args(["--log-format", "json", "--log-level", "debug"]))
    assert is_configured()


def test_a_bad_log_level_is_refused_naming_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="x")
    add_log_options(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--log-level", "loud"])
    err = capsys.readouterr().err
    assert "--log-level" in err
    assert "'loud'" in err
    assert "debug" in err


def test_without_defaults_a_config_file_can_still_set_them() -> None:
    parser = argparse.ArgumentParser()
    add_log_options(parser, defaults=False)
    args = parser.parse_args([])
    assert (args.log_format, args.log_level) == (None, None)
    configure_from_args(args)  # absent values take the shared defaults
    assert is_configured()
