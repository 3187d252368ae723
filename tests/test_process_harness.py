"""The multi-process harness turns a worker's failure, death or hang into a test
failure that says which worker and why, and leaves no process behind."""

from __future__ import annotations

import os
import time

import pytest

from tests.helpers.processes import Job, run_together


def _answer(value: int, barrier) -> int:
    barrier.wait()
    return value * 2


def _fail_before_start(barrier) -> None:
    raise RuntimeError("could not open the node")


def _die(barrier) -> None:
    barrier.wait()
    os._exit(3)


def _hang(barrier) -> None:
    barrier.wait()
    time.sleep(3600)


def test_results_come_back_in_job_order() -> None:
    assert run_together([Job(_answer, (n,)) for n in range(3)]) == [0, 2, 4]


def test_a_worker_failing_before_the_start_line_releases_the_others() -> None:
    started = time.monotonic()
    with pytest.raises(AssertionError) as failure:
        run_together(
            [Job(_fail_before_start), Job(_answer, (1,))], barrier_timeout=5
        )
    report = str(failure.value)
    assert "RuntimeError: could not open the node" in report
    assert "BrokenBarrierError" in report
    assert time.monotonic() - started < 60


def test_a_dead_worker_is_named_with_its_exit_code() -> None:
    with pytest.raises(AssertionError, match="worker-0-_die exited with code 3"):
        run_together([Job(_die), Job(_answer, (1,))])


def test_a_hung_worker_is_killed_and_its_stack_shown(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(AssertionError, match="worker-1-_hang was still running"):
        run_together([Job(_answer, (1,)), Job(_hang)], timeout=10)
    assert "in _hang" in capfd.readouterr().err
