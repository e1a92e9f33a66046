"""One load: a file (or a query's rows) into its target table, in one transaction.

1. The records are copied into a temporary text staging table (``readers/``).
2. Records COPY could not split and records without a key are rejected (``checks.py``).
3. The fast path merges everything in one ``INSERT … SELECT … ON CONFLICT`` with the casts
   inline. If a value does not cast, a key occurs twice or the target refuses a row, that
   attempt is rolled back to its savepoint and the careful path finds every such record
   set-based, rejects it, and merges the rest (``merge.py``).
4. Past ``max_reject_share`` nothing is merged: the load is recorded as failed with its
   rejects, and the target is exactly as before.
5. The load's counts, rejects, the table's freshness, the watermark and the columns seen are
   written in the same transaction as the merge: a killed load changes nothing, and the
   file's successful load is what makes a re-run of it a no-op.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import psycopg
import psycopg.errors
from psycopg import sql

from campaign_orchestrator.ingestion import checks
from campaign_orchestrator.ingestion.loadlog import (
    LoadOutcome,
    finish_load,
    loaded_content,
    loaded_file,
    mark_interrupted,
    start_load,
)
from campaign_orchestrator.ingestion.merge import (
    SnapshotGuardTripped,
    merge_rows,
    snapshot_keys_careful,
    snapshot_keys_fast,
)
from campaign_orchestrator.ingestion.schema import (
    ColumnPlan,
    SchemaError,
    TableShape,
    ensure_target,
    plan_columns,
    previous_columns,
    record_source_columns,
)
from campaign_orchestrator.ingestion.staging import StagedRows, create_stage
from campaign_orchestrator.sqlfiles import query

if TYPE_CHECKING:
    from campaign_orchestrator.config.ingestion import IngestionConfig
    from campaign_orchestrator.ingestion.files import LandedFile
    from campaign_orchestrator.ingestion.readers import Reader, ReadStats
    from campaign_orchestrator.paths import ProjectPaths

log = logging.getLogger(__name__)

_CAREFUL = (psycopg.errors.DataError, psycopg.errors.IntegrityError, psycopg.errors.CardinalityViolation)
"""What the fast merge raises for a bad value, a refused row or a key twice in the file."""


class LoadFailed(RuntimeError):
    """A load that loaded nothing; ``outcome`` says what it found."""

    def __init__(self, message: str, outcome: LoadOutcome) -> None:
        super().__init__(message)
        self.outcome = outcome


class _DuplicateKeys(Exception):
    pass


@dataclass
class Staged:
    """A staged load, ready to merge (or to preview)."""

    rows: StagedRows
    stats: ReadStats
    rows_read: int


def run_source(conn: psycopg.Connection, config: IngestionConfig, paths: ProjectPaths, *,
               dag_run_id: str | None = None, only_file: str | None = None) -> list[LoadOutcome]:
    """Load what is pending for a source: each new file in landing order, or the query's rows.

    Stops at the first failed file (raising :class:`LoadFailed`): files land in order and the
    next run retries from there. Files already loaded are skipped without being read.
    """
    shape, applied = ensure_target(conn, config)
    for statement in applied:
        log.info("Applied to the store: %s", statement)
    outcomes = []
    if not config.is_files:
        outcomes.append(load_query(conn, config, shape, paths, dag_run_id=dag_run_id))
        return outcomes
    from campaign_orchestrator.ingestion.files import file_at, list_files

    files = [file_at(only_file, config.source)] if only_file else list_files(config.source, paths)  # type: ignore[arg-type]
    for file in files:
        done = loaded_file(conn, config.id, file)
        if done is not None:
            log.info("%s: already loaded (load %s); skipped", file.url, done)
            continue
        outcomes.append(load_file(conn, config, shape, file, dag_run_id=dag_run_id))
    if not files:
        log.info("No file matches %s", config.source.path)  # type: ignore[union-attr]
    return outcomes


def pending_files(conn: psycopg.Connection, config: IngestionConfig, paths: ProjectPaths) -> list[LandedFile]:
    """The source's files not loaded yet (what a ``wait_for_file`` sensor waits for)."""
    from campaign_orchestrator.ingestion.files import list_files

    return [f for f in list_files(config.source, paths) if loaded_file(conn, config.id, f) is None]  # type: ignore[arg-type]


