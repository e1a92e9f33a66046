"""Finding the rows a load cannot take, set-based, in SQL.

Cheap checks run on every load (records COPY could not split, records without a key). The
others run only when the fast path's all-at-once merge failed on a value or a duplicate key
(the careful path): each column's values are tested against the target's type in one
statement (``pg_input_is_valid`` on PostgreSQL 16+, ``ingest.input_is_valid`` on 15), the
typed rows are materialized, duplicate keys resolved (highest version wins), and the target's
NOT NULL, CHECK and foreign-key constraints tested before the merge. No row crosses Python.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from psycopg import sql

from campaign_orchestrator.sqlfiles import query

if TYPE_CHECKING:
    import psycopg

    from campaign_orchestrator.ingestion.staging import StagedRows


def is_valid_function(conn: psycopg.Connection) -> sql.Composable:
    """PostgreSQL 16's ``pg_input_is_valid``, or the store's stand-in on 15."""
    if conn.info.server_version >= 160000:
        return sql.Identifier("pg_input_is_valid")
    return sql.Identifier("ingest", "input_is_valid")


def probe_keys(conn: psycopg.Connection, rows: StagedRows) -> tuple[int, bool]:
    """(records that cannot be merged, whether a key occurs twice among the others), in one pass.

    The keys are compared in their type (hashing a bigint is cheaper than its text, and '7' and
    '07' are one key); a key that does not cast fails this as the merge would: careful path.
    """
    keys = [sql.SQL("CASE WHEN s._error IS NULL AND {} THEN {} END AS {}").format(
        rows.has_keys(), rows.cast(c), sql.Identifier(f"k_{i}")) for i, c in enumerate(rows.key)]
    statement = query("ingestion/probe_keys", has_keys=rows.has_keys(), keys=sql.SQL(", ").join(keys),
                      groups=sql.SQL(", ").join(sql.SQL(str(i)) for i in range(1, len(keys) + 2)))
    unmergeable, duplicates = conn.execute(statement).fetchone()  # type: ignore[misc]
    return int(unmergeable), bool(duplicates)


def reject_unsplit_and_keyless(conn: psycopg.Connection, rows: StagedRows) -> None:
    conn.execute(query("ingestion/reject_unsplit"))
    needed = [*rows.key, *([rows.version] if rows.version else [])]
    reasons = {f"missing_{i}": f"missing {'version' if c == rows.version else 'key'}: {c} is empty"
               for i, c in enumerate(needed)}
    reason = sql.SQL("CASE {} END").format(sql.SQL(" ").join(
        sql.SQL("WHEN nullif(btrim({}), '') IS NULL THEN {}::text").format(rows.raw(c), sql.Placeholder(f"missing_{i}"))
        for i, c in enumerate(needed)
    ))
    conn.execute(query("ingestion/reject_missing_keys", reason=reason, has_keys=rows.has_keys()), reasons)


def count_rejects(conn: psycopg.Connection) -> tuple[int, int]:
    """(rejected records, duplicates) so far."""
    rejected, duplicates = conn.execute(query("ingestion/count_rejects")).fetchone()  # type: ignore[misc]
    return int(rejected), int(duplicates)


def find_invalid_values(conn: psycopg.Connection, rows: StagedRows) -> None:
    is_valid = is_valid_function(conn)
    # Every cast column, and string columns with a length limit (an over-long value fails).
    checks = [(c, rows.raw(c), rows.type_of(c)) for c in rows.columns
              if rows.needs_cast(c) or "(" in rows.type_of(c)]
    if rows.plan.as_of:
        checks.append((rows.plan.as_of, sql.SQL("s.{}").format(rows.plan.stage_column(rows.plan.as_of)),
                       "timestamp with time zone"))
    for column, value, type_name in checks:
        conn.execute(query("ingestion/find_invalid_values", value=value, filter=rows.base_filter(), is_valid=is_valid),
                     {"column": column, "type": type_name})


def create_typed(conn: psycopg.Connection, rows: StagedRows) -> None:
    conn.execute(query("ingestion/create_typed", select_list=rows.select_list(), filter=rows.base_filter()))


def reject_duplicates(conn: psycopg.Connection, rows: StagedRows) -> None:
    order = [sql.SQL("{} DESC NULLS LAST").format(sql.Identifier(rows.version))] if rows.version else []
    order.append(sql.SQL("_line DESC"))
    why = f"the highest {rows.version} wins, then the last line" if rows.version else "the last line wins"
    conn.execute(
        query("ingestion/reject_duplicates", key=sql.SQL(", ").join(map(sql.Identifier, rows.key)),
              order=sql.SQL(", ").join(order)),
        {"why": why},
    )


def reject_violations(conn: psycopg.Connection, rows: StagedRows) -> None:
    """Typed rows the target's NOT NULL, CHECK or foreign-key constraints would refuse."""
    loaded = set(rows.columns)
    alive = sql.SQL("NOT t._tombstone AND ") if rows.plan.tombstone else sql.SQL("")  # a delete needs no values
    for column in rows.columns:
        if rows.shape.column(column).not_null:
            _reject(conn, alive + sql.SQL("t.{} IS NULL").format(sql.Identifier(column)),
                    f"{column} is empty; {rows.shape.table}.{column} is NOT NULL")
    for name, kind, expression, columns, ref_table, ref_columns in conn.execute(
        query("ingestion/target_constraints"), {"table": rows.shape.table}
    ):
        if not set(columns) <= loaded:
            continue  # on columns this source does not load: the merge leaves them as they are
        if kind == "c":
            # The expression as the store's catalog holds it, on columns named like the target's.
            # (% doubled: the statement is sent with bound parameters.)
            violated = alive + sql.SQL("({}) IS FALSE").format(sql.SQL(expression.replace("%", "%%")))  # type: ignore[arg-type]
            _reject(conn, violated, f"violates {name}: CHECK {expression}")
        else:
            local = [sql.SQL("t.{}").format(sql.Identifier(c)) for c in columns]
            present = sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(c) for c in local)
            same = sql.SQL(" AND ").join(
                sql.SQL("r.{} = {}").format(sql.Identifier(rc), lc) for rc, lc in zip(ref_columns, local))
            violated = alive + sql.SQL("{} AND NOT EXISTS (SELECT 1 FROM {} r WHERE {})").format(
                present, sql.Identifier(*ref_table.split(".", 1)) if "." in ref_table else sql.Identifier(ref_table),
                same)
            reason = sql.SQL("format('%%s = %%s: no such row in %%s (%%s)', %(columns)s::text, concat_ws(', ', {}), "
                             "%(ref)s::text, %(name)s::text)").format(sql.SQL(", ").join(local))
            conn.execute(query("ingestion/reject_violations", reason=reason, violated=violated),
                         {"columns": ", ".join(columns), "ref": ref_table, "name": name})


def _reject(conn: psycopg.Connection, violated: sql.Composable, reason: str) -> None:
    conn.execute(query("ingestion/reject_violations", reason=sql.SQL("%(reason)s::text"), violated=violated),
                 {"reason": reason})
