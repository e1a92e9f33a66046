"""One campaign over all five channels through `airflow dags test`: SMTP (aiosmtpd), SMS and
push (moto's SNS over HTTP), a direct-mail extract (file://) and a signed webhook (a local
HTTP server). Each provider must have received exactly what the ledger says was sent."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from campaign_orchestrator.channels.webhook.http import SIGNATURE_HEADER, verify_signature
from campaign_orchestrator.store.demo_data import generate_demo_data
from tests.fixtures.airflow import dags_test
from tests.fixtures.aws import register_push_endpoints
from tests.fixtures.webhook import SECRET, conn_json

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
CAMPAIGN = "winter_sale_multichannel"


@pytest.fixture
def campaigns_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "campaigns"
    shutil.copytree(ROOT / "dags" / "campaigns", folder)
    data = yaml.safe_load((folder / f"{CAMPAIGN}.yaml").read_text())
    for step in data["steps"]:
        if step["channel"] == "direct_mail":
            step["destination"] = f"file://{tmp_path / 'extracts'}"
    (folder / f"{CAMPAIGN}.yaml").write_text(yaml.safe_dump(data))
    # The default quiet hours would defer SMS and push for profiles whose local time is
    # night when the test happens to run; they have their own test (test_quiet_hours.py).
    policies = yaml.safe_load((folder / "_policies.yaml").read_text()) or {}
    policies["quiet_hours"] = []
    (folder / "_policies.yaml").write_text(yaml.safe_dump(policies))
    return folder


def test_four_channels_and_a_webhook_in_one_run(
    airflow_db, store, smtp_server, sns_endpoint, receiver, campaigns_dir, tmp_path
):
    generate_demo_data(store, profiles=600, seed=11)
    assert register_push_endpoints(store, sns_endpoint.client("sns")) > 0
    env = {
        "CAMPAIGNS_CONFIG_DIR": str(campaigns_dir),
        "AIRFLOW_CONN_SMTP_DEFAULT": smtp_server.conn_json(),
        "AIRFLOW_CONN_AWS_DEFAULT": sns_endpoint.conn_json(),
        "AIRFLOW_CONN_WEBHOOK_DEFAULT": conn_json(receiver.port),
    }
    result = dags_test(CAMPAIGN, env)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "state=success" in output[-5000:], output[-6000:]

    run_key = store.execute(
        "SELECT run_key FROM campaign.run WHERE campaign_id = %s ORDER BY started_at DESC LIMIT 1", (CAMPAIGN,)
    ).fetchone()[0]
    sent = dict(store.execute(
        "SELECT step_id, count(*) FROM campaign.message WHERE run_key = %s AND status = 'sent' GROUP BY step_id",
        (run_key,),
    ).fetchall())
    assert set(sent) == {"offer_email", "offer_sms", "offer_push", "offer_letter", "call_centre"}
    leftover = store.execute(
        "SELECT count(*) FROM campaign.message WHERE run_key = %s AND status NOT IN ('sent', 'excluded')", (run_key,)
    ).fetchone()[0]
    assert leftover == 0

    emails = Counter(r for m in smtp_server.handler.messages for r in m.rcpt_tos)
    assert len(emails) == sent["offer_email"] and max(emails.values()) == 1

    sms = sns_endpoint.sms_messages()
    assert len(sms) == sent["offer_sms"] == len({m["phone_number"] for m in sms})
    assert all("Reply STOP" in m["message"] for m in sms)

    pushes = [json.loads(body) for e in sns_endpoint.platform_endpoints().values() for body in e["messages"].values()]
    assert len(pushes) == sent["offer_push"]
    assert all(("APNS" in p) or ("GCM" in p) for p in pushes)

    requests = receiver.requests
    assert len(requests) == sent["call_centre"] == len(receiver.keys())
    assert all(verify_signature(SECRET, r.headers[SIGNATURE_HEADER], r.body) for r in requests)

    extracts = list((tmp_path / "extracts").rglob("offer_letter.csv"))
    assert len(extracts) == 1
    with extracts[0].open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == sent["offer_letter"] and all(r["postal_code"] and r["city"] for r in rows)
    manifest = json.loads(next((tmp_path / "extracts").rglob("offer_letter.manifest.json")).read_text())
    assert manifest["rows"] == sent["offer_letter"]

    report = dict(store.execute(
        "SELECT step_id, units FROM campaign.step_report WHERE run_key = %s", (run_key,)
    ).fetchall())
    assert report["offer_sms"] >= sent["offer_sms"]  # every SMS is at least one segment
    assert "segments:" in output
