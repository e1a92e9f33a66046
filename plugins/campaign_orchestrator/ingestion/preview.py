"""``campaigns ingest preview``: what a load of one file would do, in a transaction rolled back.

The file is staged and merged exactly as a run would (so the counts are real), then nothing
is kept: the first rows as read, each column's inferred type beside the target's, and what
would be rejected, by reason, with the first lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psycopg import sql

from campaign_orchestrator.ingestion import checks
from campaign_orchestrator.ingestion.loadlog import LoadOutcome
from campaign_orchestrator.sqlfiles import query

if TYPE_CHECKING:
    import psycopg

    from campaign_orchestrator.config.ingestion import IngestionConfig
    from campaign_orchestrator.paths import ProjectPaths

INFERABLE = ("boolean", "bigint", "numeric", "date", "timestamp with time zone", "jsonb")
"""Candidate types, narrowest first; a column none fits is text."""


@dataclass
class Preview:
    source_id: str
    table: str
    what: str
    """The file (or query) previewed."""
    columns: list[str]
    rows: list[tuple[Any, ...]]
    types: list[tuple[str, str, str | None, str]] = field(default_factory=list)
    """(source column, inferred type, target column, target type)."""
    rejects: list[tuple[str, str, int, list[int]]] = field(default_factory=list)
    outcome: LoadOutcome | None = None
    failure: str | None = None
    schema_changes: list[str] = field(default_factory=list)

    def format(self) -> str:
        out = [f"Source {self.source_id} -> {self.table}", f"from {self.what}", ""]
        for statement in self.schema_changes:
            out.append(f"would apply: {statement}")
        width = max([len(c) for c in self.columns] + [6])
        out.append(f"{'column':<{width}}  {'inferred':<26} target")
        for source, inferred, target, target_type in self.types:
            into = f"{target} {target_type}" if target else "(not loaded)"
            out.append(f"{source:<{width}}  {inferred:<26} {into}")
        out += ["", f"first {len(self.rows)} record(s):"]
        for line, error, raw, *values in self.rows:
            shown = raw if error else " | ".join("∅" if v is None else str(v) for v in values)
            out.append(f"  {line:>6}: {shown}" + (f"   <- {error}" if error else ""))
        if self.outcome is not None:
            o = self.outcome
            out += ["", f"a load now would read {o.rows_read:,}: insert {o.inserted:,}, update {o.updated:,}, "
                        f"leave unchanged {o.unchanged:,}, delete {o.deleted:,}, reject {o.rejected:,}, "
                        f"drop {o.duplicates:,} duplicate(s)"]
            out += [f"warning: {w}" for w in o.warnings]
        if self.failure:
            out += ["", f"the load would FAIL: {self.failure}"]
        if self.rejects:
            out += ["", "would reject:"]
            for kind, reason, count, lines in self.rejects:
                out.append(f"  {count:>6,} {kind}: {reason} (line {', '.join(map(str, lines))}{'…' if count > 5 else ''})")
        return "\n".join(out)


def preview_source(conn: psycopg.Connection, config: IngestionConfig, paths: ProjectPaths,
                   file_url: str | None = None, rows: int = 10) -> Preview:
    """Stage and merge one file (the given one, else the first not loaded, else the newest) or
    the query's rows, report, and roll everything back."""
    from campaign_orchestrator.ingestion.load import merge_staged, stage
    from campaign_orchestrator.ingestion.readers.open import open_file_reader, open_query_reader
    from campaign_orchestrator.ingestion.schema import ensure_target, previous_columns

    with conn.transaction(force_rollback=True):
        shape, applied = ensure_target(conn, config)
        if config.is_files:
            file = _pick_file(conn, config, paths, file_url)
            reader = open_file_reader(config, shape, file)
            what = file.url
        else:
            from campaign_orchestrator.ingestion.watermark import current_watermark

            watermark = current_watermark(conn, config.id, config.source)  # type: ignore[arg-type]
            reader = open_query_reader(config, paths, watermark)
            what = f"{config.source.query} on {config.source.conn_id}" + (  # type: ignore[union-attr]
                f" after watermark {watermark}" if watermark else "")
        try:
            staged = stage(conn, config, shape, reader, previous_columns(conn, config.id))
        finally:
            reader.close()
        layout = staged.rows.plan.staged
        preview = Preview(config.id, config.target.table, what, layout, [], schema_changes=applied)
        columns = sql.SQL(", ").join(sql.Identifier(f"c_{i}") for i in range(1, len(layout) + 1))
        preview.rows = conn.execute(query("ingestion/first_rows", columns=columns), {"rows": rows}).fetchall()
        loads = {source: target for target, source in staged.rows.plan.loads.items()}
        is_valid = checks.is_valid_function(conn)
        for index, column in enumerate(layout, start=1):
            target = loads.get(column)
            preview.types.append((column, infer_type(conn, f"c_{index}", is_valid), target,
                                  shape.column(target).type if target else ""))
        outcome = LoadOutcome(config.id, config.target.table, rows_read=staged.rows_read,
                              warnings=list(staged.rows.plan.warnings))
        preview.failure = merge_staged(conn, staged, outcome)
        preview.outcome = outcome
        preview.rejects = [tuple(r) for r in conn.execute(query("ingestion/reject_summary"), {"limit": 20})]  # type: ignore[misc]
    return preview


def infer_type(conn: psycopg.Connection, column: str, is_valid: sql.Composable, sample: int = 1000) -> str:
    results = conn.execute(query("ingestion/infer_types", column=sql.Identifier(column), is_valid=is_valid),
                           {"rows": sample, "types": list(INFERABLE)}).fetchall()
    if not results:
        return "(empty)"
    return next((name for name, fits in results if fits), "text")


def _pick_file(conn: psycopg.Connection, config: IngestionConfig, paths: ProjectPaths, file_url: str | None):
    from campaign_orchestrator.ingestion.files import file_at, list_files
    from campaign_orchestrator.ingestion.loadlog import loaded_file

    if file_url:
        return file_at(file_url, config.source)  # type: ignore[arg-type]
    files = list_files(config.source, paths)  # type: ignore[arg-type]
    if not files:
        raise FileNotFoundError(f"no file matches {config.source.path}")  # type: ignore[union-attr]
    pending = [f for f in files if loaded_file(conn, config.id, f) is None]
    return pending[0] if pending else files[-1]
