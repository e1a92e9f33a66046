"""A three-step journey through `airflow dags test`, with compressed time: email (SES) -> wait 2
days -> SMS to those who did not open -> wait 2 days -> push to those who did not book.

While the first wait runs (deferred; about 20 s at the test's time scale), a feedback
injector plays the providers and the customers: it puts SES delivery, open and click
notifications on an SQS queue (moto over HTTP), drains the queue into the store with the
feedback DAG's own ingestion, and books trips for some recipients (conversions). Each
provider must then have received exactly what the ledger says, no opener gets the SMS and no
converter gets the push. Nothing in the path is mocked.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import psycopg
import pytest
import yaml

from campaign_orchestrator.config.loader import load_campaigns
from campaign_orchestrator.feedback.ingest import poll_queue
from campaign_orchestrator.paths import ProjectPaths
from campaign_orchestrator.run.funnel import compute_funnel, format_funnel
from campaign_orchestrator.store.demo_data import generate_demo_data
from tests.fixtures.airflow import dags_test
from tests.fixtures.aws import register_push_endpoints
from tests.fixtures.feedback import ses_event, sns_envelope

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
CAMPAIGN = "winter_sale_journey"
WAIT_SECONDS = 20
TIME_SCALE = WAIT_SECONDS / (2 * 24 * 3600)  # the config's two-day waits last 20 s


@pytest.fixture
def campaigns_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "campaigns"
    shutil.copytree(ROOT / "dags" / "campaigns", folder)
    data = yaml.safe_load((folder / f"{CAMPAIGN}.yaml").read_text())
    data["steps"][0]["provider"] = "ses"  # SES reports opens and clicks back; SMTP cannot
    (folder / f"{CAMPAIGN}.yaml").write_text(yaml.safe_dump(data))
    # Quiet hours have their own test; here they would hold SMS and push for whoever's
    # local night it happens to be.
    policies = yaml.safe_load((folder / "_policies.yaml").read_text()) or {}
    policies["quiet_hours"] = []
    (folder / "_policies.yaml").write_text(yaml.safe_dump(policies))
    return folder


class FeedbackInjector(threading.Thread):
    """Once every email is sent: SES events through SQS into the store, and bookings."""

    def __init__(self, dsn: str, sqs, queue_url: str) -> None:
        super().__init__(daemon=True)
        self.dsn, self.sqs, self.queue_url = dsn, sqs, queue_url
        self.opened: set[int] = set()
        self.clicked: set[int] = set()
        self.converted: set[int] = set()
        self.ingested = None
        self.events = 0
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                sent = self._wait_for_emails(conn)
                bodies = []
                for i, (profile_id, message_id, address) in enumerate(sent):
                    bodies.append(sns_envelope(ses_event("Delivery", message_id, address)))
                    if i % 3 == 0:  # a third open the email
                        self.opened.add(profile_id)
                        bodies.append(sns_envelope(ses_event("Open", message_id, address)))
                    if i % 9 == 0:  # some of them click, and one in ~27 clicks with images off (no open)
                        self.clicked.add(profile_id)
                        bodies.append(sns_envelope(ses_event("Click", message_id, address)))
                    elif i % 7 == 1:
                        self.clicked.add(profile_id)
                        bodies.append(sns_envelope(ses_event("Click", message_id, address)))
                self.events = len(bodies)
                for body in bodies:
                    self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)
                self.ingested = poll_queue(conn, self.sqs, self.queue_url, wait_seconds=0)
                # Every fifth recipient books a trip during the journey: a conversion.
                self.converted = {profile_id for i, (profile_id, _, _) in enumerate(sent) if i % 5 == 2}
                conn.execute(
                    """
                    INSERT INTO crm.booking (booking_id, profile_id, product_id, status, booked_at, starts_on, amount)
                    SELECT 900000000 + p, p, (SELECT min(product_id) FROM crm.product), 'confirmed', now(),
                           current_date + 40, 420
                    FROM unnest(%s::bigint[]) AS p
                    """,
                    (sorted(self.converted),),
                )
        except BaseException as exc:  # surfaced by the test
            self.error = exc
        finally:
            self.done.set()

    @staticmethod
    def _wait_for_emails(conn) -> list[tuple[int, str, str]]:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            row = conn.execute(
                """
                SELECT count(*) FILTER (WHERE m.status IN ('pending', 'sending')), count(*)
                FROM campaign.run r JOIN campaign.run_step s ON s.run_key = r.run_key AND s.step_id = 'sale_email'
                JOIN campaign.message m ON m.run_key = r.run_key AND m.step_id = 'sale_email'
                WHERE r.campaign_id = %s
                """,
                (CAMPAIGN,),
            ).fetchone()
            if row[1] and not row[0]:
                return conn.execute(
                    "SELECT profile_id, provider_message_id, address FROM campaign.message "
                    "WHERE campaign_id = %s AND step_id = 'sale_email' AND status = 'sent' ORDER BY profile_id",
                    (CAMPAIGN,),
                ).fetchall()
            time.sleep(0.2)
        raise TimeoutError("the email step never finished sending")


def test_email_then_sms_to_non_openers_then_push_to_non_converters(
    airflow_db, store, store_dsn, ses_endpoint, campaigns_dir, tmp_path
) -> None:
    generate_demo_data(store, profiles=400, seed=5)
    assert register_push_endpoints(store, ses_endpoint.client("sns")) > 0
    ses_endpoint.client("ses").verify_email_identity(EmailAddress="offers@wanderly.example")
    sqs = ses_endpoint.client("sqs")
    queue_url = sqs.create_queue(QueueName="ses-feedback")["QueueUrl"]
    injector = FeedbackInjector(store_dsn, sqs, queue_url)
    injector.start()
    env = {
        "CAMPAIGNS_CONFIG_DIR": str(campaigns_dir),
        "AIRFLOW_CONN_AWS_DEFAULT": ses_endpoint.conn_json(),
        "AIRFLOW_CONN_SMTP_DEFAULT": "smtp://127.0.0.1:1",  # unused: the email step sends through SES
    }
    result = dags_test(CAMPAIGN, env, conf=json.dumps({"time_scale": TIME_SCALE}))
    output = result.stdout + result.stderr
    injector.join(timeout=60)
    assert injector.error is None, repr(injector.error)
    assert result.returncode == 0 and "state=success" in output[-5000:], output[-8000:]

    run_key = store.execute(
        "SELECT run_key FROM campaign.run WHERE campaign_id = %s ORDER BY started_at DESC LIMIT 1", (CAMPAIGN,)
    ).fetchone()[0]

    def ledger(step_id: str) -> dict[int, tuple[str, str | None, str | None]]:
        rows = store.execute(
            "SELECT profile_id, status, reason, address FROM campaign.message WHERE run_key = %s AND step_id = %s",
            (run_key, step_id),
        ).fetchall()
        return {pid: (status, reason, address) for pid, status, reason, address in rows}

    email, sms, push = ledger("sale_email"), ledger("sms_to_non_openers"), ledger("push_to_non_bookers")
    emailed = {p for p, (status, _, _) in email.items() if status == "sent"}
    opened = injector.opened | injector.clicked  # a click is an open
    # Every event reached the store through SQS and found its ledger row.
    assert injector.ingested.counts["inserted"] == injector.events and injector.ingested.counts["unmatched"] == 0
    assert injector.ingested.counts["delivered"] == len(emailed)

    # The waits were deferred (no worker slot held) and lasted the scaled two days.
    waits = store.execute(
        "SELECT step_id, extract(epoch FROM due_at - entered_at) FROM campaign.run_wait WHERE run_key = %s",
        (run_key,),
    ).fetchall()
    assert {step: pytest.approx(float(seconds), abs=0.01) for step, seconds in waits} == {
        "wait_for_opens": WAIT_SECONDS, "wait_for_bookings": WAIT_SECONDS,
    }

    # SMS: everyone who came through the email step, minus whoever opened or clicked.
    assert set(sms) == set(email)
    assert {p for p, (_, reason, _) in sms.items() if reason == "condition_not_met"} == opened
    texted = {p for p, (status, _, _) in sms.items() if status == "sent"}
    assert texted and not texted & opened
    assert sorted(m["phone_number"] for m in ses_endpoint.sms_messages()) == sorted(
        address for p, (status, _, address) in sms.items() if status == "sent"
    )

    # Push: who came through the SMS step, minus whoever booked since the run started.
    assert set(push) == set(sms) - opened
    assert {p for p, (_, reason, _) in push.items() if reason == "condition_not_met"} == injector.converted - opened
    pushed = {p for p, (status, _, _) in push.items() if status == "sent"}
    assert pushed and not pushed & injector.converted
    deliveries = sum(len(e["messages"]) for e in ses_endpoint.platform_endpoints().values())
    assert deliveries == len(pushed)
    assert len(ses_endpoint.sent_raw_messages()) == len(emailed)

    config = load_campaigns(campaigns_dir, ProjectPaths.discover()).configs[CAMPAIGN][1]
    funnel = {f.step_id: f for f in compute_funnel(store, run_key, config)}
    assert (funnel["sale_email"].sent, funnel["sale_email"].delivered, funnel["sale_email"].opened) == (
        len(emailed), len(emailed), len(opened))
    assert funnel["sms_to_non_openers"].condition_not_met == len(opened)
    assert funnel["push_to_non_bookers"].sent == len(pushed)
    assert "Funnel per step" in output
    print("\n" + format_funnel(list(funnel.values())))
