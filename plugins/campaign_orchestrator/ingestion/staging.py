"""The staging table of one load and the typed view of its rows.

Every staged column is text: COPY never fails on a value, and types are checked afterwards,
set-based. :class:`StagedRows` composes the SQL that reads the staged rows as the target's
types: inline (the fast path, one pass from staging into the merge) or materialized into
``ingest_typed`` once the bad rows are known (the careful path, see ``checks.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from psycopg import sql

from campaign_orchestrator.sqlfiles import query

if TYPE_CHECKING:
    import psycopg

    from campaign_orchestrator.config.ingestion import CsvSource, IngestionConfig
    from campaign_orchestrator.ingestion.schema import ColumnPlan, TableShape

TRUE_WORDS = "('true', 't', '1', 'yes', 'y')"
"""Tombstone values that delete (compared lower-cased and trimmed), as SQL."""


def stage_columns(count: int) -> list[sql.Identifier]:
    return [sql.Identifier(f"c_{i}") for i in range(1, count + 1)]


def create_stage(conn: psycopg.Connection, layout: list[str], first_line: int) -> None:
    """``ingest_stage`` with one text column per staged source column (``c_1`` … in layout order)."""
    columns = sql.SQL(", ").join(sql.SQL("{} text").format(c) for c in stage_columns(len(layout)))
    conn.execute(query("ingestion/create_stage", columns=columns, first_line=sql.Literal(int(first_line))))
    conn.execute(query("ingestion/create_rejects"))


def copy_csv_statement(layout: list[str], source: CsvSource) -> sql.Composed:
    # COPY options cannot be bound parameters; sql.Literal quotes them as the driver would.
    return query(
        "ingestion/copy_csv",
        columns=sql.SQL(", ").join(stage_columns(len(layout))),
        delimiter=sql.Literal(source.delimiter),
        quote=sql.Literal(source.quote),
        null=sql.Literal(source.null),
    )  # type: ignore[return-value]


def copy_rows_statement(layout: list[str]) -> sql.Composed:
    return query("ingestion/copy_rows", columns=sql.SQL(", ").join(stage_columns(len(layout))))  # type: ignore[return-value]


@dataclass(frozen=True)
class StagedRows:
    """How the staged text columns become the target's typed columns."""

    config: IngestionConfig
    plan: ColumnPlan
    shape: TableShape

    @property
    def columns(self) -> list[str]:
        """The target columns the source loads, in the order staged."""
        return list(self.plan.loads)

    @property
    def key(self) -> list[str]:
        return self.config.target.key

    @property
    def version(self) -> str | None:
        return self.config.target.version

    def raw(self, target_column: str) -> sql.Composed:
        return sql.SQL("s.{}").format(self.plan.staged_for(target_column))

    def type_of(self, target_column: str) -> str:
        return self.shape.column(target_column).type

    def needs_cast(self, target_column: str) -> bool:
        """String columns take the text as it is (an over-long value fails on assignment, where
        an explicit cast would cut it); every other column is cast."""
        return not self.shape.column(target_column).is_string

    def cast(self, target_column: str) -> sql.Composable:
        raw = self.raw(target_column)
        if not self.needs_cast(target_column):
            return raw
        # The type as the store's catalog writes it (format_type): no user text.
        return sql.SQL("nullif({}, '')::{}").format(raw, sql.SQL(self.type_of(target_column)))  # type: ignore[arg-type]

    def has_keys(self) -> sql.Composable:
        """Every key (and version) column of the record has a value."""
        needed = [*self.key, *([self.version] if self.version else [])]
        return sql.SQL(" AND ").join(
            sql.SQL("nullif(btrim({}), '') IS NOT NULL").format(self.raw(c)) for c in needed
        )

    def base_filter(self) -> sql.Composable:
        """Records that can be merged, before their values are checked."""
        return sql.SQL("s._error IS NULL AND {}").format(self.has_keys())

    def select_list(self) -> sql.Composable:
        items = [sql.SQL("s._line")]
        items += [sql.SQL("{} AS {}").format(self.cast(c), sql.Identifier(c)) for c in self.columns]
        if self.plan.tombstone:
            items.append(sql.SQL("coalesce(lower(btrim(s.{})) IN " + TRUE_WORDS + ", false) AS _tombstone").format(
                self.plan.stage_column(self.plan.tombstone)))
        if self.plan.as_of:
            items.append(sql.SQL("nullif(s.{}, '')::timestamptz AS _as_of").format(
                self.plan.stage_column(self.plan.as_of)))
        return sql.SQL(", ").join(items)

    def inline(self) -> sql.Composable:
        """The typed rows read straight from staging: the fast path's relation ``src``."""
        return sql.SQL("(SELECT {} FROM ingest_stage s WHERE {}) AS src").format(self.select_list(), self.base_filter())
