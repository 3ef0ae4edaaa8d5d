"""``--threads`` on every command that simulates: one definition, reaching every network."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import structlog

from core.errors import ConfigError
from core.threads import (
    AUTO,
    add_threads_option,
    check_threads,
    parse_threads,
    warn_if_oversubscribed,
)


@pytest.fixture(autouse=True)
def _structlog_defaults():
    """CLI runs configure structlog; every test starts from the defaults."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.mark.parametrize("value", [1, 2, 256, "auto"])
def test_thread_counts_and_auto_are_accepted(value: int | str) -> None:
    assert check_threads(value) == value


def test_numpy_counts_and_any_case_of_auto_are_accepted() -> None:
    import numpy as np

    assert check_threads(np.int64(2)) == 2
    assert type(check_threads(np.int32(3))) is int
    assert check_threads("AUTO") == AUTO
    assert parse_threads("Auto") == AUTO


def test_a_cluster_reserves_a_cpu_per_thread() -> None:
    from core.threads import cpus_per_network

    assert [cpus_per_network(t) for t in (1, 3, AUTO)] == [1, 3, 1]


@pytest.mark.parametrize("value", [0, -1, 257, True, 1.5, "two", None])
def test_other_thread_counts_are_refused_naming_what_arrived(value: object) -> None:
    with pytest.raises(ConfigError, match=r"threads to be an integer in \[1, 256\] or 'auto'") as e:
        check_threads(value)
    assert f"actual {value!r}" in str(e.value)


def test_the_option_parses_counts_and_auto_and_says_what_it_expected() -> None:
    assert parse_threads("3") == 3
    assert parse_threads("auto") == AUTO
    for bad in ("0", "x", "1.5", "300"):
        with pytest.raises(argparse.ArgumentTypeError, match=f"actual {bad!r}"):
            parse_threads(bad)
    parser = argparse.ArgumentParser()
    add_threads_option(parser, per_worker=True)
    assert parser.parse_args([]).threads == 1
    assert "each worker's network" in parser.format_help()