def load_file(conn: psycopg.Connection, config: IngestionConfig, shape: TableShape, file: LandedFile, *,
              dag_run_id: str | None = None) -> LoadOutcome:
    from campaign_orchestrator.ingestion.readers.open import open_file_reader

    outcome = LoadOutcome(config.id, config.target.table, url=file.url, landed_at=file.landed_at)
    return _load(conn, config, shape, lambda: open_file_reader(config, shape, file), outcome, file, dag_run_id)


def load_query(conn: psycopg.Connection, config: IngestionConfig, shape: TableShape, paths: ProjectPaths, *,
               dag_run_id: str | None = None) -> LoadOutcome:
    from campaign_orchestrator.ingestion.readers.open import open_query_reader
    from campaign_orchestrator.ingestion.watermark import current_watermark

    watermark = current_watermark(conn, config.id, config.source)  # type: ignore[arg-type]
    outcome = LoadOutcome(config.id, config.target.table, landed_at=datetime.now(timezone.utc), watermark=watermark)
    if watermark is not None:
        log.info("Reading rows after watermark %s = %s", config.source.watermark.column, watermark)  # type: ignore[union-attr]
    return _load(conn, config, shape, lambda: open_query_reader(config, paths, watermark), outcome, None, dag_run_id)


def _load(conn: psycopg.Connection, config: IngestionConfig, shape: TableShape, open_reader: Any,
          outcome: LoadOutcome, file: LandedFile | None, dag_run_id: str | None) -> LoadOutcome:
    outcome.load_id = start_load(conn, config, file, dag_run_id)
    started = time.monotonic()
    try:
        with conn.transaction():
            conn.execute(query("ingestion/lock_source"), {"source_id": config.id})
            for stale in mark_interrupted(conn, config.id, outcome.load_id):
                log.warning("Load %s of %s was interrupted earlier (killed); it loaded nothing", stale, config.id)
            reader = open_reader()
            try:
                staged = stage(conn, config, shape, reader, previous_columns(conn, config.id))
            finally:
                reader.close()
            outcome.sha256 = staged.stats.sha256
            outcome.rows_read = staged.rows_read
            outcome.warnings = list(staged.rows.plan.warnings)
            same = loaded_content(conn, config.id, outcome.sha256) if outcome.sha256 else None
            if same is not None:
                outcome.status = "skipped"
                outcome.error = f"same content as load {same[0]} of {same[1]}: nothing to do"
                finish_load(conn, outcome)
                log.info("%s: %s", file.url if file else config.id, outcome.error)
                return outcome
            failure = merge_staged(conn, staged, outcome)
            _save_rejects(conn, staged, outcome)
            if failure is not None:
                outcome.status, outcome.error = "failed", failure
            else:
                outcome.status = "succeeded"
                _record_success(conn, config, staged, outcome)
            finish_load(conn, outcome)
    except (SchemaError, SnapshotGuardTripped) as exc:
        _record_failure(conn, outcome, str(exc))
        raise LoadFailed(str(exc), outcome) from exc
    except BaseException as exc:
        _record_failure(conn, outcome, f"{type(exc).__name__}: {exc}")
        raise
    elapsed = time.monotonic() - started
    log.info("%s in %.1fs%s%s", outcome.line(), elapsed, f" ({outcome.path} path)" if outcome.path else "",
             f", {outcome.rows_read / elapsed:,.0f} rows/s" if elapsed > 0 and outcome.rows_read else "")
    for warning in outcome.warnings:
        log.warning("%s: %s", outcome.url or config.id, warning)
    if outcome.status == "failed":
        raise LoadFailed(outcome.error or "the load failed", outcome)
    return outcome


