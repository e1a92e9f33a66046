"""The tasks of an ingestion DAG, and the freshness check campaigns run before their audience.

Operators store their arguments and call the library; nothing connects in ``__init__``. Each
task reloads its source's config from the file the DAG was built from. XCom carries counts
and bounds only.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from campaign_orchestrator.paths import ProjectPaths
from campaign_orchestrator.store.connect import store_connection

if TYPE_CHECKING:
    import psycopg
    from airflow.sdk import Context

    from campaign_orchestrator.config.ingestion import IngestionConfig

log = logging.getLogger(__name__)

COUNTS = ("rows_read", "inserted", "updated", "unchanged", "deleted", "rejected", "duplicates")


class SourceOperator(BaseOperator):
    """Base of the ingestion tasks: knows its source file and how to reach the store."""

    ui_color = "#e6f4ea"

    def __init__(self, *, source_file: str, source_id: str, store_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source_file = source_file
        self.source_id = source_id
        self.store_conn_id = store_conn_id

    @cached_property
    def paths(self) -> ProjectPaths:
        return ProjectPaths.discover()

    @cached_property
    def source(self) -> IngestionConfig:
        from campaign_orchestrator.config.ingestion_loader import SourceFileError, load_source

        try:
            config = load_source(Path(self.source_file), self.paths)
        except SourceFileError as exc:
            raise AirflowFailException(f"The ingestion source is invalid:\n{exc}") from exc
        if config.id != self.source_id:
            raise AirflowFailException(f"{self.source_file} no longer defines source {self.source_id!r}")
        return config

    def connect(self) -> psycopg.Connection:
        return store_connection(self.store_conn_id)


class LoadSourceOperator(SourceOperator):
    """Load every pending file (or the query's new rows) of a source, each in one transaction.

    Returns the totals and, when the load changed the table, the earliest landing time of the
    files that changed it: what the publish task puts on the Asset event.
    """

    def execute(self, context: Context) -> dict[str, Any]:
        from campaign_orchestrator.ingestion.load import LoadFailed, run_source
        from campaign_orchestrator.ingestion.schema import SchemaError
        from campaign_orchestrator.store.migrations import migrate

        config = self.source
        with self.connect() as conn:
            applied = migrate(conn, self.paths.migrations)
            if applied:
                log.info("Applied store migrations: %s", ", ".join(m.path.name for m in applied))
            try:
                outcomes = run_source(conn, config, self.paths, dag_run_id=context["run_id"])
            except LoadFailed as exc:
                # A refused file fails the same way on a retry: fail for good, the rejects say why.
                raise AirflowFailException(f"{exc.outcome.url or config.id}: {exc}") from exc
            except SchemaError as exc:
                raise AirflowFailException(str(exc)) from exc
        totals = summarize(outcomes)
        log.info("Source %s into %s: %s", config.id, config.target.table,
                 ", ".join(f"{k} {totals[k]:,}" for k in COUNTS))
        return totals


def summarize(outcomes: list[Any]) -> dict[str, Any]:
    """Totals over loads, and the bounds the Asset event carries."""
    totals: dict[str, Any] = {k: sum(getattr(o, k) for o in outcomes) for k in COUNTS}
    changing = [o for o in outcomes if o.changed]
    totals["loads"] = len(outcomes)
    totals["changed"] = sum(o.changed for o in outcomes)
    totals["load_ids"] = [o.load_id for o in changing]
    landed = [o.landed_at for o in changing if o.landed_at is not None]
    totals["landed_at"] = min(landed).isoformat() if landed else None
    as_of = [o.data_as_of for o in outcomes if o.data_as_of is not None]
    totals["data_as_of"] = max(as_of).isoformat() if as_of else None
    return totals


class PublishLoadOperator(SourceOperator):
    """Update the table's Asset ``campaign-store://<schema>/<table>`` when the load changed it;
    skipped (no event, no campaign started) when nothing changed."""

    def execute(self, context: Context) -> dict[str, Any]:
        from campaign_orchestrator.dag_factory import data_asset

        totals = context["ti"].xcom_pull(task_ids="load") or {}
        if not totals.get("changed"):
            raise AirflowSkipException("The load changed nothing: no Asset event, no campaign started")
        asset = data_asset(self.source.target.table)
        context["outlet_events"][asset].extra = {
            "source": self.source_id,
            "landed_at": totals.get("landed_at"),
            "data_as_of": totals.get("data_as_of"),
            "load_ids": totals.get("load_ids", []),
            **{k: totals.get(k, 0) for k in COUNTS},
        }
        log.info("Asset %s updated: %s rows changed", asset.uri, f"{totals['changed']:,}")
        return {"asset": asset.uri, "changed": totals["changed"]}


class WaitForFileOperator(SourceOperator):
    """A deferred sensor: done at once when a file not loaded yet is there, else the triggerer
    lists the storage every ``poll_interval`` seconds until one lands."""

    ui_color = "#fdf3d8"

    def __init__(self, *, poll_interval: float = 30.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.poll_interval = poll_interval

    def execute(self, context: Context) -> dict[str, Any] | None:
        from campaign_orchestrator.ingestion.load import pending_files

        with self.connect() as conn:
            pending = pending_files(conn, self.source, self.paths)
        if pending:
            log.info("%d file(s) to load, first %s", len(pending), pending[0].url)
            return {"pending": len(pending), "first": pending[0].url}
        from campaign_orchestrator.ingestion.triggers import FileLandedTrigger

        log.info("No new file under %s; waiting (deferred, polling every %ss)",
                 getattr(self.source.source, "path", "?"), self.poll_interval)
        self.defer(
            trigger=FileLandedTrigger(self.source_file, self.source_id, self.poll_interval, self.store_conn_id),
            method_name="execute_complete",
        )
        return None

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any] | None:
        log.info("A file landed: %s", event)
        return event


class CheckFreshnessOperator(BaseOperator):
    """A campaign's ``requires_fresh``: go on when every table's data is recent enough; else wait,
    deferred (the triggerer polls the store), up to ``timeout``, then fail naming each stale table.

    :param requirements: ``{"crm.booking": "2h"}`` as seconds.
    :param timeout: seconds to wait for fresh data before failing.
    """

    ui_color = "#e6f4ea"

    def __init__(self, *, requirements: dict[str, float], timeout: float, store_conn_id: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.requirements = requirements
        self.timeout = timeout
        self.store_conn_id = store_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from campaign_orchestrator.ingestion.freshness import check_freshness

        wanted = {t: timedelta(seconds=s) for t, s in self.requirements.items()}
        with store_connection(self.store_conn_id) as conn:
            states = check_freshness(conn, wanted)
        stale = [s for s in states if not s.fresh]
        for state in states:
            log.info("%s", state.describe())
        if not stale:
            return {"fresh": sorted(wanted)}
        from campaign_orchestrator.ingestion.triggers import FreshnessTrigger

        deadline = datetime.now(timezone.utc) + timedelta(seconds=self.timeout)
        poll = max(1.0, min(60.0, self.timeout / 10))
        log.info("Waiting (deferred) up to %s for fresh data, checking every %.0fs", deadline, poll)
        self.defer(
            trigger=FreshnessTrigger(self.requirements, deadline.isoformat(), poll, self.store_conn_id),
            method_name="execute_complete",
        )
        return {}

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        event = event or {}
        tables = event.get("tables", [])
        if not event.get("fresh"):
            stale = "\n".join(f"- {t['description']}" for t in tables if not t["fresh"])
            raise AirflowFailException(
                f"The campaign's data is not fresh enough (requires_fresh), so it does not run:\n{stale}\n"
                f"Waited {timedelta(seconds=int(self.timeout))}. Check the ingestion DAGs of these tables "
                "(ingest_<source>) and their last loads; rerun this task once they are loaded."
            )
        for table in tables:
            log.info("%s", table["description"])
        return {"fresh": [t["table"] for t in tables]}


__all__ = ["CheckFreshnessOperator", "LoadSourceOperator", "PublishLoadOperator", "WaitForFileOperator"]
