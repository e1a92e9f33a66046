"""How fresh each loaded table is (``ingest.freshness``), and whether a campaign's
``requires_fresh`` holds: checked once by the task, then polled asynchronously by a trigger
while the task is deferred (``triggers.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from campaign_orchestrator.sqlfiles import query

if TYPE_CHECKING:
    import psycopg


@dataclass(frozen=True)
class TableFreshness:
    table: str
    max_age: timedelta
    data_as_of: datetime | None
    loaded_at: datetime | None
    source_id: str | None
    age: timedelta | None

    @property
    def fresh(self) -> bool:
        return self.age is not None and self.age <= self.max_age

    def describe(self) -> str:
        if self.data_as_of is None:
            return f"{self.table}: never loaded (requires data at most {format_span(self.max_age)} old)"
        state = "fresh" if self.fresh else "stale"
        return (f"{self.table}: {state}, data as of {self.data_as_of:%Y-%m-%d %H:%M:%S %Z} ({format_span(self.age)} old, "
                f"at most {format_span(self.max_age)} allowed; last loaded {self.loaded_at:%Y-%m-%d %H:%M:%S %Z} by "
                f"source {self.source_id})")

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "fresh": self.fresh, "description": self.describe()}


def check_freshness(conn: psycopg.Connection, requirements: dict[str, timedelta]) -> list[TableFreshness]:
    rows = conn.execute(query("ingestion/freshness_of"), {"tables": sorted(requirements)}).fetchall()
    return freshness_rows(rows, requirements)


def freshness_rows(rows: list[Any], requirements: dict[str, timedelta]) -> list[TableFreshness]:
    return [
        TableFreshness(table, requirements[table], as_of, loaded_at, source_id,
                       None if age is None else timedelta(seconds=float(age)))
        for table, as_of, loaded_at, source_id, age in rows
    ]


def format_span(value: timedelta | None) -> str:
    if value is None:
        return "?"
    seconds = int(value.total_seconds())
    if seconds < 0:
        return "0s"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    # Two units at most: "1d 2h", "5h 3m", "3m 20s".
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")]
    first = next((i for i, (n, _) in enumerate(parts) if n), 3)
    return " ".join(f"{n}{unit}" for n, unit in parts[first:first + 2] if n) or "0s"
