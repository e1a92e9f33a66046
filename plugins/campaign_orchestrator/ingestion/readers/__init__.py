"""Readers stream one file (or one query's rows) into the load's staging table.

Each reader names the columns it delivers (a header, a Parquet schema, a cursor's
description; for JSON lines the columns a record may have) and then copies its records into
``ingest_stage`` through one ``COPY … FROM STDIN``, a chunk at a time: a file is never held
whole in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import psycopg

    from campaign_orchestrator.ingestion.schema import ColumnPlan


@dataclass
class ReadStats:
    """What a reader staged."""

    records: int = 0
    """Records read, where the reader counts them (the load counts the staged rows itself)."""
    sha256: str | None = None
    """The file's content hash as read (text formats), for a re-upload under another name."""
    seen: set[str] | None = None
    """JSON lines: every key some record had."""
    types: dict[str, str] = field(default_factory=dict)
    """Column types the source declares (Parquet), kept to report a type change upstream."""


class Reader(Protocol):
    first_line: int
    """The line (row number) of the first record."""

    def columns(self) -> list[str]:
        """The delivered column names, in order."""
        ...

    def layout(self, plan: ColumnPlan) -> list[str]:
        """The source columns to stage, in staging order."""
        ...

    def stage(self, conn: psycopg.Connection, plan: ColumnPlan) -> ReadStats:
        """Copy every record into ``ingest_stage`` (created with :meth:`layout`)."""
        ...

    def close(self) -> None: ...


def text_of(value: object) -> str | None:
    """A value as the text a staging column holds (None stays NULL)."""
    if value is None or isinstance(value, str):
        return value  # type: ignore[return-value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        import json

        return json.dumps(value, ensure_ascii=False)
    if hasattr(value, "isoformat"):
        return value.isoformat()  # type: ignore[no-any-return]
    return str(value)


def close_all(*streams: object) -> None:
    """Close what a reader opened, outermost first (None: not opened)."""
    for stream in streams:
        if stream is not None:
            stream.close()  # type: ignore[attr-defined]
