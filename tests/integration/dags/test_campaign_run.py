"""Whole campaign runs through `airflow dags test`: real Airflow, real store, real SMTP."""

from __future__ import annotations

import shutil
import uuid
from collections import Counter
from pathlib import Path

import pytest
import yaml

from campaign_orchestrator.config.loader import load_campaigns
from campaign_orchestrator.paths import ProjectPaths
from campaign_orchestrator.run.audience import evaluate_audience
from campaign_orchestrator.run.runs import register_run
from campaign_orchestrator.run.targeting import target_step
from campaign_orchestrator.store.demo_data import generate_demo_data
from tests.fixtures.airflow import dags_test

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def demo_store(store):
    generate_demo_data(store, profiles=1500, seed=7)
    return store


@pytest.fixture
def campaigns_dir(tmp_path: Path) -> Path:
    """A copy of the shipped campaigns, so a test can add or tune one."""
    folder = tmp_path / "campaigns"
    shutil.copytree(ROOT / "dags" / "campaigns", folder)
    return folder


def tune(folder: Path, campaign: str, new_id: str | None = None, **changes) -> str:
    data = yaml.safe_load((folder / f"{campaign}.yaml").read_text())
    data.update(changes)
    data["id"] = new_id or campaign
    (folder / f"{data['id']}.yaml").write_text(yaml.safe_dump(data))
    return data["id"]


def env_for(smtp_server, campaigns_dir: Path) -> dict[str, str]:
    return {"AIRFLOW_CONN_SMTP_DEFAULT": smtp_server.conn_json(), "CAMPAIGNS_CONFIG_DIR": str(campaigns_dir)}


def latest_run(store, campaign_id: str) -> int:
    return store.execute(
        "SELECT run_key FROM campaign.run WHERE campaign_id = %s ORDER BY started_at DESC LIMIT 1", (campaign_id,)
    ).fetchone()[0]


def assert_succeeded(result) -> None:
    tail = (result.stdout + result.stderr)[-6000:]
    assert result.returncode == 0 and "DagRun Finished" in tail and "state=success" in tail, tail


def test_a_campaign_run_sends_one_email_to_each_consenting_member(airflow_db, demo_store, smtp_server, campaigns_dir):
    result = dags_test("winter_sale", env_for(smtp_server, campaigns_dir))
    assert_succeeded(result)
    run_key = latest_run(demo_store, "winter_sale")
    ledger = Counter(dict(demo_store.execute(
        "SELECT status, count(*) FROM campaign.message WHERE run_key = %s GROUP BY status", (run_key,)).fetchall()))
    assert set(ledger) == {"sent", "excluded"} and ledger["sent"] > 100
    recipients = Counter(r for m in smtp_server.handler.messages for r in m.rcpt_tos)
    assert len(recipients) == ledger["sent"] and max(recipients.values()) == 1
    # nobody unconsented: every recipient opted in to email and is not suppressed
    bad = demo_store.execute(
        """
        SELECT count(*) FROM campaign.message m
        LEFT JOIN crm.consent c ON c.profile_id = m.profile_id AND c.channel = 'email'
        WHERE m.run_key = %s AND m.status = 'sent'
          AND (c.status IS DISTINCT FROM 'opted_in'
               OR EXISTS (SELECT 1 FROM crm.suppression s WHERE s.channel = 'email' AND s.address = lower(m.address)))
        """,
        (run_key,),
    ).fetchone()[0]
    assert bad == 0
    report = demo_store.execute(
        "SELECT targeted, sent, failed, pending, excluded FROM campaign.step_report WHERE run_key = %s", (run_key,)
    ).fetchone()
    assert report[1] == ledger["sent"] and report[2] == report[3] == 0
    assert sum(report[4].values()) == ledger["excluded"] and {"opted_out", "no_consent"} <= set(report[4])
    assert "Run report" in result.stdout + result.stderr
    status = demo_store.execute("SELECT status FROM campaign.run WHERE run_key = %s", (run_key,)).fetchone()[0]
    assert status == "succeeded"


