"""The store's tables and columns as the migrations declare them, read without a database.

``campaigns validate`` checks templates against these (``{{ profile.frist_name }}`` is caught
before any store exists); ``validate --store`` and each run's prepare task check the live
store. The migrations are parsed with PostgreSQL's own parser (pglast, libpg_query), so what
counts is what PostgreSQL would create: ``CREATE TABLE`` and ``ALTER TABLE … ADD/DROP/RENAME
COLUMN`` and ``RENAME TO``, in file order.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path


def declared_columns(migrations: Path) -> dict[str, tuple[str, ...]]:
    """``{"crm.profile": ("profile_id", "email", …), …}`` after every migration in the folder."""
    files = tuple(sorted(migrations.glob("*.sql")))
    return _declared(files, tuple(p.stat().st_mtime_ns for p in files))


@lru_cache(maxsize=8)
def _declared(files: tuple[Path, ...], _mtimes: tuple[int, ...]) -> dict[str, tuple[str, ...]]:
    from pglast import ast, parse_sql

    tables: dict[str, list[str]] = {}
    for path in files:
        for raw in parse_sql(path.read_text(encoding="utf-8")):
            statement = raw.stmt
            if isinstance(statement, ast.CreateStmt):
                tables[_name(statement.relation)] = [
                    e.colname for e in statement.tableElts or () if isinstance(e, ast.ColumnDef)
                ]
            elif isinstance(statement, ast.AlterTableStmt) and statement.relation is not None:
                columns = tables.setdefault(_name(statement.relation), [])
                for command in statement.cmds or ():
                    kind = command.subtype.name
                    if kind == "AT_AddColumn" and command.def_.colname not in columns:
                        columns.append(command.def_.colname)
                    elif kind == "AT_DropColumn" and command.name in columns:
                        columns.remove(command.name)
            elif isinstance(statement, ast.RenameStmt) and statement.relation is not None:
                table = _name(statement.relation)
                if statement.renameType.name == "OBJECT_COLUMN" and table in tables:
                    tables[table] = [statement.newname if c == statement.subname else c for c in tables[table]]
                elif statement.renameType.name == "OBJECT_TABLE" and table in tables:
                    schema = statement.relation.schemaname or "public"
                    tables[f"{schema}.{statement.newname}"] = tables.pop(table)
    return {table: tuple(columns) for table, columns in tables.items()}


def _name(relation) -> str:  # a pglast RangeVar
    return f"{relation.schemaname or 'public'}.{relation.relname}"


__all__ = ["declared_columns"]