def stage(conn: psycopg.Connection, config: IngestionConfig, shape: TableShape, reader: Reader,
          previous: list[str] | None) -> Staged:
    """Copy the reader's records into ``ingest_stage`` and decide what each column loads."""
    from campaign_orchestrator.ingestion.readers.jsonl_files import JsonLinesReader

    delivered = reader.columns()
    if isinstance(reader, JsonLinesReader):
        layout = delivered
        create_stage(conn, layout, reader.first_line)
        stats = reader.stage(conn, None)
        extra = sorted((stats.seen or set()) - set(layout))
        plan = plan_columns(config, shape, [*layout, *extra], previous, seen=stats.seen).restaged(layout)
    else:
        plan = plan_columns(config, shape, delivered, previous)
        layout = reader.layout(plan)
        plan = plan.restaged(layout)
        create_stage(conn, layout, reader.first_line)
        stats = reader.stage(conn, plan)
    _check_type_drift(config, stats, plan, previous, conn)
    rows_read = conn.execute("SELECT count(*) FROM ingest_stage").fetchone()[0]
    return Staged(StagedRows(config, plan, shape), stats, int(rows_read))


def merge_staged(conn: psycopg.Connection, staged: Staged, outcome: LoadOutcome,
                 constants: dict[str, Any] | None = None) -> str | None:
    """Reject what cannot load and merge the rest; a message instead when the reject share is
    over the limit (then nothing is merged)."""
    rows = staged.rows
    config = rows.config
    constants = rows.plan.constants if constants is None else constants
    try:
        with conn.transaction():  # savepoint: a key that does not cast stops the probe
            # One hash group per key: with the default 4 MB a large file's grouping spills to disk.
            conn.execute("SET LOCAL work_mem = '64MB'")
            unmergeable, duplicate_keys = checks.probe_keys(conn, rows)
    except psycopg.errors.DataError:
        unmergeable, duplicate_keys = 1, True  # the careful path finds out which
    if unmergeable:
        checks.reject_unsplit_and_keyless(conn, rows)
    over = _over_share(conn, config, staged.rows_read, outcome)
    if over:
        return over
    watermark_column = _watermark_column(config)
    if watermark_column is not None and watermark_column not in rows.columns:
        raise SchemaError(f"source.watermark.column: {watermark_column!r} is not loaded into {config.target.table}; "
                          f"the query must return it (loaded: {', '.join(rows.columns)})")
    snapshot = config.deletes is not None and config.deletes.snapshot
    try:
        with conn.transaction():  # savepoint: a failed fast merge leaves staging as it was
            if duplicate_keys:
                raise _DuplicateKeys()
            merged = merge_rows(conn, rows, rows.inline(), constants=constants, watermark_column=watermark_column,
                                snapshot_keys=snapshot_keys_fast(rows) if snapshot else None,
                                known_candidates=staged.rows_read - outcome.rejected)
            outcome.path = "fast"
    except (_DuplicateKeys, *_CAREFUL) as exc:
        if not isinstance(exc, _DuplicateKeys):
            log.info("The all-at-once merge stopped (%s); checking every record", str(exc).splitlines()[0])
        checks.find_invalid_values(conn, rows)
        checks.create_typed(conn, rows)
        checks.reject_duplicates(conn, rows)
        checks.reject_violations(conn, rows)
        over = _over_share(conn, config, staged.rows_read, outcome)
        if over:
            return over
        typed = sql.SQL("ingest_typed AS src")
        keys = snapshot_keys_careful(rows, checks.is_valid_function(conn)) if snapshot else None
        merged = merge_rows(conn, rows, typed, constants=constants, watermark_column=watermark_column,
                            snapshot_keys=keys)
        outcome.path = "careful"
    outcome.rejected, outcome.duplicates = checks.count_rejects(conn)
    outcome.inserted, outcome.updated, outcome.deleted = merged.inserted, merged.updated, merged.deleted
    tombstones_deleting = merged.deleted if rows.plan.tombstone else 0
    outcome.unchanged = merged.candidates - merged.inserted - merged.updated - tombstones_deleting
    if merged.data_as_of is not None:
        outcome.data_as_of = merged.data_as_of
    if merged.watermark is not None:
        outcome.watermark = merged.watermark
    return None


