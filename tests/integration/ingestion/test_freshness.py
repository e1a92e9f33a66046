"""Freshness: each successful load records the table's; a campaign's ``requires_fresh`` check
goes on at once when it holds, else defers to a trigger polling the store asynchronously, and
fails naming the stale table when the wait is over."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from campaign_orchestrator.ingestion.operators import CheckFreshnessOperator
from tests.integration.ingestion.conftest import BOOKING_HEADER, booking, bookings_source, run


def check(tables: dict[str, float], timeout: float = 3) -> CheckFreshnessOperator:
    return CheckFreshnessOperator(task_id="check_freshness", requirements=tables, timeout=timeout)


def wait(operator: CheckFreshnessOperator) -> dict:
    """Run the task as the worker and the triggerer would: execute, the deferred trigger, resume."""
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({})
    trigger = deferred.value.trigger
    assert deferred.value.method_name == "execute_complete"

    async def first_event():
        async for event in trigger.run():
            return event.payload

    return operator.execute_complete({}, asyncio.run(first_event()))


def test_a_load_records_the_tables_freshness(ingest_store, sources) -> None:
    config = bookings_source(sources)
    path = sources.file("bookings_1.csv", f"{BOOKING_HEADER}\n{booking(1)}\n{booking(2)}\n")
    (outcome,) = run(ingest_store, config)
    row = ingest_store.execute("SELECT source_id, load_id, data_as_of, landed_at, rows_loaded, loaded_at > now() - "
                               "interval '1 minute' FROM ingest.freshness WHERE table_name = 'crm.booking'").fetchone()
    assert row[:2] == ("bookings", outcome.load_id) and row[4] == 2 and row[5]
    assert row[2] == row[3] and abs(row[3].timestamp() - path.stat().st_mtime) < 1  # as of when the file landed


def test_fresh_data_passes_at_once(ingest_store, sources) -> None:
    sources.file("bookings_1.csv", f"{BOOKING_HEADER}\n{booking(1)}\n")
    run(ingest_store, bookings_source(sources))
    assert check({"crm.booking": 3600}).execute({}) == {"fresh": ["crm.booking"]}


def test_a_stale_table_blocks_the_campaign_with_a_clear_message(ingest_store, sources) -> None:
    sources.file("bookings_1.csv", f"{BOOKING_HEADER}\n{booking(1)}\n")
    run(ingest_store, bookings_source(sources))
    ingest_store.execute("UPDATE ingest.freshness SET data_as_of = now() - interval '5 hours'")
    started = time.monotonic()
    with pytest.raises(AirflowFailException) as failed:
        wait(check({"crm.booking": 7200, "crm.consent": 7200}, timeout=2))
    assert time.monotonic() - started >= 2  # it waited, deferred, until the deadline
    message = str(failed.value)
    assert "The campaign's data is not fresh enough (requires_fresh), so it does not run" in message
    assert "- crm.booking: stale, data as of" in message and "(5h old, at most 2h allowed;" in message
    assert "by source bookings)" in message
    assert "- crm.consent: never loaded (requires data at most 2h old)" in message


def test_the_wait_ends_when_a_fresh_load_lands(ingest_store, sources) -> None:
    config = bookings_source(sources)
    sources.file("bookings_1.csv", f"{BOOKING_HEADER}\n{booking(1)}\n")
    run(ingest_store, config)
    ingest_store.execute("UPDATE ingest.freshness SET data_as_of = now() - interval '5 hours'")

    def load_later() -> None:
        time.sleep(1.5)
        import psycopg

        sources.file("bookings_2.csv", f"{BOOKING_HEADER}\n{booking(2)}\n")
        with psycopg.connect(ingest_store.info.dsn, autocommit=True) as conn:
            run(conn, config)

    loader = threading.Thread(target=load_later)
    loader.start()
    try:
        result = wait(check({"crm.booking": 7200}, timeout=60))
    finally:
        loader.join()
    assert result == {"fresh": ["crm.booking"]}
