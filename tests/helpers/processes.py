"""Run test workers in spawned processes of their own, as separate servers would run.

A worker that hangs or dies must fail its test, not stall the whole run: the workers
are daemons, released together by a barrier that gives up after a while, and killed
when the test's time is up — after each has written its Python stack to stderr (which
pytest shows with the failure), so the report says where it hung.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import multiprocessing
import os
import queue
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

# How long a worker waits at the start line for the others before it gives up.
BARRIER_TIMEOUT_SECONDS = 120.0
# Time a worker that has reported gets to exit, and a hung one to write its stack.
_EXIT_GRACE_SECONDS = 10.0
_STACK_DUMP_GRACE_SECONDS = 2.0


@dataclasses.dataclass(frozen=True)
class Job:
    """`target(*args, barrier)`: the target calls `barrier.wait()` when set up."""

    target: Callable[..., Any]
    args: tuple[Any, ...] = ()


def run_together(
    jobs: Sequence[Job],
    *,
    timeout: float = 300.0,
    barrier_timeout: float = BARRIER_TIMEOUT_SECONDS,
) -> list[Any]:
    """Each job's return value, in job order; AssertionError naming every worker that
    raised, died or was still running after `timeout` seconds."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(jobs), timeout=barrier_timeout)
    results = context.Queue()
    processes = [
        context.Process(
            target=_report,
            args=(index, job.target, (*job.args, barrier), results),
            name=f"worker-{index}-{job.target.__name__}",
            daemon=True,
        )
        for index, job in enumerate(jobs)
    ]
    for process in processes:
        process.start()
    outcomes: dict[int, tuple[bool, Any]] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(outcomes) < len(processes) and time.monotonic() < deadline:
            try:
                index, ok, detail = results.get(timeout=1.0)
            except queue.Empty:
                if all(
                    p.exitcode is not None
                    for i, p in enumerate(processes)
                    if i not in outcomes
                ):
                    break  # the rest died without a word
                continue
            outcomes[index] = (ok, detail)
    finally:
        hung = _stop(processes)
    failures = []
    for index, process in enumerate(processes):
        if index in hung:
            failures.append(
                f"{process.name} was still running after {timeout:.0f} s and was "
                "killed (its stack is in the captured stderr)"
            )
        elif index not in outcomes:
            failures.append(
                f"{process.name} exited with code {process.exitcode} without a result"
            )
        elif not outcomes[index][0]:
            failures.append(f"{process.name} failed:\n{outcomes[index][1]}")
    assert not failures, "\n".join(failures)
    return [outcomes[index][1] for index in range(len(processes))]


def _stop(processes: list[multiprocessing.process.BaseProcess]) -> set[int]:
    """Ask the workers still running for their stacks, kill them; their indexes."""
    grace_ends = time.monotonic() + _EXIT_GRACE_SECONDS
    for process in processes:
        process.join(timeout=max(0.0, grace_ends - time.monotonic()))
    hung = {i for i, p in enumerate(processes) if p.is_alive()}
    for index in hung:
        if processes[index].pid is not None:
            os.kill(processes[index].pid, signal.SIGUSR1)
    if hung:
        time.sleep(_STACK_DUMP_GRACE_SECONDS)
    for index in hung:
        processes[index].kill()
    for index in hung:
        processes[index].join(timeout=_EXIT_GRACE_SECONDS)
    return hung


def _report(index: int, target: Callable[..., Any], args: tuple, results) -> None:
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        results.put((index, True, target(*args)))
    except BaseException:  # noqa: BLE001 - the parent shows the worker's traceback
        results.put((index, False, traceback.format_exc()))