def _over_share(conn: psycopg.Connection, config: IngestionConfig, rows_read: int, outcome: LoadOutcome) -> str | None:
    outcome.rejected, outcome.duplicates = checks.count_rejects(conn)
    if rows_read and outcome.rejected > config.max_reject_share * rows_read:
        return (f"{outcome.rejected:,} of {rows_read:,} records rejected ({outcome.rejected / rows_read:.1%}), more "
                f"than max_reject_share {config.max_reject_share:.1%}: nothing is loaded"
                + (f"; the rejects are in ingest.reject (load {outcome.load_id})" if outcome.load_id else ""))
    return None


def _watermark_column(config: IngestionConfig) -> str | None:
    watermark = getattr(config.source, "watermark", None)
    if watermark is None:
        return None
    column = config.target.rename.get(watermark.column, watermark.column)
    return column


def _check_type_drift(config: IngestionConfig, stats: ReadStats, plan: ColumnPlan, previous: list[str] | None,
                      conn: psycopg.Connection) -> None:
    """A Parquet column whose type changed since the last load is reported (its values are
    still checked against the target's type like any other)."""
    if not stats.types:
        return
    row = conn.execute("SELECT columns FROM ingest.source_schema WHERE source_id = %s", (config.id,)).fetchone()
    before = row[0] if row else {}
    changed = [f"{c}: {before[c]} -> {t}" for c, t in stats.types.items() if before.get(c) and before[c] != t]
    if changed:
        plan.warnings.append(f"column type(s) changed upstream: {'; '.join(changed)}")


def _save_rejects(conn: psycopg.Connection, staged: Staged, outcome: LoadOutcome) -> None:
    from campaign_orchestrator.ingestion.staging import stage_columns

    layout = staged.rows.plan.staged
    conn.execute(query("ingestion/save_rejects", columns=sql.SQL(", ").join(
        sql.SQL("s.{}").format(c) for c in stage_columns(len(layout)))),
        {"load_id": outcome.load_id, "source_id": outcome.source_id, "url": outcome.url, "names": layout})


def _record_success(conn: psycopg.Connection, config: IngestionConfig, staged: Staged, outcome: LoadOutcome) -> None:
    from campaign_orchestrator.ingestion.watermark import advance_watermark

    assert outcome.load_id is not None
    if outcome.data_as_of is None:
        outcome.data_as_of = outcome.landed_at or datetime.now(timezone.utc)
    conn.execute(query("ingestion/record_freshness"), {
        "table": config.target.table, "source_id": config.id, "load_id": outcome.load_id,
        "data_as_of": outcome.data_as_of, "landed_at": outcome.landed_at if config.is_files else None,
        "rows": outcome.rows_read,
    })
    watermark = getattr(config.source, "watermark", None)
    if watermark is not None and outcome.watermark is not None:
        advance_watermark(conn, config.id, watermark.column, outcome.watermark, outcome.load_id)
    plan = staged.rows.plan
    seen = staged.stats.seen
    delivered = [c for c in plan.source_columns
                 if c not in config.target.ignore_columns and (seen is None or c in seen)]
    record_source_columns(conn, config.id, {c: staged.stats.types.get(c) for c in delivered}, outcome.load_id)


def _record_failure(conn: psycopg.Connection, outcome: LoadOutcome, error: str) -> None:
    """After the load's rollback: its row says failed and why (best effort: the store may be
    what failed)."""
    outcome.status, outcome.error = "failed", error
    if outcome.load_id is None:
        return
    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        finish_load(conn, outcome)
    except psycopg.Error as exc:
        log.warning("Could not record the failure of load %s: %s", outcome.load_id, exc)


__all__ = ["LoadFailed", "LoadOutcome", "load_file", "load_query", "pending_files", "run_source", "stage"]
