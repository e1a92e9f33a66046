"""Ingestion DAGs through `airflow dags test`: a landed file is loaded, the load updates the
Asset ``campaign-store://crm/booking``, and the ``on_data`` campaign scheduled on it runs on the
fresh rows; a campaign whose ``requires_fresh`` table is stale fails before its audience.

`airflow dags test` runs one DAG and no scheduler, so it cannot start the campaign from the
Asset event itself. The test shows each link instead: the load DAG's run emits the event (with
the load's counts), Airflow queues a run of the (unpaused) campaign DAG for it
(``asset_dag_run_queue``, what the scheduler turns into a run), and then the campaign's own
`dags test` run sends to the new bookings. The whole chain through a real scheduler is timed by
``bench/bench_ingest.py`` (latency from a file landing to the first message).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from campaign_orchestrator.store.demo_data import generate_demo_data
from tests.fixtures.airflow import AIRFLOW, ROOT, dags_test
from tests.integration.dags.test_campaign_run import assert_succeeded
from tests.integration.ingestion.conftest import BOOKING_HEADER, booking

pytestmark = pytest.mark.integration

SOURCE = """
    id: landing_bookings
    schedule: {on_file: {poll: 2s}}
    source: {kind: csv, path: "LANDING/bookings_*.csv"}
    target: {table: crm.booking, key: booking_id, version: updated_at}
"""
ON_DATA = """
    id: fresh_bookings
    description: Thanks for booking, sent when new bookings are loaded
    schedule: {on_data: [crm.booking]}
    requires_fresh: {crm.booking: 1h}
    valid: {start: 2026-01-01}
    audience:
      blocks:
        new: {from: booking, where: {booking_id: {gte: 9000000}}}
    steps:
      - {id: thanks, channel: email, purpose: transactional, template: winter_sale,
         sender: "Wanderly <offers@wanderly.example>"}
"""
STALE = """
    id: needs_fresh_consent
    schedule: manual
    requires_fresh: {crm.consent: 1h}
    late_run_tolerance: 4s
    valid: {start: 2026-01-01}
    audience: {sql: audiences/winter_sale.sql, params: {min_bookings: 1, lookback_days: 365}}
    steps:
      - {id: offer, channel: email, template: winter_sale, sender: "Wanderly <offers@wanderly.example>"}
