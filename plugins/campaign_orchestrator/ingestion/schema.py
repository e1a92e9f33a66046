"""The target table of a source: what it looks like in the store, creating what the source
declares, and which of the source's columns are loaded into which of its columns.

A declared table is created (and declared columns added) by a migration-like step recorded
in ``ingest.table_change``; nothing is ever dropped or retyped. Schema drift (a column the
target lacks appears upstream, or an expected one disappears) is reported by name and, by
the source's ``on_drift`` policy, fails the load or loads the known columns with a warning.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psycopg import sql

from campaign_orchestrator.sqlfiles import query

if TYPE_CHECKING:
    import psycopg

    from campaign_orchestrator.config.ingestion import IngestionConfig

log = logging.getLogger(__name__)

_CANONICAL = {
    "timestamptz": "timestamp with time zone",
    "timestamp": "timestamp without time zone",
}


class SchemaError(ValueError):
    """The target cannot take this source's rows as declared; the message says what to fix."""


class DriftError(SchemaError):
    """The source's columns changed upstream and the policy says fail."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    """As PostgreSQL writes it (``timestamp with time zone``, ``numeric(10,2)``)."""
    not_null: bool
    has_default: bool
    generated: bool
    is_string: bool


@dataclass(frozen=True)
class TableShape:
    table: str
    columns: dict[str, Column]
    unique_keys: tuple[frozenset[str], ...]

    def column(self, name: str) -> Column:
        return self.columns[name]


def canonical_type(declared: str) -> str:
    """A declared type as ``format_type`` writes it: what the store reports once created."""
    if declared.startswith("varchar("):
        return "character varying" + declared[len("varchar"):]
    if declared.startswith("char("):
        return "character" + declared[len("char"):]
    return _CANONICAL.get(declared, declared).replace(", ", ",")


def describe_table(conn: psycopg.Connection, table: str) -> TableShape | None:
    rows = conn.execute(query("ingestion/describe_columns"), {"table": table}).fetchall()
    if not rows:
        return None
    keys = conn.execute(query("ingestion/unique_keys"), {"table": table}).fetchall()
    return TableShape(table, {r[0]: Column(*r) for r in rows}, tuple(frozenset(k[0]) for k in keys))


def ensure_target(conn: psycopg.Connection, config: IngestionConfig) -> tuple[TableShape, list[str]]:
    """The target table, created or extended as the source declares; the DDL applied.

    Raises :class:`SchemaError` when the table is missing and not declared, has no unique index
    on the business key, lacks the key or version column, or a declared type differs.
    """
    target = config.target
    applied: list[str] = []
    with conn.transaction():
        conn.execute(query("ingestion/lock_table"), {"table": target.table})
        shape = describe_table(conn, target.table)
        if shape is None:
            if not target.create:
                raise SchemaError(
                    f"target.table: {target.table} does not exist in the store; declare its columns "
                    "(target.columns) with target.create: true, or create it with a migration"
                )
            if not conn.execute("SELECT to_regnamespace(%s)", (target.schema,)).fetchone()[0]:
                applied.append(_apply(conn, config, query("ingestion/create_schema",
                                                          schema=sql.Identifier(target.schema))))
            applied.append(_apply(conn, config, query("ingestion/create_table", **_create_fragments(config))))
        elif target.create:
            for name, declared in target.columns.items():
                if name not in shape.columns:
                    statement = query("ingestion/add_column", table=table_identifier(target.table),
                                      column=sql.Identifier(name), type=sql.SQL(declared))  # type: ignore[arg-type]
                    applied.append(_apply(conn, config, statement))
        if applied:
            shape = describe_table(conn, target.table)
    assert shape is not None
    check_target(config, shape)
    return shape, applied


def check_target(config: IngestionConfig, shape: TableShape) -> None:
    target = config.target
    for role, name in [*(("key", k) for k in target.key), *([("version", target.version)] if target.version else [])]:
        if name not in shape.columns:
            raise SchemaError(f"target.{role}: {target.table} has no column {name!r}{_hint(name, shape.columns)}")
    if frozenset(target.key) not in shape.unique_keys:
        raise SchemaError(
            f"target.key: {target.table} has no primary key or unique index on ({', '.join(target.key)}); "
            "the merge upserts by it. Add one, or give the key the table has"
        )
    for name, declared in target.columns.items():
        actual = shape.columns.get(name)
        if actual is not None and actual.type != canonical_type(declared):
            raise SchemaError(
                f"target.columns.{name}: declared {declared} but {target.table}.{name} is {actual.type}; "
                "a load never retypes a column: fix the declaration or migrate the table"
            )


@dataclass
class ColumnPlan:
    """Which source columns are staged, and what becomes of each."""

    source_columns: list[str]
    """As delivered, in order (the file's header, the query's columns)."""
    staged: list[str]
    """Source columns in the staging table, in order: staging column ``c_<i>`` is ``staged[i - 1]``
    (by default every delivered column, as CSV's positional COPY needs)."""
    loads: dict[str, str]
    """Target column -> the source column loaded into it."""
    constants: dict[str, Any] = field(default_factory=dict)
    """Target column -> the value ``target.set`` gives it."""
    tombstone: str | None = None
    as_of: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def used(self) -> list[str]:
        """The source columns a load reads, in delivered order."""
        wanted = set(self.loads.values()) | {c for c in (self.tombstone, self.as_of) if c}
        return [c for c in self.source_columns if c in wanted]

    def restaged(self, layout: list[str]) -> ColumnPlan:
        """The same plan over a staging table holding ``layout`` (which has every used column)."""
        from dataclasses import replace

        missing = [c for c in self.used if c not in layout]
        assert not missing, f"staging layout lacks {missing}"
        return replace(self, staged=list(layout))

    def stage_column(self, source_column: str) -> sql.Identifier:
        return sql.Identifier(f"c_{self.staged.index(source_column) + 1}")

    def staged_for(self, target_column: str) -> sql.Identifier:
        return self.stage_column(self.loads[target_column])


def plan_columns(
    config: IngestionConfig,
    shape: TableShape,
    source_columns: list[str],
    previous: list[str] | None,
    *,
    seen: set[str] | None = None,
) -> ColumnPlan:
    """Map the delivered columns onto the target and apply the drift policy.

    :param previous: the columns of the source's last successful load (None: first load).
    :param seen: for JSON lines, the keys any record had (a key no record had is missing).
    :raises DriftError: when the policy says fail; :class:`SchemaError` for a key, version or
        required column the source does not deliver.
    """
    target = config.target
    tombstone = config.deletes.tombstone if config.deletes else None
    delivered = [c for c in source_columns if seen is None or c in seen]
    used_specials = {c for c in (tombstone, config.data_as_of) if c}
    loads: dict[str, str] = {}
    new: list[str] = []
    for column in delivered:
        if column in target.ignore_columns:
            continue
        name = target.rename.get(column, column)
        if name in shape.columns and not shape.columns[name].generated:
            if name in loads:
                raise SchemaError(f"source columns {loads[name]!r} and {column!r} both load {target.table}.{name}")
            loads[name] = column
        elif column not in used_specials:
            new.append(column)
    for role, column in (("deletes.tombstone", tombstone), ("data_as_of", config.data_as_of)):
        if column and column not in delivered:
            raise SchemaError(f"{role}: the source has no column {column!r}{_hint(column, delivered)}")
    reverse = {v: k for k, v in target.rename.items()}
    for name in [*target.key, *([target.version] if target.version else [])]:
        if name not in loads:
            raise SchemaError(
                f"the source has no column {reverse.get(name, name)!r} for {target.table}.{name} (the business "
                f"key or version); it delivered: {', '.join(delivered) or 'no columns'}"
            )
    constants = {c: v for c, v in target.set.items() if c not in loads}
    if target.table == "crm.consent" and "source" not in loads:
        constants.setdefault("source", f"ingest:{config.id}")
    for name in constants:
        if name not in shape.columns:
            raise SchemaError(f"target.set.{name}: {target.table} has no column {name!r}{_hint(name, shape.columns)}")
    warnings: list[str] = []
    if new:
        message = (f"new column(s) upstream: {', '.join(map(repr, new))} not in {target.table}"
                   f"{_hint(new[0], shape.columns)}")
        if config.on_drift.new_columns == "fail":
            raise DriftError(f"{message}. Add them to the table (target.columns with create: true), map them "
                             "(target.rename) or skip them (target.ignore_columns); or set on_drift.new_columns: warn "
                             "to load the known columns")
        warnings.append(f"{message}; not loaded (on_drift.new_columns: warn)")
    expected = _expected(config, previous)
    missing = [c for c in expected if c not in delivered and c not in target.ignore_columns]
    if missing:
        where = "declared in target.columns" if target.columns else "delivered by the last load"
        message = f"column(s) removed upstream: {', '.join(map(repr, missing))} ({where}) not in the source"
        if config.on_drift.missing_columns == "fail":
            raise DriftError(f"{message}. Restore them upstream, or set on_drift.missing_columns: warn to load "
                             "the other columns (the missing ones keep their values)")
        warnings.append(f"{message}; {target.table} keeps their values (on_drift.missing_columns: warn)")
    required = [c.name for c in shape.columns.values()
                if c.not_null and not c.has_default and c.name not in loads and c.name not in constants]
    if required:
        gone = " (removed upstream; even with on_drift.missing_columns: warn a load cannot insert without it)" \
            if reverse.get(required[0], required[0]) in missing else ""
        raise SchemaError(
            f"{target.table}.{required[0]} is required (NOT NULL, no default) but the source does not deliver it"
            f"{gone}; add it to the source, map a column to it (target.rename) or give a value (target.set)"
        )
    return ColumnPlan(list(source_columns), list(source_columns), loads, constants, tombstone, config.data_as_of,
                      warnings)


def _expected(config: IngestionConfig, previous: list[str] | None) -> list[str]:
    """Source columns a load expects: the declared table's (by source name), else the last load's."""
    if config.target.columns:
        reverse = {v: k for k, v in config.target.rename.items()}
        return [reverse.get(c, c) for c in config.target.columns]
    return list(previous or [])


def previous_columns(conn: psycopg.Connection, source_id: str) -> list[str] | None:
    row = conn.execute(query("ingestion/previous_columns"), {"source_id": source_id}).fetchone()
    return list(row[0]) if row else None


def record_source_columns(conn: psycopg.Connection, source_id: str, columns: dict[str, str | None],
                          load_id: int) -> None:
    from psycopg.types.json import Jsonb

    conn.execute(query("ingestion/record_source_columns"),
                 {"source_id": source_id, "columns": Jsonb(columns), "load_id": load_id})


def _create_fragments(config: IngestionConfig) -> dict[str, sql.Composable]:
    target = config.target
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}{}").format(sql.Identifier(name), sql.SQL(declared),  # type: ignore[arg-type]
                                  sql.SQL(" NOT NULL") if name in target.key else sql.SQL(""))
        for name, declared in target.columns.items()
    )
    return {"table": table_identifier(target.table), "columns": columns,
            "key": sql.SQL(", ").join(map(sql.Identifier, target.key))}


def _apply(conn: psycopg.Connection, config: IngestionConfig, statement: sql.Composable) -> str:
    """Run one DDL statement of a declared table and record it (in the same transaction)."""
    text = "\n".join(line for line in statement.as_string(conn).splitlines() if not line.startswith("--")).strip()
    conn.execute(statement)
    conn.execute(query("ingestion/record_table_change"),
                 {"table": config.target.table, "source_id": config.id, "statement": text})
    log.info("Source %s: %s", config.id, text)
    return text


def table_identifier(table: str) -> sql.Identifier:
    """``schema.table`` as a qualified identifier."""
    return sql.Identifier(*table.split(".", 1))


def _hint(name: str, choices: Any) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