def _sim_run_parser() -> argparse.ArgumentParser:
    from simulator.cli import _build_parser

    sub = next(a for a in _build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["run"]


def _parser(module: str) -> Callable[[], argparse.ArgumentParser]:
    def build() -> argparse.ArgumentParser:
        import importlib

        return importlib.import_module(module).build_parser()  # type: ignore[no-any-return]

    return build


SIMULATING = {
    "neuroloop-sim run": _sim_run_parser,
    "neuroloop-sim serve": _parser("simulator.server"),
    "neuroloop-controller": _parser("controller.cli"),
    "neuroloop-train": _parser("controller.train_cli"),
    "neuroloop-eval": _parser("controller.eval_cli"),
    "neuroloop-sweep": _parser("controller.sweep.cli"),
    "neuroloop-device-emulator": _parser("drivers.emulator_cli"),
}


@pytest.mark.parametrize("command", sorted(SIMULATING))
def test_every_command_that_simulates_takes_threads(command: str) -> None:
    parser = SIMULATING[command]()
    (action,) = [a for a in parser._actions if "--threads" in a.option_strings]
    assert action.type is parse_threads
    assert action.metavar == "N|auto"
    assert "docs/simulator.md#threads" in (action.help or "")
    per_worker = command in ("neuroloop-train", "neuroloop-eval", "neuroloop-sweep")
    assert ("each worker's network" in (action.help or "")) == per_worker


@pytest.mark.parametrize(
    ("threads", "workers", "cores", "warned"),
    [(1, 2, 2, False), (2, 1, 2, False), (2, 2, 2, True), ("auto", 1, 2, False),
     ("auto", 2, 2, True), (1, 3, 2, True)],
)  # fmt: skip
def test_more_threads_than_cores_is_warned_about(
    threads: int | str, workers: int, cores: int, warned: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.threads

    monkeypatch.setattr(core.threads, "usable_cores", lambda: cores)
    with structlog.testing.capture_logs() as logs:
        assert warn_if_oversubscribed(threads, workers) is warned
    assert [e["event"] for e in logs] == (["threads_oversubscribed"] if warned else [])


def test_the_server_and_the_environments_take_auto_and_refuse_zero() -> None:
    from controller.envs.models import LocalNetworkModel, network_params
    from simulator.server import SimulatorBackend, build_parser

    assert build_parser().parse_args(["--bind", "ipc:///x", "--threads", "auto"]).threads == AUTO
    SimulatorBackend(threads=AUTO)
    with pytest.raises(ConfigError, match="actual 0"):
        SimulatorBackend(threads=0)
    model = LocalNetworkModel(n_scale=0.05, threads=2)
    assert model.sim_backend._threads == 2
    assert network_params({"n_scale": 0.05, "threads": 2}) == {"n_scale": 0.05}
    assert "threads" not in model.description


def test_the_emulator_tissue_network_gets_its_threads(capsys: pytest.CaptureFixture[str]) -> None:
    from drivers.emulator_cli import main
    from drivers.tissue import make_network

    assert make_network(80, 20, threads=2).threads == 2  # type: ignore[attr-defined]
    assert make_network(80, 20).threads == 1  # type: ignore[attr-defined]
    assert main(["--no-tissue", "--threads", "2"]) == 2
    assert "Expected no --threads with --no-tissue" in capsys.readouterr().err


def test_auto_warm_up_compiles_one_thread_and_all_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    import simulator.warmup
    from simulator.config import NetworkConfig
    from simulator.network import Network

    built: list[Network] = []

    def factory(config: NetworkConfig) -> Network:
        built.append(Network(config))
        return built[-1]

    monkeypatch.setattr(simulator.warmup, "usable_cores", lambda: 2)
    simulator.warmup.warm_up_network(NetworkConfig(n_e=80, n_i=20), None, factory, threads=AUTO)
    assert [net.threads for net in built] == [1, 2]


def _controller(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from controller.cli import main

    code = main([*args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--connect", "ipc:///tmp/nowhere", "--threads", "2"], "with --connect ipc:///tmp/nowhere"),
        (["--backend", "serial", "--connect", "ipc:///x", "--policy", "off", "--envelope",
          "device", "--threads", "2"], "with --backend serial"),
    ],
)  # fmt: skip
def test_the_controller_refuses_threads_for_a_backend_it_does_not_start(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _controller([*args, "--no-record"], capsys)
    assert code == 2
    assert "Expected threads only for a simulator this command starts" in err
    assert message in err
    assert "Traceback" not in err


def test_the_controller_config_file_takes_threads(tmp_path: Path) -> None:
    from controller.config import load_run_config, merge

    path = tmp_path / "run.toml"
    path.write_text("[controller]\nin_process = true\nthreads = 'auto'\n")
    assert merge(load_run_config(path), {}).threads == AUTO
    path.write_text("[controller]\nin_process = true\nthreads = 0\n")
    with pytest.raises(ConfigError, match="integer in \\[1, 256\\] or 'auto', actual 0"):
        merge(load_run_config(path), {})


def _observations(path: Path) -> list[Any]:
    from protocol.recording import read_recording

    return [r.payload for r in read_recording(path).records if r.kind == "observation"]


def test_an_in_process_controller_run_on_two_threads_matches_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text("[controller]\nin_process = true\npace = 'fast'\n"
                   "[simulator]\nn_e = 80\nn_i = 20\n")  # fmt: skip
    runs = {}
    for threads in ("1", "2"):
        rec = tmp_path / f"t{threads}.nlrec"
        code, err = _controller(["--config", str(cfg), "--policy", "ftsts", "--onset-ms", "200",
                                 "--duration", "0.6", "--record", str(rec), "--threads", threads,
                                 "--log-level", "info"], capsys)  # fmt: skip
        assert code == 0, err
        assert f"threads={threads}" in err  # the simulator says what it runs on
        runs[threads] = _observations(rec)
    assert len(runs["1"]) == 30
    assert json.dumps(runs["1"], sort_keys=True) == json.dumps(runs["2"], sort_keys=True)


def test_sweep_points_carry_the_thread_count_outside_their_keys(tmp_path: Path) -> None:
    from controller.sweep.run import study_tasks
    from controller.sweep.study import load_study

    path = tmp_path / "s.toml"
    path.write_text('[study]\nname = "t"\nprotocol = "ftsts-desync"\nn_scale = 0.05\n'
                    "duration_s = 1.0\nseeds = 1\n"
                    "[parameters]\namplitude_mv = [100.0, 200.0]\n")  # fmt: skip
    study = load_study(path)
    one, two = study_tasks(study), study_tasks(study, threads=2)
    assert [t.key for t in one] == [t.key for t in two]
    assert {t.args[0]["threads"] for t in two} == {2}
    rows = [t.fn(*t.args) for t in (one[0], two[0])]
    for row in rows:
        for timing in ("wall_s", "jit_s", "model_s_per_wall_s", "point_wall_s"):
            row.pop(timing)
    assert rows[0] == rows[1]
