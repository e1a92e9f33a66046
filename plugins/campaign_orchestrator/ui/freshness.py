"""What the Campaigns page shows of ingestion: each loaded table's freshness and last load,
and for campaigns that wait on data, the time from the file landing to the run starting."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from campaign_orchestrator.ui.data import query

if TYPE_CHECKING:
    import psycopg

    from campaign_orchestrator.config.campaign import CampaignConfig


@dataclass(frozen=True)
class TableData:
    table: str
    source_id: str | None
    data_as_of: datetime | None
    loaded_at: datetime | None
    landed_at: datetime | None
    rows_loaded: int | None
    last_load_id: int
    last_source_id: str
    last_status: str
    last_url: str | None
    last_started_at: datetime
    last_finished_at: datetime | None
    rows_read: int
    inserted: int
    updated: int
    unchanged: int
    deleted: int
    rejected: int
    duplicates: int
    error: str | None
    warnings: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Latency:
    started_at: datetime
    landed_at: datetime

    @property
    def seconds(self) -> float:
        return (self.started_at - self.landed_at).total_seconds()

    def as_dict(self) -> dict[str, Any]:
        return {"run_started_at": self.started_at.isoformat(), "file_landed_at": self.landed_at.isoformat(),
                "seconds": round(self.seconds, 1)}


def table_data(conn: psycopg.Connection) -> list[TableData]:
    """Every table a source has loaded (none on a store without the ingestion schema yet)."""
    if conn.execute("SELECT to_regclass('ingest.load')").fetchone()[0] is None:
        return []
    return [TableData(*row) for row in conn.execute(query("data_freshness"))]


def data_tables(config: CampaignConfig) -> list[str]:
    """The store tables a campaign waits on: its on_data schedule and its requires_fresh."""
    return list(dict.fromkeys([*config.schedule.on_data, *config.requires_fresh]))


def landing_latency(conn: psycopg.Connection, configs: dict[str, CampaignConfig]) -> dict[str, Latency]:
    pairs = [(cid, table) for cid, config in configs.items() for table in data_tables(config)]
    if not pairs or conn.execute("SELECT to_regclass('ingest.load')").fetchone()[0] is None:
        return {}
    rows = conn.execute(query("landing_latency"),
                        {"campaign_ids": [p[0] for p in pairs], "tables": [p[1] for p in pairs]})
    return {cid: Latency(started, landed) for cid, started, landed in rows if landed is not None}


def span(seconds: float | None) -> str:
    """``95`` -> ``1m 35s``: the page's way of writing a latency or an age."""
    if seconds is None:
        return "–"
    from campaign_orchestrator.ingestion.freshness import format_span

    return format_span(timedelta(seconds=seconds))
