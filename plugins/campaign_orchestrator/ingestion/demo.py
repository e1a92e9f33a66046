"""The demo's ingestion step: the shipped sources (``dags/ingestion/``) load their files
(``include/data/``) into the freshly generated store, as their DAGs would. What they load
counts as the demo's own data afterwards (the demo-data stamp), so the next ``make demo``
may replace it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from campaign_orchestrator.sqlfiles import query

if TYPE_CHECKING:
    import psycopg

    from campaign_orchestrator.paths import ProjectPaths


def load_shipped_sources(conn: psycopg.Connection, paths: ProjectPaths) -> list[str]:
    """Load every valid shipped source; one line per file (or problem) for the demo's output."""
    from campaign_orchestrator.config.ingestion_loader import load_sources
    from campaign_orchestrator.ingestion.load import LoadFailed, run_source
    from campaign_orchestrator.ingestion.schema import SchemaError

    result = load_sources(paths.ingestion, paths)
    lines = [f"invalid source: {error.render()}" for error in result.errors]
    conn.execute(query("ingestion/forget_loads"), {"sources": sorted(result.configs)})
    conn.execute("DELETE FROM ingest.freshness WHERE source_id = ANY(%s)", (sorted(result.configs),))
    for source_id, (_path, config) in sorted(result.configs.items()):
        try:
            outcomes = run_source(conn, config, paths)
        except (LoadFailed, SchemaError) as exc:
            lines.append(f"{source_id} -> {config.target.table}: FAILED {exc}")
            continue
        for outcome in outcomes:
            name = (outcome.url or "query").rsplit("/", 1)[-1]
            lines.append(f"{source_id} -> {config.target.table} ({name}): inserted {outcome.inserted:,}, updated "
                         f"{outcome.updated:,}, unchanged {outcome.unchanged:,}, deleted {outcome.deleted:,}, "
                         f"rejected {outcome.rejected:,}" + (f", duplicates {outcome.duplicates:,}"
                                                              if outcome.duplicates else ""))
    from campaign_orchestrator.store.demo_data import stamp_as_generated

    stamp_as_generated(conn)
    return lines
