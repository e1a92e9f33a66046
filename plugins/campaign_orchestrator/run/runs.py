"""Register an Airflow DAG run in the store, so ledger rows can carry a small run key."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

if TYPE_CHECKING:
    from datetime import datetime

    import psycopg


def register_run(
    conn: psycopg.Connection,
    campaign_id: str,
    dag_run_id: str,
    logical_date: datetime | None,
    params: dict[str, Any],
) -> int:
    """Return the run key of this DAG run, creating it on first call (idempotent)."""
    with conn.transaction():
        row = conn.execute(
            """
            INSERT INTO campaign.run (campaign_id, dag_run_id, logical_date, params)
            VALUES (%s, %s, %s, %s)
            ON CONFLICT (campaign_id, dag_run_id) DO UPDATE SET status = 'running', finished_at = NULL
            RETURNING run_key
            """,
            (campaign_id, dag_run_id, logical_date, Jsonb(params)),
        ).fetchone()
    assert row is not None
    return int(row[0])


def finish_run(conn: psycopg.Connection, run_key: int, succeeded: bool) -> None:
    with conn.transaction():
        conn.execute(
            "UPDATE campaign.run SET status = %s, finished_at = now() WHERE run_key = %s",
            ("succeeded" if succeeded else "failed", run_key),
        )