def address_at_seq(store, campaigns_dir: Path, campaign_id: str, seq: int) -> str:
    """The address a run would send to at ``seq``, computed and rolled back."""
    paths = ProjectPaths.discover()
    _, config = load_campaigns(campaigns_dir, paths).configs[campaign_id]
    with store.transaction(force_rollback=True):
        run_key = register_run(store, campaign_id, f"probe_{uuid.uuid4().hex}", None, {})
        evaluate_audience(store, run_key, paths.sql / config.audience.sql, dict(config.audience.params), None)
        target_step(store, run_key, config, config.steps[0])
        return store.execute(
            "SELECT address FROM campaign.message WHERE run_key = %s AND seq = %s", (run_key, seq)
        ).fetchone()[0]


def test_a_batch_failing_midway_is_retried_by_airflow_without_duplicates(
    airflow_db, demo_store, smtp_server, campaigns_dir
):
    campaign_id = tune(campaigns_dir, "winter_sale", "winter_sale_retry", batch_size=100, retries=2, retry_delay="1s")
    victim = address_at_seq(demo_store, campaigns_dir, campaign_id, 150)
    # The SMTP connection dies at the 150th message, and again on the sender's reconnect:
    # batch 2 fails midway and Airflow's retry must finish it.
    smtp_server.handler.drop_at_rcpt[victim.lower()] = 2
    smtp_server.handler.drop_at_rcpt[victim] = 2
    result = dags_test(campaign_id, env_for(smtp_server, campaigns_dir))
    assert_succeeded(result)
    output = result.stdout + result.stderr
    assert "could not be sent now" in output  # the first attempt of batch 2 really failed
    run_key = latest_run(demo_store, campaign_id)
    sent = demo_store.execute(
        "SELECT count(*), max(attempts) FROM campaign.message WHERE run_key = %s AND status = 'sent'", (run_key,)
    ).fetchone()
    recipients = Counter(r for m in smtp_server.handler.messages for r in m.rcpt_tos)
    assert len(recipients) == sent[0] and max(recipients.values()) == 1
    assert victim in recipients or victim.lower() in recipients
    pending = demo_store.execute(
        "SELECT count(*) FROM campaign.message WHERE run_key = %s AND status IN ('pending', 'sending')", (run_key,)
    ).fetchone()[0]
    assert pending == 0


def test_an_empty_audience_ends_cleanly_with_sends_skipped(airflow_db, demo_store, smtp_server, campaigns_dir):
    campaign_id = tune(
        campaigns_dir, "winter_sale", "nobody", audience={"sql": "audiences/by_ids.sql", "params": {"profile_ids": []}}
    )
    result = dags_test(campaign_id, env_for(smtp_server, campaigns_dir))
    assert_succeeded(result)
    output = result.stdout + result.stderr
    assert "Nothing to send for step offer_email" in output
    assert smtp_server.handler.messages == []
    run_key = latest_run(demo_store, campaign_id)
    assert demo_store.execute(
        "SELECT targeted, sent FROM campaign.step_report WHERE run_key = %s", (run_key,)
    ).fetchone() == (0, 0)


def test_sql_that_fails_in_postgres_fails_the_run_with_file_and_position(
    airflow_db, demo_store, smtp_server, campaigns_dir, tmp_path
):
    bad = ROOT / "include" / "sql" / "audiences" / f"_test_broken_{uuid.uuid4().hex[:8]}.sql"
    bad.write_text("SELECT profile_id\nFROM crm.profile\nWHERE no_such_column > 1\n")
    try:
        campaign_id = tune(campaigns_dir, "winter_sale", "broken_sql", audience={"sql": f"audiences/{bad.name}"})
        result = dags_test(campaign_id, env_for(smtp_server, campaigns_dir))
    finally:
        bad.unlink()
    output = result.stdout + result.stderr
    assert result.returncode != 0 or "state=failed" in output
    assert f"{bad.name}:3:7: PostgreSQL rejected the audience SQL" in output
    assert smtp_server.handler.messages == []
