"""DAG hygiene, in the style of Airflow's own example-DAG tests.

Parsing must yield exactly one DAG per campaign file, with no import error, and do no work:
no metadata-DB query, no campaign-store connection, no Airflow connection or Variable lookup.
The counters below wrap the real functions and fail the test if they are called; they are
not there to make anything pass.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import psycopg
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from campaign_orchestrator.config.loader import campaign_files
from campaign_orchestrator.dag_factory import INVALID_TAG

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"
CAMPAIGNS = DAGS / "campaigns"
SOURCES = DAGS / "ingestion"
SERVICE_DAGS = {"campaign_feedback"}
"""DAGs of the product itself, not built from a campaign file."""
SOURCE_DAGS = {f"ingest_{p.stem}" for p in campaign_files(SOURCES)}
"""One ingestion DAG per source file (tests/dags/test_ingestion_dags.py checks them)."""


@contextmanager
def forbidden_io() -> Iterator[dict[str, int]]:
    """Count metadata-DB queries, store connections and connection/Variable lookups."""
    from airflow.sdk import BaseHook, Variable

    counts = {"sql": 0, "psycopg_connect": 0, "get_connection": 0, "variable_get": 0}

    def count_sql(*_args, **_kwargs) -> None:
        counts["sql"] += 1

    def refuse(name: str):
        def _refused(*_args, **_kwargs):
            counts[name] += 1
            raise AssertionError(f"{name} called while parsing DAG files")

        return _refused

    event.listen(Engine, "before_cursor_execute", count_sql)
    try:
        with (
            mock.patch.object(psycopg.Connection, "connect", side_effect=refuse("psycopg_connect")),
            mock.patch.object(BaseHook, "get_connection", side_effect=refuse("get_connection")),
            mock.patch.object(Variable, "get", side_effect=refuse("variable_get")),
        ):
            yield counts
    finally:
        event.remove(Engine, "before_cursor_execute", count_sql)


def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS), safe_mode=True)


def test_one_dag_per_campaign_file_and_no_import_errors() -> None:
    with forbidden_io() as counts:
        bag = dagbag()
    assert bag.import_errors == {}
    expected = {p.stem for p in campaign_files(CAMPAIGNS)}
    assert expected, "the repository ships demo campaigns"
    assert SOURCE_DAGS, "the repository ships demo ingestion sources"
    assert set(bag.dag_ids) == expected | SERVICE_DAGS | SOURCE_DAGS
    assert counts == {"sql": 0, "psycopg_connect": 0, "get_connection": 0, "variable_get": 0}


def test_campaign_dag_shape() -> None:
    bag = dagbag()
    for dag_id in set(bag.dag_ids) - SERVICE_DAGS - SOURCE_DAGS:
        dag = bag.dags[dag_id]
        assert dag.max_active_runs == 1 and not dag.catchup
        assert "campaign" in dag.tags
        task_ids = set(dag.task_ids)
        assert {"prepare_run", "evaluate_audience", "finalize_report"} <= task_ids
        sends = [t for t in dag.tasks if t.task_id.startswith("send_")]
        assert sends and all(t.is_mapped for t in sends)
        assert dag.get_task("finalize_report").trigger_rule == "all_done"


@pytest.fixture
def config_dir_with_a_broken_campaign(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "campaigns"
    shutil.copytree(CAMPAIGNS, folder)
    (folder / "broken_offer.yaml").write_text(
        "schedule: '@daily'\nvalid: {start: 2026-01-01}\naudience: {sql: audiences/nope.sql}\n"
        "steps:\n  - {id: mail, channel: email, template: nope, sender: 'A <a@b.example>', colour: red}\n"
    )
    monkeypatch.setenv("CAMPAIGNS_CONFIG_DIR", str(folder))
    return folder


def test_a_broken_config_fails_visibly_and_hides_nothing(config_dir_with_a_broken_campaign: Path) -> None:
    with forbidden_io() as counts:
        bag = dagbag()
    good = {p.stem for p in campaign_files(CAMPAIGNS)}
    assert good | {"broken_offer"} | SERVICE_DAGS | SOURCE_DAGS == set(bag.dag_ids)
    placeholder = bag.dags["broken_offer"]
    assert INVALID_TAG in placeholder.tags
    assert "audience.sql: file not found" in placeholder.doc_md
    assert "steps[0].colour: unknown field 'colour'" in placeholder.doc_md
    # The UI's import-error banner names the file and field too.
    (error_file, message), = bag.import_errors.items()
    assert error_file.endswith("campaign_config_errors.py")
    assert "broken_offer.yaml" in message and "steps[0].colour" in message
    assert counts["sql"] == counts["psycopg_connect"] == counts["get_connection"] == 0


def test_parsing_context_builds_only_the_requested_campaign(monkeypatch: pytest.MonkeyPatch) -> None:
    from campaign_orchestrator.dag_factory import build_dags

    wanted = sorted(p.stem for p in campaign_files(CAMPAIGNS))[0]
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", wanted)
    namespace: dict = {}
    build_dags(namespace)
    assert [d.dag_id for d in namespace.values()] == [wanted]


def test_a_campaign_can_start_when_another_ends_or_when_data_arrives(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "campaigns"
    shutil.copytree(CAMPAIGNS, folder)
    base = (CAMPAIGNS / "winter_sale.yaml").read_text()
    (folder / "follow_up.yaml").write_text(
        base.replace("id: winter_sale", "id: follow_up").replace('"0 9 * * 1"', "{after: [winter_sale]}"))
    (folder / "fresh_bookings.yaml").write_text(
        base.replace("id: winter_sale", "id: fresh_bookings").replace('"0 9 * * 1"', "{on_data: [crm.booking]}"))
    monkeypatch.setenv("CAMPAIGNS_CONFIG_DIR", str(folder))
    bag = dagbag()
    assert bag.import_errors == {}
    signalled = {a.uri for a in bag.dags["winter_sale"].get_task("finalize_report").outlets}
    assert signalled == {"campaign://winter_sale/completed"}
    follow_up = bag.dags["follow_up"]
    assert {a.uri for a in follow_up.timetable.asset_condition.objects} == signalled
    fresh = bag.dags["fresh_bookings"]
    assert {a.uri for a in fresh.timetable.asset_condition.objects} == {"campaign-store://crm/booking"}


def test_a_journey_waits_between_steps_and_goes_on_unless_a_step_before_failed() -> None:
    dag = dagbag().dags["winter_sale_journey"]
    upstream = {t.task_id: set(t.upstream_task_ids) for t in dag.tasks}
    assert upstream["target_sale_email"] == {"evaluate_audience"}
    assert upstream["wait_for_opens"] == {"plan_sale_email", "send_sale_email"}
    assert upstream["target_sms_to_non_openers"] == {"wait_for_opens"}
    assert upstream["wait_for_bookings"] == {"plan_sms_to_non_openers", "send_sms_to_non_openers"}
    assert upstream["target_push_to_non_bookers"] == {"wait_for_bookings"}
    for task_id in ("wait_for_opens", "target_sms_to_non_openers", "wait_for_bookings", "target_push_to_non_bookers"):
        # A step with nothing to send skips its mapped sends; the branch still goes on.
        assert dag.get_task(task_id).trigger_rule == "none_failed_min_one_success"
    assert {"wait_for_opens", "wait_for_bookings", "send_push_to_non_bookers"} <= upstream["finalize_report"]
    assert "time_scale" in dag.params


JOURNEY = """
id: {id}
schedule: manual
valid: {{start: 2026-11-01}}
audience: {{sql: audiences/winter_sale.sql}}
steps:
  - {{id: offer, channel: email, template: winter_sale, sender: 'A <a@b.example>'}}
  - {{id: by_sms, channel: sms, template: winter_sale_sms, after: {sms_after}}}
  - {{id: by_push, channel: push, template: winter_sale_push, after: offer}}
  - {{id: settle, wait: 1d, after: [by_sms, by_push]}}
  - {{id: thanks, channel: email, template: winter_sale, sender: 'A <a@b.example>', after: settle,
      when: [{{step: offer, outcome: clicked}}]}}
"""


def test_steps_fork_and_join_and_a_cycle_is_rejected_before_any_dag_is_built(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "campaigns"
    shutil.copytree(CAMPAIGNS, folder)
    (folder / "fork_join.yaml").write_text(JOURNEY.format(id="fork_join", sms_after="offer"))
    (folder / "loop.yaml").write_text(JOURNEY.format(id="loop", sms_after="thanks"))
    monkeypatch.setenv("CAMPAIGNS_CONFIG_DIR", str(folder))
    bag = dagbag()
    dag = bag.dags["fork_join"]
    upstream = {t.task_id: set(t.upstream_task_ids) for t in dag.tasks}
    assert upstream["target_by_sms"] == upstream["target_by_push"] == {"plan_offer", "send_offer"}  # fork
    assert upstream["wait_settle"] == {"plan_by_sms", "send_by_sms", "plan_by_push", "send_by_push"}  # join
    assert upstream["target_thanks"] == {"wait_settle"}
    assert INVALID_TAG in bag.dags["loop"].tags
    (message,) = bag.import_errors.values()
    assert "loop.yaml:8: steps[1].after: the steps form a cycle (by_sms -> settle -> thanks -> by_sms)" in message
