"""A SQL query on another database, through its Airflow connection: rows are fetched from a
server-side cursor (PostgreSQL) or with ``fetchmany`` (other DB-API drivers), ``fetch_rows``
at a time, and copied into staging as they come."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from campaign_orchestrator.ingestion.readers import ReadStats, text_of
from campaign_orchestrator.ingestion.staging import copy_rows_statement

if TYPE_CHECKING:
    import psycopg

    from campaign_orchestrator.config.ingestion import SqlSource
    from campaign_orchestrator.ingestion.schema import ColumnPlan


class SqlQueryReader:
    first_line = 1

    def __init__(self, source: SqlSource, query_text: str, watermark: str | None) -> None:
        self.source = source
        self.query_text = query_text
        self.params = {"watermark": watermark} if source.watermark is not None else {}
        self._conn: Any = None
        self._cursor: Any = None

    def _open(self) -> Any:
        if self._cursor is None:
            from airflow.sdk import BaseHook

            hook = BaseHook.get_connection(self.source.conn_id).get_hook()
            self._conn = hook.get_conn()
            self._cursor = _server_side_cursor(self._conn)
            self._cursor.execute(self.query_text, self.params or None)
        return self._cursor

    def columns(self) -> list[str]:
        return [d[0] for d in self._open().description]

    def layout(self, plan: ColumnPlan) -> list[str]:
        return self.columns()

    def stage(self, conn: psycopg.Connection, plan: ColumnPlan) -> ReadStats:
        cursor = self._open()
        layout = self.layout(plan)
        records = 0
        with conn.cursor().copy(copy_rows_statement(layout)) as copy:
            while rows := cursor.fetchmany(self.source.fetch_rows):
                for row in rows:
                    records += 1
                    copy.write_row((records, None, None, *map(text_of, row)))
        return ReadStats(records=records)

    def close(self) -> None:
        for thing in (self._cursor, self._conn):
            try:
                if thing is not None:
                    thing.close()
            except Exception:  # noqa: BLE001 - closing a source connection must not hide the load's outcome
                pass
        self._cursor = self._conn = None


def _server_side_cursor(conn: Any) -> Any:
    """A named (server-side) cursor where the driver has one, so the source streams the rows."""
    module = type(conn).__module__
    name = f"campaign_ingest_{secrets.token_hex(4)}"
    if module.startswith("psycopg"):  # psycopg 3 and psycopg2 both take a name
        try:
            return conn.cursor(name=name)
        except TypeError:
            return conn.cursor(name)
    return conn.cursor()
