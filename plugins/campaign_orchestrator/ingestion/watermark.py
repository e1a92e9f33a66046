"""Incremental SQL sources: the largest watermark value loaded, kept per source in
``ingest.watermark`` and moved forward in the load's own transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING

from campaign_orchestrator.sqlfiles import query

if TYPE_CHECKING:
    import psycopg

    from campaign_orchestrator.config.ingestion import SqlSource


def current_watermark(conn: psycopg.Connection, source_id: str, source: SqlSource) -> str | None:
    """The value the next query binds as ``%(watermark)s``: the stored one, else the initial."""
    if source.watermark is None:
        return None
    row = conn.execute(query("ingestion/get_watermark"), {"source_id": source_id}).fetchone()
    return row[0] if row else source.watermark.initial


def advance_watermark(conn: psycopg.Connection, source_id: str, column: str, value: str, load_id: int) -> None:
    conn.execute(query("ingestion/set_watermark"),
                 {"source_id": source_id, "column": column, "value": value, "load_id": load_id})
