"""Send task attempts in their own processes, the way an Airflow worker runs them.

Airflow 3's task supervisor forks each task attempt from a process that has Airflow already
imported; here a :mod:`multiprocessing` fork server preloads Airflow and the package once and
forks one process per attempt, so a retry starts in a fraction of a second instead of
re-importing Airflow. Each attempt runs ``SendBatchOperator.execute`` for the batches it is
given, one after another, with the test's connections in its environment.

Exit status of an attempt: 0 when every batch finished, 75 when a batch ended with an error
Airflow retries, 1 when it failed for good; -9 when a test SIGKILLed it.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXIT_RETRY = 75
EXIT_FAILED = 1
_PRELOAD = [
    "campaign_orchestrator.operators.campaign",
    "campaign_orchestrator.run.send",
    "campaign_orchestrator.channels.email.smtp",
    "campaign_orchestrator.channels.email.ses",
    "campaign_orchestrator.channels.email.render",
    "tests.chaos.send_task",
]


def run_batches(campaign_file: str, campaign_id: str, step_id: str, run_id: str, batches: list[dict[str, int]]) -> int:
    """One task attempt per batch, in order; stop at the first that does not succeed."""
    from airflow.sdk.exceptions import AirflowFailException

    from campaign_orchestrator.operators.campaign import SendBatchOperator

    context = {"run_id": run_id, "params": {}}
    for batch in batches:
        task = SendBatchOperator(
            task_id=f"send_{step_id}", campaign_file=campaign_file, campaign_id=campaign_id, step_id=step_id,
            batch=batch,
        )
        try:
            task.execute(context)
        except AirflowFailException as exc:
            print(f"batch {batch['index']} failed for good: {exc}", file=sys.stderr)
            return EXIT_FAILED
        except Exception as exc:  # noqa: BLE001 - what Airflow retries
            print(f"batch {batch['index']} failed, to retry: {type(exc).__name__}: {exc}", file=sys.stderr)
            return EXIT_RETRY
    return 0


def _attempt(env: dict[str, str], log_path: str, args: tuple[Any, ...]) -> None:
    os.environ.update(env)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - lives as long as the process
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(run_batches(*args))


@dataclass
class AttemptResult:
    exitcode: int
    seconds: float
    log_tail: str

    @property
    def killed(self) -> bool:
        return self.exitcode == -9


class Worker:
    """Starts send task attempts as processes forked from a preloaded fork server."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(_PRELOAD)
        self._numbers = itertools.count(1)  # attempts may start from several threads

    def start(self, env: dict[str, str], campaign_file: str, campaign_id: str, step_id: str, run_id: str,
              batches: list[dict[str, int]]) -> tuple[multiprocessing.process.BaseProcess, Path, float]:
        log_path = self.log_dir / f"attempt-{next(self._numbers):03d}.log"
        process = self._ctx.Process(
            target=_attempt, args=(env, str(log_path), (campaign_file, campaign_id, step_id, run_id, batches)),
            daemon=True,
        )
        started = time.monotonic()
        process.start()
        return process, log_path, started

    @staticmethod
    def wait(process: multiprocessing.process.BaseProcess, log_path: Path, started: float,
             timeout: float = 600) -> AttemptResult:
        process.join(timeout)
        if process.exitcode is None:
            process.kill()
            process.join()
            raise TimeoutError(f"send attempt still running after {timeout}s; log: {log_path}")
        tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
        return AttemptResult(process.exitcode, time.monotonic() - started, tail)
