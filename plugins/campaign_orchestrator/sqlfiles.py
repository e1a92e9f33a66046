"""The orchestrator's own SQL lives in include/sql/<domain>/*.sql: ``query("claim_messages")``
reads include/sql/orchestrator/claim_messages.sql, ``query("ingestion/merge")`` reads
include/sql/ingestion/merge.sql.

Files use ``%(name)s`` for values (bound by the driver) and ``{name}`` for identifiers or
SQL fragments composed with :mod:`psycopg.sql`, never with string formatting of values.
"""

from __future__ import annotations

from functools import lru_cache

from psycopg import sql

from campaign_orchestrator.paths import ProjectPaths


@lru_cache(maxsize=64)
def _read(name: str) -> str:
    relative = name if "/" in name else f"orchestrator/{name}"
    return (ProjectPaths.discover().sql / f"{relative}.sql").read_text(encoding="utf-8")


def query(name: str, **fragments: sql.Composable) -> sql.Composed | sql.SQL:
    text = sql.SQL(_read(name))  # type: ignore[arg-type]  # trusted file of this project
    return text.format(**fragments) if fragments else text
