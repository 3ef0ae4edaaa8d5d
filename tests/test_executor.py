"""The local engine of core.executor: one outcome per task, retries after a dead worker,
failing tasks reported with their parameters; argument parsing of --ray."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest
from executor_tasks import always_die, die_once, hang_once, raise_value_error, sleep_s, square

from core.executor import (
    ExecutorError,
    LocalExecutor,
    Task,
    make_executor,
    parse_ray_address,
    run_ordered,
)


@pytest.fixture(scope="module")
def executor() -> Iterator[LocalExecutor]:
    ex = LocalExecutor(2, start_method="fork")
    yield ex
    ex.close()


def test_every_task_gives_exactly_one_outcome(executor: LocalExecutor) -> None:
    tasks = [Task(f"t{i}", square, (i,), {"i": i}) for i in range(7)]
    outcomes = list(executor.run(tasks))
    assert sorted(o.key for o in outcomes) == sorted(t.key for t in tasks)
    assert [o.value for o in run_ordered(executor, tasks)] == [i * i for i in range(7)]
    assert all(o.ok and o.attempts == 1 for o in outcomes)


def test_a_raising_task_is_reported_and_the_rest_finish(executor: LocalExecutor) -> None:
    tasks = [Task("bad", raise_value_error, (2.5,), {"x": 2.5}),
             *[Task(f"t{i}", square, (i,)) for i in range(4)]]  # fmt: skip
    by_key = {o.key: o for o in executor.run(tasks)}
    assert by_key["bad"].error == "ValueError: refuses x = 2.5"
    assert dict(by_key["bad"].params) == {"x": 2.5}
    assert by_key["bad"].attempts == 1
    assert not by_key["bad"].lost
    assert [by_key[f"t{i}"].value for i in range(4)] == [0, 1, 4, 9]


def test_a_task_whose_worker_dies_runs_again(executor: LocalExecutor, tmp_path: Path) -> None:
    tasks = [Task("dies", die_once, (str(tmp_path / "m"), 4)),
             *[Task(f"t{i}", square, (i,)) for i in range(5)]]  # fmt: skip
    by_key = {o.key: o for o in executor.run(tasks)}
    assert len(by_key) == 6
    assert by_key["dies"].value == 40
    assert by_key["dies"].attempts == 2
    assert [by_key[f"t{i}"].value for i in range(5)] == [0, 1, 4, 9, 16]


def test_a_task_that_always_kills_its_worker_is_reported_lost(tmp_path: Path) -> None:
    # One worker: a task running beside "doomed" would be charged for its deaths too (a broken
    # pool does not say whose worker died) and could be lost after two of them.
    with LocalExecutor(1, start_method="fork", max_attempts=2) as ex:
        tasks = [Task("doomed", always_die, (1,), {"x": 1}),
                 *[Task(f"t{i}", square, (i,)) for i in range(3)]]  # fmt: skip
        by_key = {o.key: o for o in ex.run(tasks)}
    assert by_key["doomed"].lost
    assert by_key["doomed"].attempts == 2
    assert "died" in str(by_key["doomed"].error)
    assert [by_key[f"t{i}"].value for i in range(3)] == [0, 1, 4]


def test_a_task_past_its_timeout_is_reported_and_the_rest_finish_once() -> None:
    with LocalExecutor(1, start_method="fork") as ex:
        tasks = [Task("slow", sleep_s, (600.0,), {"s": 600.0}, timeout_s=1.0),
                 *[Task(f"t{i}", square, (i,), timeout_s=60.0) for i in range(4)]]  # fmt: skip
        outcomes = list(ex.run(tasks))
        # The pool was restarted: the executor still runs the next job.
        again = run_ordered(ex, [Task("u", square, (5,), timeout_s=60.0)])
    assert sorted(o.key for o in outcomes) == sorted(t.key for t in tasks)
    by_key = {o.key: o for o in outcomes}
    slow = by_key["slow"]
    assert slow.timed_out
    assert not slow.ok
    assert not slow.lost
    assert slow.error == "timed out after 1 s"
    assert dict(slow.params) == {"s": 600.0}
    assert slow.attempts == 1
    assert [(by_key[f"t{i}"].value, by_key[f"t{i}"].attempts) for i in range(4)] == [
        (0, 1),
        (1, 1),
        (4, 1),
        (9, 1),
    ]
    assert again[0].value == 25


def test_tasks_running_beside_a_timed_out_one_restart_uncharged(tmp_path: Path) -> None:
    marker = tmp_path / "starts"
    with LocalExecutor(2, start_method="fork") as ex:
        # "hung" is in the second worker when "slow" times out; the pool restarts under it.
        tasks = [Task("slow", sleep_s, (600.0,), timeout_s=3.0),
                 Task("hung", hang_once, (str(marker), 7), timeout_s=120.0),
                 *[Task(f"t{i}", square, (i,)) for i in range(3)]]  # fmt: skip
        outcomes = list(ex.run(tasks))
    assert sorted(o.key for o in outcomes) == sorted(t.key for t in tasks)
    by_key = {o.key: o for o in outcomes}
    assert by_key["slow"].timed_out
    assert marker.read_text() == "2"
    assert (by_key["hung"].value, by_key["hung"].attempts) == (70, 1)
    assert [by_key[f"t{i}"].value for i in range(3)] == [0, 1, 4]


def test_duplicate_keys_and_bad_sizes_are_refused(executor: LocalExecutor) -> None:
    with pytest.raises(ExecutorError, match="unique task keys"):
        list(executor.run([Task("a", square, (1,)), Task("a", square, (2,))]))
    with pytest.raises(ExecutorError, match="workers >= 1"):
        LocalExecutor(0)
    with pytest.raises(ExecutorError, match="start method"):
        LocalExecutor(1, start_method="teleport")
    with pytest.raises(ExecutorError, match="timeout_s > 0"):
        Task("a", square, (1,), timeout_s=0.0)


def test_ray_addresses_are_checked() -> None:
    for good in ("auto", "local", "10.0.0.5:6379", "ray://head:10001"):
        assert parse_ray_address(good) == good
    for bad in ("", "head", "head:port", "head:70000"):
        with pytest.raises(argparse.ArgumentTypeError, match="HOST:PORT"):
            parse_ray_address(bad)


def test_default_engine_is_local_and_needs_no_ray() -> None:
    ex = make_executor(None, 1)
    assert isinstance(ex, LocalExecutor)
    assert ex.describe() == {"engine": "local", "workers": 1}
    ex.close()


def test_no_cluster_at_the_address_fails_fast_and_says_so() -> None:
    pytest.importorskip("ray", reason="the cluster extra is not installed")
    with pytest.raises(ExecutorError, match=r"listening at '127\.0\.0\.1:1'"):
        make_executor("127.0.0.1:1")
