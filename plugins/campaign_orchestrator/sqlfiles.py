"""The orchestrator's own SQL lives in include/sql/orchestrator/*.sql.

Files use ``%(name)s`` for values (bound by the driver) and ``{name}`` for identifiers or
SQL fragments composed with :mod:`psycopg.sql`, never with string formatting of values.
"""

from __future__ import annotations

from functools import lru_cache

from psycopg import sql

from campaign_orchestrator.paths import ProjectPaths


@lru_cache(maxsize=64)
def _read(name: str) -> str:
    return (ProjectPaths.discover().sql / "orchestrator" / f"{name}.sql").read_text(encoding="utf-8")


def query(name: str, **fragments: sql.Composable) -> sql.Composed | sql.SQL:
    text = sql.SQL(_read(name))  # type: ignore[arg-type]  # trusted file of this project
    return text.format(**fragments) if fragments else text
