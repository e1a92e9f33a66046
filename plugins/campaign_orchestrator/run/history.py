"""The store's record of campaign runs: listing them, and deleting a rehearsal's on purpose.

A run's ledger is also the communication history that frequency caps count: deleting a run
(say, an ``airflow dags test`` rehearsal that really sent to a test SMTP server) removes its
messages from the caps, its snapshot, its reports and its waits. Delivery feedback already
received is kept (a bounce is still a bounce). Dry runs and proofs never need this: a dry
run's messages end ``rendered`` and count for no cap; proofs write no ledger row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg


@dataclass(frozen=True)
class RunSummary:
    run_key: int
    campaign_id: str
    dag_run_id: str
    logical_date: datetime | None
    status: str
    started_at: datetime
    dry_run: bool
    audience_size: int | None
    sent: int
    """Messages of the run that count for frequency caps (sent)."""


def list_runs(conn: psycopg.Connection, campaign_id: str | None = None, limit: int = 50) -> list[RunSummary]:
    rows = conn.execute(
        """
        SELECT r.run_key, r.campaign_id, r.dag_run_id, r.logical_date, r.status, r.started_at,
               coalesce((r.params->>'dry_run')::boolean, false), r.audience_size,
               (SELECT count(*) FROM campaign.message m WHERE m.run_key = r.run_key AND m.status = 'sent')
        FROM campaign.run r
        WHERE %(campaign)s::text IS NULL OR r.campaign_id = %(campaign)s
        ORDER BY r.started_at DESC, r.run_key DESC
        LIMIT %(limit)s
        """,
        {"campaign": campaign_id, "limit": limit},
    ).fetchall()
    return [RunSummary(*row) for row in rows]


def delete_run(conn: psycopg.Connection, campaign_id: str, dag_run_id: str) -> RunSummary | None:
    """Delete one run and everything recorded for it (statement triggers of migration 0012
    take its snapshot and ledger rows; foreign keys its steps, reports and waits). None when
    there is no such run."""
    with conn.transaction():
        found = [r for r in list_runs(conn, campaign_id, limit=1_000_000) if r.dag_run_id == dag_run_id]
        if not found:
            return None
        conn.execute("DELETE FROM campaign.run WHERE run_key = %s", (found[0].run_key,))
    return found[0]
