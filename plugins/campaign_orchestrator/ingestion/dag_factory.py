"""Build one Airflow DAG per ingestion source (``dags/ingestion/*.yaml``); called from the thin
``dags/ingestion_dag.py``.

The same parse-time rules as the campaign factory: read YAML and build DAG objects, nothing
else, and honour Airflow's parsing context (a task run of ``ingest_x`` builds only that DAG;
a campaign's task run builds none). A broken source becomes a placeholder DAG tagged
``invalid-config`` whose only task fails with its errors, and ``dags/campaign_config_errors.py``
raises them as an import error beside the campaigns' own.

Each source's DAG::

    [wait_for_file] -> load -> publish

``wait_for_file`` (schedule ``on_file`` only) is a deferred sensor: the triggerer lists the
storage until a file not loaded yet is there. ``load`` applies store migrations, creates or
checks the target table, and loads each pending file (or the query's new rows) in its own
transaction. ``publish`` updates the Asset ``campaign-store://<schema>/<table>`` when the load
changed the table, which starts the campaigns scheduled ``on_data`` it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from campaign_orchestrator.config.errors import ConfigError, ConfigProblem
from campaign_orchestrator.config.ingestion_loader import SourceLoadResult, load_sources
from campaign_orchestrator.paths import ProjectPaths

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from campaign_orchestrator.config.ingestion import IngestionConfig

DAG_PREFIX = "ingest_"
START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def build_ingestion_dags(namespace: dict[str, Any], folder: Path | None = None) -> SourceLoadResult:
    """Build every source's DAG (or only the one Airflow asks for) into ``namespace``."""
    from airflow.sdk import get_parsing_context

    from campaign_orchestrator.dag_factory import build_invalid_dag

    paths = ProjectPaths.discover()
    wanted = get_parsing_context().dag_id
    if wanted is not None and not wanted.startswith(DAG_PREFIX):
        return SourceLoadResult()  # a campaign's task is running: it needs no source
    result = load_sources(folder or paths.ingestion, paths, only_dag_id=wanted)
    for source_id, (path, config) in list(result.configs.items()):
        try:
            namespace[config.dag_id] = build_source_dag(config, path)
        except Exception as exc:  # noqa: BLE001 - what Airflow refuses in one source must not hide the others
            del result.configs[source_id]
            result.errors.append(ConfigError(path, config.dag_id, (ConfigProblem(
                "", f"Airflow refused the DAG built from this source: {exc}"),)))
    for error in result.errors:
        if wanted is None or wanted == error.campaign_id:
            namespace[f"invalid_{error.campaign_id}"] = build_invalid_dag(
                error, kind="ingestion source", command="campaigns ingest validate"
            )
    return result


def build_source_dag(config: IngestionConfig, path: Path) -> DAG:
    from airflow.sdk import DAG

    from campaign_orchestrator.dag_factory import data_asset
    from campaign_orchestrator.ingestion.operators import LoadSourceOperator, PublishLoadOperator, WaitForFileOperator

    common = {"source_file": str(path), "source_id": config.id}
    with DAG(
        dag_id=config.dag_id,
        description=(config.description or f"Load {config.target.table} from {_where(config)}")[:200],
        doc_md=_doc(config, path),
        schedule=schedule_of(config),
        start_date=START,
        catchup=False,
        # Two loads of one source at once would race for the same files and watermark.
        max_active_runs=1,
        tags=sorted({"ingestion", *config.tags}),
        default_args={"owner": config.owner, "retries": config.retries, "retry_delay": config.retry_delay},
    ) as dag:
        load = LoadSourceOperator(task_id="load", **common)
        publish = PublishLoadOperator(task_id="publish", outlets=[data_asset(config.target.table)], retries=0, **common)
        if config.schedule.on_file is not None:
            wait = WaitForFileOperator(
                task_id="wait_for_file", poll_interval=config.schedule.on_file.poll.total_seconds(), **common
            )
            wait >> load
        load >> publish
    return dag


def schedule_of(config: IngestionConfig) -> Any:
    """cron -> a trigger timetable (UTC); assets -> those Assets; on_file -> continuous runs,
    each waiting deferred for the next file; manual -> None."""
    from airflow.sdk import Asset, CronTriggerTimetable

    from campaign_orchestrator.dag_factory import CRON_PRESETS

    schedule = config.schedule
    if schedule.cron is not None:
        return CronTriggerTimetable(CRON_PRESETS.get(schedule.cron, schedule.cron), timezone="UTC")
    if schedule.assets:
        return [Asset(uri) for uri in schedule.assets]
    if schedule.on_file is not None:
        return "@continuous"
    return None


def source_error_summary(folder: Path | None = None) -> str | None:
    """Every invalid source as one message, or None: raised by dags/campaign_config_errors.py."""
    paths = ProjectPaths.discover()
    result = load_sources(folder or paths.ingestion, paths)
    if result.ok:
        return None
    files = "\n\n".join(error.render() for error in result.errors)
    return (
        f"{len(result.errors)} ingestion source file(s) are invalid; their DAGs fail until fixed "
        f"(the other sources and the campaigns are unaffected):\n\n{files}"
    )


def _where(config: IngestionConfig) -> str:
    source = config.source
    return getattr(source, "path", None) or f"{source.query} on {source.conn_id}"  # type: ignore[union-attr]


def _doc(config: IngestionConfig, path: Path) -> str:
    target = config.target
    version = f", version `{target.version}`" if target.version else ""
    deletes = ""
    if config.deletes is not None:
        deletes = (f"\n- deletes: tombstone column `{config.deletes.tombstone}`" if config.deletes.tombstone
                   else f"\n- deletes: full snapshot, at most {config.deletes.max_delete_share:.0%} of the table")
    return (
        f"### {config.id}\n\n{config.description}\n\n- config: `{path.name}`\n"
        f"- source: {config.source.kind} `{_where(config)}`\n"
        f"- target: `{target.table}`, key `{', '.join(target.key)}`{version}{deletes}\n"
        f"- rejects: the load fails past {config.max_reject_share:.1%} rejected rows\n"
        f"- Asset: `campaign-store://{target.schema}/{target.name}`\n"
    )


__all__ = ["build_ingestion_dags", "build_source_dag", "source_error_summary"]