"""


@pytest.fixture
def project(tmp_path: Path, store, smtp_server) -> dict[str, str]:
    generate_demo_data(store, profiles=300, seed=3)
    store.execute("TRUNCATE ingest.load CASCADE")
    store.execute("TRUNCATE ingest.freshness, ingest.source_schema")
    campaigns, sources, landing = tmp_path / "campaigns", tmp_path / "ingestion", tmp_path / "landing"
    for folder in (campaigns, sources, landing):
        folder.mkdir()
    for shared in ("_defaults.yaml", "_policies.yaml"):
        shutil.copy(ROOT / "dags" / "campaigns" / shared, campaigns)
    (campaigns / "fresh_bookings.yaml").write_text(textwrap.dedent(ON_DATA))
    (campaigns / "needs_fresh_consent.yaml").write_text(textwrap.dedent(STALE))
    (sources / "landing_bookings.yaml").write_text(textwrap.dedent(SOURCE).replace("LANDING", str(landing)))
    (sources / "same_bookings.yaml").write_text(textwrap.dedent(SOURCE).replace("LANDING", str(landing)).replace(
        "id: landing_bookings", "id: same_bookings").replace("{on_file: {poll: 2s}}", "manual"))
    (landing / "bookings_1.csv").write_text(
        "\n".join([BOOKING_HEADER, *(booking(9_000_000 + i, profile=i) for i in range(1, 21))]) + "\n")
    return {"CAMPAIGNS_CONFIG_DIR": str(campaigns), "CAMPAIGNS_INGESTION_DIR": str(sources),
            "AIRFLOW_CONN_SMTP_DEFAULT": smtp_server.conn_json()}


def airflow(*args: str, env: dict[str, str]) -> None:
    result = subprocess.run([AIRFLOW, *args], env={**os.environ, **env}, capture_output=True, text=True, cwd=ROOT,
                            timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]


def asset_events(uri: str) -> list[dict]:
    from sqlalchemy import select

    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.execute(select(AssetEvent.extra, AssetEvent.source_dag_id).join(
            AssetModel, AssetModel.id == AssetEvent.asset_id).where(AssetModel.uri == uri)).all()
    return [{"extra": extra, "dag": dag} for extra, dag in rows]


def queued_runs(uri: str) -> set[str]:
    from sqlalchemy import select

    from airflow.models.asset import AssetDagRunQueue, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        return set(session.scalars(select(AssetDagRunQueue.target_dag_id).join(
            AssetModel, AssetModel.id == AssetDagRunQueue.asset_id).where(AssetModel.uri == uri)))


def test_a_landed_file_is_loaded_and_its_asset_starts_the_on_data_campaign(airflow_db, project, store,
                                                                          smtp_server) -> None:
    uri = "campaign-store://crm/booking"
    airflow("dags", "reserialize", env=project)  # the campaign DAG is known to Airflow with its Asset schedule
    airflow("dags", "unpause", "fresh_bookings", env=project)
    before = len(asset_events(uri))

    result = dags_test("ingest_landing_bookings", project)
    assert_succeeded(result)
    load = store.execute("SELECT status, inserted, rejected FROM ingest.load").fetchone()
    assert load == ("succeeded", 20, 0)
    events = asset_events(uri)
    assert len(events) == before + 1
    extra = events[-1]["extra"]
    assert events[-1]["dag"] == "ingest_landing_bookings"
    assert (extra["source"], extra["inserted"], extra["rejected"]) == ("landing_bookings", 20, 0)
    assert extra["landed_at"] and extra["load_ids"]
    assert "fresh_bookings" in queued_runs(uri)  # the scheduler would start the campaign now

    result = dags_test("fresh_bookings", project)
    assert_succeeded(result)
    assert "crm.booking: fresh, data as of" in result.stdout + result.stderr
    sent = store.execute("SELECT count(*) FROM campaign.message m JOIN campaign.run r USING (run_key) "
                         "WHERE r.campaign_id = 'fresh_bookings' AND m.status = 'sent'").fetchone()[0]
    with_email = store.execute("SELECT count(*) FROM crm.profile p WHERE p.profile_id BETWEEN 1 AND 20 AND "
                               "p.email IS NOT NULL AND NOT EXISTS (SELECT 1 FROM crm.suppression s WHERE s.channel = "
                               "'email' AND s.address = lower(btrim(p.email)))").fetchone()[0]
    assert sent == with_email > 10 and len(smtp_server.handler.messages) == sent

    # Another source delivering the same rows changes nothing: its publish task is skipped, so
    # there is no Asset event and no campaign run.
    result = dags_test("ingest_same_bookings", project)
    assert_succeeded(result)
    assert store.execute("SELECT status, inserted, updated, unchanged FROM ingest.load WHERE source_id = "
                         "'same_bookings'").fetchone() == ("succeeded", 0, 0, 20)
    assert "The load changed nothing: no Asset event" in result.stdout + result.stderr
    assert len(asset_events(uri)) == before + 1


def test_a_stale_table_blocks_a_requires_fresh_campaign(airflow_db, project, store) -> None:
    store.execute("INSERT INTO ingest.freshness VALUES ('crm.consent', 'crm_consent', 1, now() - interval '3 hours', "
                  "now() - interval '3 hours', now() - interval '3 hours', 10)")
    result = dags_test("needs_fresh_consent", project)
    output = result.stdout + result.stderr
    assert "state=failed" in output, output[-4000:]
    assert "The campaign's data is not fresh enough (requires_fresh), so it does not run" in output
    assert "crm.consent: stale, data as of" in output and "(3h old, at most 1h allowed;" in output
    run = store.execute("SELECT evaluated_at, audience_size FROM campaign.run WHERE campaign_id = "
                        "'needs_fresh_consent'").fetchone()
    assert run == (None, None)  # the audience was never evaluated, nothing was sent
    assert store.execute("SELECT count(*) FROM campaign.message m JOIN campaign.run r USING (run_key) "
                         "WHERE r.campaign_id = 'needs_fresh_consent'").fetchone()[0] == 0
