"""A load SIGKILLed mid-way leaves the target exactly as it was; the next run loads everything.

The load runs as ``campaigns ingest run`` in its own process, on a file of 400,000 bookings
over 1,000 already loaded; it is killed while its COPY streams the file, or while the merge
statement runs, as seen in ``pg_stat_activity``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.integration.ingestion.conftest import BOOKING_HEADER, booking, bookings_source, run

ROWS = 400_000
CAMPAIGNS = str(Path(sys.executable).with_name("campaigns"))


def write_bookings(path: Path, first: int, count: int, updated: str) -> None:
    with open(path, "w") as f:
        f.write(BOOKING_HEADER + "\n")
        for i in range(first, first + count):
            f.write(booking(i, profile=1 + i % 30, updated=updated) + "\n")


def snapshot(conn: psycopg.Connection) -> tuple:
    return conn.execute("SELECT count(*), sum(hashtext(b::text)) FROM crm.booking b").fetchone()


def wait_for_statement(dsn: str, prefix: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as watcher:
        while time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            busy = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s AND datname = "
                "current_database()", (prefix + "%",)).fetchone()[0]
            if busy:
                return
            time.sleep(0.02)
    pytest.fail(f"the load never ran {prefix!r}")


# The statements begin with the first comment line of their .sql files.
@pytest.mark.parametrize("kill_during", ["-- A CSV file's data lines", "-- The load's one set-based merge"])
def test_a_killed_load_changes_nothing_and_the_next_run_loads_all(ingest_store, sources, store_dsn, kill_during,
                                                                  monkeypatch) -> None:
    config = bookings_source(sources)
    write_bookings(sources.landing / "bookings_0.csv", 1, 1000, "2026-11-01 10:00")
    run(ingest_store, config)
    before = snapshot(ingest_store)
    write_bookings(sources.landing / "bookings_1.csv", 1, ROWS, "2026-12-01 10:00")  # 1,000 updates, the rest new
    env = {**os.environ, "CAMPAIGNS_INGESTION_DIR": str(sources.folder)}
    process = subprocess.Popen([CAMPAIGNS, "ingest", "run", "bookings"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_statement(store_dsn, kill_during, process)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    # The server ends the killed session's transaction when it sees the connection gone.
    killed = ingest_store.execute("SELECT load_id, backend_pid FROM ingest.load WHERE status = 'running'").fetchone()
    assert killed is not None, "the killed load had written its running row"
    deadline = time.monotonic() + 60
    while ingest_store.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (killed[1],)).fetchone()[0]:
        assert time.monotonic() < deadline, "the killed load's session never ended"
        time.sleep(0.1)
    assert snapshot(ingest_store) == before
    assert ingest_store.execute("SELECT count(*) FROM ingest.freshness WHERE load_id = %s", (killed[0],)).fetchone()[0] == 0

    (outcome,) = run(ingest_store, config)
    assert (outcome.rows_read, outcome.inserted, outcome.updated) == (ROWS, ROWS - 1000, 1000)
    assert ingest_store.execute("SELECT count(*), min(updated_at) = max(updated_at) FROM crm.booking").fetchone() \
        == (ROWS, True)
    status, error = ingest_store.execute("SELECT status, error FROM ingest.load WHERE load_id = %s",
                                         (killed[0],)).fetchone()
    assert status == "failed" and error.startswith("interrupted")
