"""The load's writes to its target: one set-based upsert, then the deletes it declares.

``src`` is the relation of typed records: inline over the staging table (the fast path) or
the materialized ``ingest_typed`` (the careful path); both have the target's column names,
``_line``, and ``_tombstone`` / ``_as_of`` when the source has them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from psycopg import sql

from campaign_orchestrator.ingestion.schema import table_identifier
from campaign_orchestrator.sqlfiles import query

if TYPE_CHECKING:
    import psycopg

    from campaign_orchestrator.ingestion.staging import StagedRows


class SnapshotGuardTripped(RuntimeError):
    """A full snapshot would delete more of the table than ``deletes.max_delete_share`` allows."""


@dataclass(frozen=True)
class Merged:
    inserted: int
    updated: int
    deleted: int
    tombstoned: int
    """Records that were tombstones (deleting their key or not)."""
    candidates: int
    """Typed records the merge considered."""
    data_as_of: Any
    watermark: str | None


def merge_rows(conn: psycopg.Connection, rows: StagedRows, src: sql.Composable, *,
               constants: dict[str, Any], watermark_column: str | None = None,
               snapshot_keys: sql.Composable | None = None, known_candidates: int | None = None) -> Merged:
    """Upsert ``src`` into the target, delete tombstoned or (snapshot) absent keys, and measure.

    :param known_candidates: how many records ``src`` has, when the caller knows (the fast path).
    """
    target = table_identifier(rows.config.target.table)
    deletes = rows.config.deletes
    before = conn.execute(query("ingestion/count_table", target=target)).fetchone()[0] if snapshot_keys else 0
    inserted, updated = _upsert(conn, rows, src, target, constants)
    deleted = 0
    if rows.plan.tombstone:
        deleted = _delete_tombstones(conn, rows, src, target)
    if snapshot_keys is not None:
        assert deletes is not None
        deleted = conn.execute(query("ingestion/delete_absent", target=target, keys=snapshot_keys,
                                     same_key=_same_key(rows, "keys"))).fetchone()[0]
        if before and deleted > deletes.max_delete_share * before:
            raise SnapshotGuardTripped(
                f"the snapshot would delete {deleted:,} of the {before:,} rows of {rows.config.target.table} "
                f"({deleted / before:.1%}), more than deletes.max_delete_share {deletes.max_delete_share:.0%}: "
                "nothing is loaded. A truncated or partial export looks like this; if the deletes are real, raise "
                "max_delete_share for one run"
            )
    if rows.plan.tombstone or rows.plan.as_of or watermark_column or known_candidates is None:
        candidates, tombstoned, as_of, watermark = _measure(conn, rows, src, watermark_column)
    else:  # nothing to measure that the caller does not know: no second pass over the rows
        candidates, tombstoned, as_of, watermark = known_candidates, 0, None, None
    return Merged(inserted, updated, deleted, tombstoned, candidates, as_of, watermark)


def _upsert(conn: psycopg.Connection, rows: StagedRows, src: sql.Composable, target: sql.Composable,
            constants: dict[str, Any]) -> tuple[int, int]:
    columns = [*rows.columns, *constants]
    values = [sql.SQL("src.{}").format(sql.Identifier(c)) for c in rows.columns]
    values += [sql.Placeholder(f"set_{i}") for i in range(len(constants))]
    updates = [c for c in columns if c not in rows.key]
    if updates:
        assignments = sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in updates)
        if rows.version:
            version = sql.Identifier(rows.version)
            newer = sql.SQL("t.{0} IS NULL OR EXCLUDED.{0} > t.{0}").format(version)
        else:  # without a version the latest load wins, and an identical row is left alone
            newer = sql.SQL("({}) IS DISTINCT FROM ({})").format(
                sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in updates),
                sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in updates))
        action = sql.SQL("DO UPDATE SET {} WHERE {}").format(assignments, newer)
    else:
        action = sql.SQL("DO NOTHING")
    statement = query(
        "ingestion/merge",
        target=target,
        columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
        values=sql.SQL(", ").join(values),
        source=src,
        where=sql.SQL("WHERE NOT src._tombstone") if rows.plan.tombstone else sql.SQL(""),
        key=sql.SQL(", ").join(map(sql.Identifier, rows.key)),
        action=action,
    )
    params = {f"set_{i}": value for i, value in enumerate(constants.values())}
    inserted, updated = conn.execute(statement, params or None).fetchone()  # type: ignore[misc]
    return int(inserted), int(updated)


def _delete_tombstones(conn: psycopg.Connection, rows: StagedRows, src: sql.Composable,
                       target: sql.Composable) -> int:
    if rows.version:
        not_older = sql.SQL("(t.{0} IS NULL OR src.{0} >= t.{0})").format(sql.Identifier(rows.version))
    else:
        not_older = sql.SQL("true")
    statement = query("ingestion/delete_tombstones", target=target, source=src,
                      same_key=_same_key(rows, "src"), not_older=not_older)
    return int(conn.execute(statement).fetchone()[0])


def _same_key(rows: StagedRows, alias: str) -> sql.Composable:
    return sql.SQL(" AND ").join(
        sql.SQL("t.{0} = {1}.{0}").format(sql.Identifier(c), sql.Identifier(alias)) for c in rows.key)


def _measure(conn: psycopg.Connection, rows: StagedRows, src: sql.Composable,
             watermark_column: str | None) -> tuple[int, int, Any, str | None]:
    """(records, tombstones, latest as-of, largest watermark) of ``src``, in one pass."""
    items = [sql.SQL("count(*)"),
             sql.SQL("count(*) FILTER (WHERE src._tombstone)") if rows.plan.tombstone else sql.SQL("0"),
             sql.SQL("max(src._as_of)") if rows.plan.as_of else sql.SQL("NULL::timestamptz"),
             sql.SQL("max(src.{})::text").format(sql.Identifier(watermark_column)) if watermark_column
             else sql.SQL("NULL::text")]
    row = conn.execute(sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(items), src)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), row[2], row[3]


def snapshot_keys_careful(rows: StagedRows, is_valid: sql.Composable) -> sql.Composable:
    """A snapshot's keys on the careful path: the typed rows', and those of rejected records
    whose key is valid (a record rejected for another column still says its key exists)."""
    key = sql.SQL(", ").join(map(sql.Identifier, rows.key))
    casts = sql.SQL(", ").join(sql.SQL("{} AS {}").format(rows.cast(c), sql.Identifier(c)) for c in rows.key)
    valid = sql.SQL(" AND ").join(
        sql.SQL("{}({}, {})").format(is_valid, rows.raw(c), sql.Literal(rows.type_of(c)))
        for c in rows.key if rows.needs_cast(c)) or sql.SQL("true")
    return sql.SQL(
        "(SELECT {key} FROM ingest_typed UNION ALL SELECT {casts} FROM ingest_stage s "
        "WHERE {filter} AND {valid} AND EXISTS (SELECT 1 FROM ingest_reject r WHERE r.line = s._line "
        "AND r.kind <> 'missing_key')) AS keys"
    ).format(key=key, casts=casts, filter=rows.base_filter(), valid=valid)


def snapshot_keys_fast(rows: StagedRows) -> sql.Composable:
    return sql.SQL("(SELECT {} FROM {}) AS keys").format(
        sql.SQL(", ").join(map(sql.Identifier, rows.key)), rows.inline())
