"""Saved audiences: versioned snapshots of evaluated audiences, and their listing.

Each save is a new version (AJO can only overwrite); a campaign reads the latest or a pinned
version through a ``saved:`` block. A run saves at most once per name however often its task
is retried, and versions past their retention are deleted when the next one is saved.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg


@dataclass(frozen=True)
class SavedAudience:
    name: str
    version: int
    size: int
    source_campaign: str
    source_dag_run_id: str
    created_at: datetime
    expires_at: datetime | None


def save_audience(
    conn: psycopg.Connection,
    run_key: int,
    campaign_id: str,
    dag_run_id: str,
    name: str,
    retention: timedelta | None,
) -> SavedAudience:
    """Save the run's audience snapshot as the next version of ``name`` (once per run)."""
    lock = int.from_bytes(hashlib.blake2b(f"saved:{name}".encode(), digest_size=8).digest(), "big", signed=True)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
        existing = _one(conn, "WHERE name = %s AND source_campaign = %s AND source_dag_run_id = %s",
                        (name, campaign_id, dag_run_id))
        if existing is not None:
            return existing
        saved_id = conn.execute(
            """
            INSERT INTO campaign.saved_audience
                (name, version, size, source_campaign, source_run_key, source_dag_run_id, expires_at)
            SELECT %(name)s, coalesce(max(version), 0) + 1, 0, %(campaign)s, %(run_key)s, %(dag_run_id)s,
                   now() + %(retention)s::interval
            FROM campaign.saved_audience WHERE name = %(name)s
            RETURNING saved_id
            """,
            {"name": name, "campaign": campaign_id, "run_key": run_key, "dag_run_id": dag_run_id,
             "retention": retention},
        ).fetchone()[0]
        size = conn.execute(
            """
            INSERT INTO campaign.saved_audience_member (saved_id, profile_id, entity_key)
            SELECT %s, profile_id, entity_key FROM campaign.audience_member WHERE run_key = %s
            """,
            (saved_id, run_key),
        ).rowcount
        conn.execute("UPDATE campaign.saved_audience SET size = %s WHERE saved_id = %s", (size, saved_id))
        conn.execute(
            "DELETE FROM campaign.saved_audience WHERE name = %s AND expires_at < now() AND saved_id <> %s",
            (name, saved_id),
        )
        saved = _one(conn, "WHERE saved_id = %s", (saved_id,))
    assert saved is not None
    return saved


def list_saved_audiences(conn: psycopg.Connection, name: str | None = None) -> list[SavedAudience]:
    return [
        SavedAudience(*row)
        for row in conn.execute(
            f"SELECT {_COLUMNS} FROM campaign.saved_audience WHERE %(name)s::text IS NULL OR name = %(name)s "
            "ORDER BY name, version DESC",
            {"name": name},
        )
    ]


_COLUMNS = "name, version, size, source_campaign, source_dag_run_id, created_at, expires_at"


def _one(conn: psycopg.Connection, where: str, params: tuple) -> SavedAudience | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM campaign.saved_audience {where}", params).fetchone()
    return SavedAudience(*row) if row else None
