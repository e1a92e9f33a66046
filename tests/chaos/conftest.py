"""Fixtures of the fault tests (``make chaos``), and their one-line summaries.

``make test`` leaves this folder out (``--ignore`` in pyproject.toml): these tests take
minutes; ``make chaos`` (and CI, after ``make test``) runs them with ``pytest tests/chaos``.

Each test appends a line to ``chaos_summary`` (e.g. ``chaos sigkill: 10 kills, 100000
sendable, …``); they are printed at the end of the pytest run, so the numbers can be quoted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.chaos.campaign import ChaosRun
from tests.chaos.send_task import Worker
from tests.chaos.sink import ChaosSink, chaos_sink

_SUMMARY: list[str] = []


def pytest_terminal_summary(terminalreporter) -> None:
    if _SUMMARY:
        terminalreporter.section("chaos summary")
        for line in _SUMMARY:
            terminalreporter.write_line(line)


@pytest.fixture
def chaos_summary() -> list[str]:
    """Append one line per fault test; printed in pytest's terminal summary."""
    return _SUMMARY


@pytest.fixture(scope="session")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Worker:
    """Forks send task attempts from a preloaded fork server (one per session)."""
    return Worker(tmp_path_factory.mktemp("attempts"))


@pytest.fixture
def sink() -> Iterator[ChaosSink]:
    with chaos_sink() as server:
        yield server


@pytest.fixture
def chaos_run(store: psycopg.Connection, sink: ChaosSink, worker: Worker, tmp_path: Path) -> ChaosRun:
    """A campaign of one marketing email step sending to ``sink``, on the session's store."""
    return ChaosRun(tmp_path / "project", store, worker, extra_env=sink.env())

