"""On-demand runs from the trigger form's parameters, through `airflow dags test --conf`."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from campaign_orchestrator.store.demo_data import generate_demo_data
from tests.fixtures.airflow import dags_test

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def demo_store(store):
    generate_demo_data(store, profiles=1500, seed=7)
    return store


def env_for(smtp_server, tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "campaigns"
    if not folder.exists():
        shutil.copytree(ROOT / "dags" / "campaigns", folder)
    return {"AIRFLOW_CONN_SMTP_DEFAULT": smtp_server.conn_json(), "CAMPAIGNS_CONFIG_DIR": str(folder),
            "CAMPAIGNS_DRY_RUN_DIR": str(tmp_path / "dry-runs")}


def ledger(store) -> Counter:
    run_key = store.execute("SELECT max(run_key) FROM campaign.run").fetchone()[0]
    return Counter(dict(store.execute(
        "SELECT status, count(*) FROM campaign.message WHERE run_key = %s GROUP BY status", (run_key,)).fetchall()))


def test_a_dry_run_renders_every_message_to_files_and_sends_nothing(airflow_db, demo_store, smtp_server, tmp_path):
    result = dags_test("winter_sale", env_for(smtp_server, tmp_path), conf=json.dumps({"dry_run": True, "limit": 300}))
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert smtp_server.handler.messages == []
    counts = ledger(demo_store)
    assert counts["sent"] == 0 and counts["rendered"] > 0
    assert sum(counts.values()) <= 300  # the limit capped the audience
    files = list((tmp_path / "dry-runs").rglob("*.eml"))
    assert len(files) == counts["rendered"]
    assert b"Subject:" in files[0].read_bytes()


def test_audience_params_override_and_proofs(airflow_db, demo_store, smtp_server, tmp_path):
    env = env_for(smtp_server, tmp_path)
    result = dags_test("winter_sale", env, conf=json.dumps({"audience_params": {"min_bookings": 50}}))
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    size = demo_store.execute("SELECT audience_size FROM campaign.run ORDER BY run_key DESC LIMIT 1").fetchone()[0]
    subscribers = demo_store.execute(
        "SELECT count(DISTINCT profile_id) FROM crm.subscription WHERE status = 'active'").fetchone()[0]
    assert size == subscribers  # nobody has 50 bookings: only the subscription half of the SELECT remains

    smtp_server.handler.messages.clear()
    runs_before = demo_store.execute("SELECT count(*) FROM campaign.run").fetchone()[0]
    conf = {"proof_to": ["qa@wanderly.example"], "proof_profile_id": 1}
    result = dags_test("winter_sale", env, conf=json.dumps(conf))
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert [m.rcpt_tos for m in smtp_server.handler.messages] == [["qa@wanderly.example"]]
    assert demo_store.execute("SELECT count(*) FROM campaign.run").fetchone()[0] == runs_before
