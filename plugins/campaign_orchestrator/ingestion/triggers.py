"""Triggers of the ingestion and freshness waits: they run in Airflow's triggerer, so a task
waiting for a file or for fresh data holds no worker slot.

Both reach the store with an asynchronous psycopg connection; the connection's settings come
from the ``campaign_store`` Airflow connection, looked up when the trigger runs (never stored
in the trigger's arguments).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

log = logging.getLogger(__name__)


async def _store_connection(conn_id: str | None):
    import psycopg
    from asgiref.sync import sync_to_async
    from psycopg.conninfo import make_conninfo

    from campaign_orchestrator.store.hook import STORE_CONN_ID, CampaignStoreHook

    conn = await sync_to_async(CampaignStoreHook.get_connection)(conn_id or STORE_CONN_ID)
    info = make_conninfo(host=conn.host or "", port=str(conn.port or 5432), user=conn.login or "",
                         password=conn.password or "", dbname=conn.schema or "postgres",
                         application_name="campaign-orchestrator-trigger")
    return await psycopg.AsyncConnection.connect(info, autocommit=True)


class FreshnessTrigger(BaseTrigger):
    """Fires once every table is fresh enough, or with the stale ones at ``deadline``.

    :param tables: ``{"crm.booking": max age in seconds}``.
    :param deadline: ISO time after which the wait gives up.
    :param poll_interval: seconds between two looks at ``ingest.freshness``.
    """

    def __init__(self, tables: dict[str, float], deadline: str, poll_interval: float = 60.0,
                 store_conn_id: str | None = None) -> None:
        super().__init__()
        self.tables = tables
        self.deadline = deadline
        self.poll_interval = poll_interval
        self.store_conn_id = store_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"tables": self.tables, "deadline": self.deadline, "poll_interval": self.poll_interval,
                 "store_conn_id": self.store_conn_id})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from campaign_orchestrator.ingestion.freshness import freshness_rows
        from campaign_orchestrator.sqlfiles import query

        requirements = {t: timedelta(seconds=s) for t, s in self.tables.items()}
        deadline = datetime.fromisoformat(self.deadline)
        while True:
            conn = await _store_connection(self.store_conn_id)
            try:
                cursor = await conn.execute(query("ingestion/freshness_of"), {"tables": sorted(requirements)})
                states = freshness_rows(await cursor.fetchall(), requirements)
            finally:
                await conn.close()
            stale = [s for s in states if not s.fresh]
            if not stale or datetime.now(timezone.utc) >= deadline:
                yield TriggerEvent({"fresh": not stale, "tables": [s.as_dict() for s in states]})
                return
            log.info("Waiting for fresh data: %s", "; ".join(s.describe() for s in stale))
            await asyncio.sleep(self.poll_interval)


class FileLandedTrigger(BaseTrigger):
    """Fires when the source's storage holds a file it has not loaded yet.

    The listing runs in a thread (object storage clients are synchronous); which files are
    loaded is asked of the store asynchronously.
    """

    def __init__(self, source_file: str, source_id: str, poll_interval: float = 30.0,
                 store_conn_id: str | None = None) -> None:
        super().__init__()
        self.source_file = source_file
        self.source_id = source_id
        self.poll_interval = poll_interval
        self.store_conn_id = store_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"source_file": self.source_file, "source_id": self.source_id,
                 "poll_interval": self.poll_interval, "store_conn_id": self.store_conn_id})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from campaign_orchestrator.sqlfiles import query

        while True:
            files = await asyncio.to_thread(self._list)
            if files:
                conn = await _store_connection(self.store_conn_id)
                try:
                    cursor = await conn.execute(query("ingestion/loaded_identities"), {
                        "source_id": self.source_id, "urls": [f.url for f in files],
                        "identities": [f.identity for f in files]})
                    done = {tuple(r) for r in await cursor.fetchall()}
                finally:
                    await conn.close()
                new = [f for f in files if (f.url, f.identity) not in done]
                if new:
                    yield TriggerEvent({"pending": len(new), "first": new[0].url,
                                        "landed_at": new[0].landed_at.isoformat()})
                    return
            await asyncio.sleep(self.poll_interval)

    def _list(self) -> list[Any]:
        from pathlib import Path

        from campaign_orchestrator.config.ingestion_loader import load_source
        from campaign_orchestrator.ingestion.files import list_files
        from campaign_orchestrator.paths import ProjectPaths

        paths = ProjectPaths.discover()
        config = load_source(Path(self.source_file), paths)
        return list_files(config.source, paths)  # type: ignore[arg-type]
