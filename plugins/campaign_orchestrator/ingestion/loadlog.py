"""``ingest.load``: one row per load of a file or a query, with what it did.

The row is written as ``running`` on its own before the load starts and completed in the
load's own transaction, so the counts and the target change together; a killed load leaves
``running`` behind, which the next load of the source marks as failed (interrupted).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

from campaign_orchestrator.sqlfiles import query

if TYPE_CHECKING:
    import psycopg

    from campaign_orchestrator.config.ingestion import IngestionConfig
    from campaign_orchestrator.ingestion.files import LandedFile


@dataclass
class LoadOutcome:
    """What one load did: the counts the run log, the load log and the Campaigns page show."""

    source_id: str
    table: str
    load_id: int | None = None
    url: str | None = None
    status: str = "running"
    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    rejected: int = 0
    duplicates: int = 0
    data_as_of: datetime | None = None
    landed_at: datetime | None = None
    watermark: str | None = None
    sha256: str | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    path: str = ""
    """fast (one pass) or careful (values checked one column at a time)."""

    @property
    def changed(self) -> int:
        return self.inserted + self.updated + self.deleted

    def as_dict(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}

    def line(self) -> str:
        where = self.url or "query"
        counts = (f"read {self.rows_read:,}: inserted {self.inserted:,}, updated {self.updated:,}, "
                  f"unchanged {self.unchanged:,}, deleted {self.deleted:,}, rejected {self.rejected:,}, "
                  f"duplicates {self.duplicates:,}")
        return f"[{self.status}] {where}: {counts}" + (f" ({self.error})" if self.error else "")


def start_load(conn: psycopg.Connection, config: IngestionConfig, file: LandedFile | None,
               dag_run_id: str | None) -> int:
    row = conn.execute(query("ingestion/start_load"), {
        "source_id": config.id, "table": config.target.table, "dag_run_id": dag_run_id,
        "url": file.url if file else None, "identity": file.identity if file else None,
        "landed_at": file.landed_at if file else None,
    }).fetchone()
    assert row is not None
    return int(row[0])


def finish_load(conn: psycopg.Connection, outcome: LoadOutcome) -> None:
    conn.execute(query("ingestion/finish_load"), {
        "load_id": outcome.load_id, "status": outcome.status, "sha256": outcome.sha256,
        "rows_read": outcome.rows_read, "inserted": outcome.inserted, "updated": outcome.updated,
        "unchanged": outcome.unchanged, "deleted": outcome.deleted, "rejected": outcome.rejected,
        "duplicates": outcome.duplicates, "data_as_of": outcome.data_as_of, "watermark": outcome.watermark,
        "warnings": Jsonb(outcome.warnings), "error": outcome.error,
    })


def mark_interrupted(conn: psycopg.Connection, source_id: str, own_load_id: int) -> list[int]:
    rows = conn.execute(query("ingestion/mark_interrupted"), {"source_id": source_id, "load_id": own_load_id})
    return [r[0] for r in rows]


def loaded_file(conn: psycopg.Connection, source_id: str, file: LandedFile) -> int | None:
    row = conn.execute(query("ingestion/loaded_file"),
                       {"source_id": source_id, "url": file.url, "identity": file.identity}).fetchone()
    return int(row[0]) if row else None


def loaded_content(conn: psycopg.Connection, source_id: str, sha256: str) -> tuple[int, str] | None:
    row = conn.execute(query("ingestion/loaded_content"), {"source_id": source_id, "sha256": sha256}).fetchone()
    return (int(row[0]), row[1]) if row else None
