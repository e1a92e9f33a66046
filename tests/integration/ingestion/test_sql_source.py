"""A SQL source: a query on a second PostgreSQL database (its own Airflow connection), read
with a server-side cursor, incremental by a watermark kept per source."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import psycopg
import pytest

from campaign_orchestrator.ingestion.readers.sql_query import _server_side_cursor
from tests.fixtures.store import LOCAL_SERVER
from tests.integration.ingestion.conftest import run

SOURCE = """
    id: replica_profiles
    schedule: "*/15 * * * *"
    source:
      kind: sql
      conn_id: crm_replica
      query: sources/replica_profiles.sql
      watermark: {column: updated_at, initial: "1970-01-01"}
      fetch_rows: 100
    target: {table: crm.profile, key: profile_id, version: updated_at}
"""


@pytest.fixture
def replica(monkeypatch: pytest.MonkeyPatch) -> Iterator[psycopg.Connection]:
    """A second database on the machine's PostgreSQL, exported as the connection crm_replica."""
    name = f"ingest_source_{secrets.token_hex(4)}"
    with psycopg.connect(LOCAL_SERVER, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = LOCAL_SERVER.rsplit("/", 1)[0] + f"/{name}"
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    monkeypatch.setenv("AIRFLOW_CONN_CRM_REPLICA", json.dumps({
        "conn_type": "postgres", "host": info.get("host"), "port": int(info.get("port") or 5432),
        "login": info.get("user"), "schema": name}))
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE crm_profiles (id bigint PRIMARY KEY, email text, given_name text, "
                         "family_name text, country text, changed_at timestamptz NOT NULL)")
            conn.execute("INSERT INTO crm_profiles SELECT i, 'r' || i || '@example.com', 'Given' || i, 'Family', 'fr', "
                         "timestamptz '2026-12-01 00:00+00' + i * interval '1 minute' FROM generate_series(1, 1000) i")
            yield conn
    finally:
        with psycopg.connect(LOCAL_SERVER, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_query_is_incremental_by_its_watermark(ingest_store, sources, replica) -> None:
    ingest_store.execute("TRUNCATE crm.profile CASCADE")
    config = sources.source("replica_profiles", SOURCE)
    (first,) = run(ingest_store, config)
    assert (first.rows_read, first.inserted, first.rejected) == (1000, 1000, 0)
    assert first.watermark.startswith("2026-12-01 16:40:00")  # the 1000th minute
    assert ingest_store.execute("SELECT value FROM ingest.watermark WHERE source_id = 'replica_profiles'"
                                ).fetchone()[0] == first.watermark
    (nothing,) = run(ingest_store, config)
    assert (nothing.rows_read, nothing.changed) == (0, 0)
    replica.execute("UPDATE crm_profiles SET given_name = 'Renamed', changed_at = changed_at + interval '2 days' "
                    "WHERE id <= 10")
    replica.execute("INSERT INTO crm_profiles VALUES (1001, 'new@example.com', 'New', 'One', 'de', "
                    "'2026-12-05 00:00+00')")
    (later,) = run(ingest_store, config)
    assert (later.rows_read, later.inserted, later.updated) == (11, 1, 10)  # only what changed since
    rows = ingest_store.execute("SELECT count(*) FILTER (WHERE first_name = 'Renamed'), "
                                "count(*) FILTER (WHERE country_code = 'FR'), count(*) FROM crm.profile").fetchone()
    assert rows == (10, 1000, 1001)


def test_postgres_sources_are_read_with_a_server_side_cursor(replica) -> None:
    cursor = _server_side_cursor(replica)
    assert isinstance(cursor, psycopg.ServerCursor)
    cursor.close()
