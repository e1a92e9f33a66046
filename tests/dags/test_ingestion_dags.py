"""Ingestion DAG hygiene: one DAG per source file, built from validated config with no work at
parse time; a broken source becomes a failing placeholder and an import error, hiding no
other source and no campaign; the parsing context builds only the DAG a task needs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from campaign_orchestrator.config.loader import campaign_files
from campaign_orchestrator.dag_factory import INVALID_TAG
from tests.dags.test_dag_integrity import CAMPAIGNS, SERVICE_DAGS, SOURCE_DAGS, SOURCES, dagbag, forbidden_io


def test_each_source_is_a_dag_with_wait_load_and_publish() -> None:
    with forbidden_io() as counts:
        bag = dagbag()
    assert bag.import_errors == {}
    assert counts == {"sql": 0, "psycopg_connect": 0, "get_connection": 0, "variable_get": 0}
    bookings = bag.dags["ingest_crm_bookings"]
    assert "ingestion" in bookings.tags and bookings.max_active_runs == 1 and not bookings.catchup
    upstream = {t.task_id: set(t.upstream_task_ids) for t in bookings.tasks}
    assert upstream == {"wait_for_file": set(), "load": {"wait_for_file"}, "publish": {"load"}}
    assert bookings.get_task("wait_for_file").poll_interval == 30
    assert [a.uri for a in bookings.get_task("publish").outlets] == ["campaign-store://crm/booking"]
    assert type(bookings.timetable).__name__ == "ContinuousTimetable"  # each run waits, deferred, for a file
    consent = bag.dags["ingest_crm_consent"]
    assert {t.task_id for t in consent.tasks} == {"load", "publish"}
    assert consent.timetable.expression == "0 2 * * *"
    assert [a.uri for a in consent.get_task("publish").outlets] == ["campaign-store://crm/consent"]
    assert "crm.consent" in consent.doc_md and "profile_id, channel" in consent.doc_md


@pytest.fixture
def broken_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "ingestion"
    shutil.copytree(SOURCES, folder)
    (folder / "orders.yaml").write_text(
        "schedule: '@hourly'\nsource: {kind: csv, path: include/data/orders*.csv, delimter: ';'}\n"
        "target: {table: crm.orders, key: order_id}\n"
    )
    monkeypatch.setenv("CAMPAIGNS_INGESTION_DIR", str(folder))
    return folder


def test_a_broken_source_fails_visibly_and_hides_no_source_or_campaign(broken_source: Path) -> None:
    with forbidden_io() as counts:
        bag = dagbag()
    campaigns = {p.stem for p in campaign_files(CAMPAIGNS)}
    assert set(bag.dag_ids) == campaigns | SERVICE_DAGS | SOURCE_DAGS | {"ingest_orders"}
    placeholder = bag.dags["ingest_orders"]
    assert INVALID_TAG in placeholder.tags
    assert "ingestion source's config is invalid" in placeholder.doc_md
    assert "campaigns ingest validate" in placeholder.doc_md
    assert "source.delimter: unknown field 'delimter'; did you mean 'delimiter'?" in placeholder.doc_md
    (error_file, message), = bag.import_errors.items()
    assert error_file.endswith("campaign_config_errors.py")
    assert "orders.yaml:2: source.delimter" in message and "ingestion source file(s) are invalid" in message
    assert counts["sql"] == counts["psycopg_connect"] == counts["get_connection"] == 0


def test_the_parsing_context_builds_only_the_source_a_task_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    from campaign_orchestrator.dag_factory import build_dags
    from campaign_orchestrator.ingestion.dag_factory import build_ingestion_dags

    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "ingest_crm_consent")
    namespace: dict = {}
    build_ingestion_dags(namespace)
    build_dags(namespace)
    assert [d.dag_id for d in namespace.values()] == ["ingest_crm_consent"]
    campaign = sorted(p.stem for p in campaign_files(CAMPAIGNS))[0]
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", campaign)
    namespace = {}
    assert not build_ingestion_dags(namespace).configs and namespace == {}  # a campaign's task: no source parsed


def test_schedules_cron_assets_and_manual(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "ingestion"
    folder.mkdir()
    base = "source: {kind: parquet, path: 's3://landing/p/*.parquet'}\ntarget: {table: crm.profile, key: profile_id}\n"
    (folder / "hourly.yaml").write_text("schedule: '@hourly'\n" + base)
    (folder / "chained.yaml").write_text("schedule: {assets: ['s3://landing/p/']}\n" + base)
    (folder / "by_hand.yaml").write_text("schedule: manual\n" + base)
    monkeypatch.setenv("CAMPAIGNS_INGESTION_DIR", str(folder))
    from campaign_orchestrator.ingestion.dag_factory import build_ingestion_dags

    namespace: dict = {}
    assert build_ingestion_dags(namespace).ok
    assert namespace["ingest_hourly"].timetable.expression == "0 * * * *"
    assert {a.uri for a in namespace["ingest_chained"].timetable.asset_condition.objects} == {"s3://landing/p"}  # Airflow normalizes the URI
    assert type(namespace["ingest_by_hand"].timetable).__name__ == "NullTimetable"


def test_a_campaign_requiring_fresh_data_checks_it_before_its_audience(tmp_path: Path, monkeypatch) -> None:
    import yaml

    folder = tmp_path / "campaigns"
    shutil.copytree(CAMPAIGNS, folder)
    data = yaml.safe_load((CAMPAIGNS / "winter_sale.yaml").read_text())
    data.update(id="fresh_sale", requires_fresh={"crm.booking": "2h"}, late_run_tolerance="30m")
    (folder / "fresh_sale.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv("CAMPAIGNS_CONFIG_DIR", str(folder))
    with forbidden_io() as counts:
        bag = dagbag()
    assert counts["psycopg_connect"] == counts["get_connection"] == 0
    dag = bag.dags["fresh_sale"]
    check = dag.get_task("check_freshness")
    assert check.upstream_task_ids == {"prepare_run"} and dag.get_task("evaluate_audience").upstream_task_ids == {
        "check_freshness"}
    assert check.requirements == {"crm.booking": 7200.0} and check.timeout == 1800.0
    assert "check_freshness" not in bag.dags["winter_sale"].task_ids
