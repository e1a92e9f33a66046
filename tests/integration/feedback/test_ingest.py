"""Delivery feedback from SQS (moto over HTTP) into a real store: SES events wrapped in SNS
envelopes, SNS SMS delivery status logs, idempotent re-delivery, deletion only after commit,
and unparseable messages that are never lost silently. Nothing in the path is mocked."""

from __future__ import annotations

import base64
import gzip
import json
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from campaign_orchestrator.feedback.ingest import poll_queue
from campaign_orchestrator.feedback.parse import UnparseableMessage, parse_sqs_body

from tests.fixtures.aws import MotoEndpoint
from tests.fixtures.feedback import TOPIC, ses_event, ses_mail, sms_status, sns_envelope

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


class ListHandler(logging.Handler):
    """Keeps records (the suite runs with ``-p no:logging``, so without caplog)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def sqs(ses_endpoint: MotoEndpoint) -> Any:
    """A boto3 SQS client on a freshly reset moto server."""
    return ses_endpoint.client("sqs")


def make_queue(sqs: Any, name: str, **attributes: str) -> str:
    return sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]


def send_all(sqs: Any, queue_url: str, bodies: list[str]) -> None:
    for body in bodies:
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)


def queue_depth(sqs: Any, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) messages."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


@pytest.fixture
def ledger(store: psycopg.Connection) -> Iterator[dict[str, Any]]:
    """A sent run of two steps: email to profiles 1-5 (SES ids ses-1..ses-5), sms to 6-7."""
    store.execute("TRUNCATE campaign.delivery_event")
    run_key = store.execute(
        "INSERT INTO campaign.run (campaign_id, dag_run_id) VALUES ('winter_sale', 'scheduled__1') RETURNING run_key"
    ).fetchone()[0]
    rows = [
        (1, "offer_email", "email", "alice@example.com", "ses-1"),
        (2, "offer_email", "email", "bob@example.com", "ses-2"),
        (3, "offer_email", "email", "carol@example.com", "ses-3"),
        (4, "offer_email", "email", "dave@example.com", "ses-4"),
        (5, "offer_email", "email", "erin@example.com", "ses-5"),
        (6, "offer_sms", "sms", "+33612345678", "sns-6"),
        (7, "offer_sms", "sms", "+33612345679", "sns-7"),
    ]
    with store.transaction():
        for seq, (profile_id, step_id, channel, address, provider_id) in enumerate(rows):
            store.execute(
                """
                INSERT INTO campaign.message (run_key, step_id, profile_id, entity_key, campaign_id, channel,
                    purpose, seq, address, status, provider_message_id, sent_at)
                VALUES (%s, %s, %s, '', 'winter_sale', %s, 'marketing', %s, %s, 'sent', %s, now())
                """,
                (run_key, step_id, profile_id, channel, seq, address, provider_id),
            )
    yield {"run_key": run_key}


def events(conn: psycopg.Connection) -> dict[tuple[str, str], tuple]:
    rows = conn.execute(
        """
        SELECT provider_message_id, event_type, run_key, step_id, profile_id, entity_key, channel, bounce_type,
               detail ->> 'recipient'
        FROM campaign.delivery_event
        """
    ).fetchall()
    return {(r[0], r[1]): r[2:] for r in rows}


def suppressions(conn: psycopg.Connection) -> dict[str, tuple[str, str]]:
    rows = conn.execute("SELECT address, reason, source FROM crm.suppression WHERE channel = 'email'").fetchall()
    return {address: (reason, source) for address, reason, source in rows}


SES_BODIES = [
    sns_envelope(ses_event("Delivery", "ses-1", "alice@example.com")),
    sns_envelope(ses_event("Open", "ses-1", "alice@example.com")),
    sns_envelope(ses_event("Click", "ses-1", "alice@example.com")),
    sns_envelope(ses_event("Bounce", "ses-2", "bob@example.com")),
    sns_envelope(ses_event("Bounce", "ses-3", "carol@example.com", bounceType="Transient", bounceSubType="MailboxFull",
                           bouncedRecipients=[{"emailAddress": "carol@example.com", "status": "4.2.2"}])),
    sns_envelope(ses_event("Complaint", "ses-4", "Dave@Example.com",
                           complainedRecipients=[{"emailAddress": " Dave@Example.COM "}])),
    # Identity feedback notifications say notificationType, not eventType.
    sns_envelope({"notificationType": "Delivery", "mail": ses_mail("ses-5", "erin@example.com"),
                  "delivery": {"timestamp": "2026-11-20T09:00:04.000Z", "recipients": ["erin@example.com"]}}),
    # A message some other sender of the account sent: kept, linked to no run, still suppresses.
    sns_envelope(ses_event("Bounce", "ses-foreign", "frank@example.com")),
]


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


def test_ses_events_are_linked_to_the_ledger_and_suppress_at_once(
    store: psycopg.Connection, ledger: dict[str, Any], sqs: Any
) -> None:
    queue = make_queue(sqs, "ses-feedback")
    send_all(sqs, queue, SES_BODIES)

    result = poll_queue(store, sqs, queue, wait_seconds=0)

    run_key = ledger["run_key"]
    stored = events(store)
    assert stored[("ses-1", "delivered")] == (run_key, "offer_email", 1, "", "email", None, "alice@example.com")
    assert stored[("ses-1", "opened")][:3] == (run_key, "offer_email", 1)
    assert stored[("ses-1", "clicked")][:3] == (run_key, "offer_email", 1)
    assert stored[("ses-2", "bounced")] == (run_key, "offer_email", 2, "", "email", "Permanent", "bob@example.com")
    assert stored[("ses-3", "bounced")][5] == "Transient"
    assert stored[("ses-4", "complained")][:3] == (run_key, "offer_email", 4)
    assert stored[("ses-5", "delivered")][:3] == (run_key, "offer_email", 5)
    assert stored[("ses-foreign", "bounced")][:4] == (None, None, None, None)
    assert len(stored) == 8

    # Hard bounce and complaint suppress (normalized), the transient bounce does not.
    assert suppressions(store) == {
        "bob@example.com": ("hard_bounce", "ses_feedback"),
        "dave@example.com": ("complaint", "ses_feedback"),
        "frank@example.com": ("hard_bounce", "ses_feedback"),
    }
    counts = result.as_dict()
    assert counts["messages"] == counts["deleted"] == 8
    assert counts["inserted"] == 8 and counts["unmatched"] == 1 and counts["duplicates"] == 0
    assert (counts["delivered"], counts["opened"], counts["clicked"], counts["bounced"]) == (2, 1, 1, 3)
    assert (counts["hard_bounces"], counts["complaints"]) == (2, 1)
    assert (counts["suppressed_hard_bounce"], counts["suppressed_complaint"]) == (2, 1)
    # Deleted after the commit: nothing left, visible or in flight.
    assert queue_depth(sqs, queue) == (0, 0)


def test_redelivered_messages_add_nothing(store: psycopg.Connection, ledger: dict[str, Any], sqs: Any) -> None:
    queue = make_queue(sqs, "ses-feedback")
    send_all(sqs, queue, SES_BODIES)
    poll_queue(store, sqs, queue, wait_seconds=0)
    before = store.execute("SELECT count(*), max(event_id) FROM campaign.delivery_event").fetchone()
    # A hard-bounced address re-permitted by hand stays so when its bounce is redelivered.
    store.execute("DELETE FROM crm.suppression WHERE address = 'bob@example.com'")

    # The same SQS bodies again (SQS at-least-once), and the same SNS notifications
    # re-published under new SNS MessageIds (SNS retries).
    send_all(sqs, queue, SES_BODIES)
    send_all(sqs, queue, [sns_envelope(json.loads(json.loads(b)["Message"])) for b in SES_BODIES])
    again = poll_queue(store, sqs, queue, wait_seconds=0, batch_messages=7)

    assert store.execute("SELECT count(*), max(event_id) FROM campaign.delivery_event").fetchone() == before
    counts = again.as_dict()
    assert counts["messages"] == counts["deleted"] == 16
    assert counts["inserted"] == 0 and counts["duplicates"] == 16
    assert counts["suppressed_hard_bounce"] == counts["suppressed_complaint"] == 0
    assert "bob@example.com" not in suppressions(store)
    assert queue_depth(sqs, queue) == (0, 0)


def test_messages_stay_on_the_queue_when_the_transaction_fails(
    store: psycopg.Connection, ledger: dict[str, Any], sqs: Any
) -> None:
    queue = make_queue(sqs, "ses-feedback", VisibilityTimeout="1")
    send_all(sqs, queue, SES_BODIES[:4])
    store.execute(
        """
        CREATE FUNCTION pg_temp.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'store unavailable'; END $$;
        CREATE TRIGGER refuse_feedback BEFORE INSERT ON campaign.delivery_event
            FOR EACH ROW WHEN (NEW.provider_message_id = 'ses-2') EXECUTE FUNCTION pg_temp.refuse();
        """
    )
    try:
        with pytest.raises(psycopg.errors.RaiseException):
            poll_queue(store, sqs, queue, wait_seconds=0)
    finally:
        store.execute("DROP TRIGGER refuse_feedback ON campaign.delivery_event")
    # Nothing committed (not even the other events or the suppression), nothing deleted.
    assert store.execute("SELECT count(*) FROM campaign.delivery_event").fetchone()[0] == 0
    assert suppressions(store) == {}
    assert sum(queue_depth(sqs, queue)) == 4

    time.sleep(1.2)  # the visibility timeout: SQS redelivers, and this time it commits
    result = poll_queue(store, sqs, queue, wait_seconds=0)
    assert result.deleted == 4 and result.counts["inserted"] == 4
    assert suppressions(store) == {"bob@example.com": ("hard_bounce", "ses_feedback")}
    assert queue_depth(sqs, queue) == (0, 0)


def test_sms_delivery_status_logs(store: psycopg.Connection, ledger: dict[str, Any], sqs: Any) -> None:
    queue = make_queue(sqs, "sms-status")
    run_key = ledger["run_key"]
    payload = {  # a CloudWatch Logs subscription batch, gzip + base64, as a log export forwards it
        "messageType": "DATA_MESSAGE",
        "logGroup": "sns/us-east-1/123456789012/DirectPublishToPhoneNumber/Failure",
        "logEvents": [{"id": "1", "timestamp": 1, "message": json.dumps(sms_status("sns-7", "+33612345679", "FAILURE"))}],
    }
    send_all(sqs, queue, [
        json.dumps(sms_status("sns-6", "+33612345678")),
        base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode(),
    ])

    result = poll_queue(store, sqs, queue, wait_seconds=0)

    stored = events(store)
    assert stored[("sns-6", "delivered")] == (run_key, "offer_sms", 6, "", "sms", None, "+33612345678")
    assert stored[("sns-7", "delivery_failed")][:5] == (run_key, "offer_sms", 7, "", "sms")
    occurred = store.execute(
        "SELECT occurred_at FROM campaign.delivery_event WHERE provider_message_id = 'sns-6'"
    ).fetchone()[0]
    assert occurred.isoformat() == "2026-11-20T09:00:01.157000+00:00"  # published + dwellTimeMs
    assert suppressions(store) == {}  # a failed SMS suppresses nothing
    assert result.deleted == 2 and queue_depth(sqs, queue) == (0, 0)


def test_unparseable_messages_are_moved_aside_not_lost(
    store: psycopg.Connection, ledger: dict[str, Any], sqs: Any
) -> None:
    records = ListHandler()
    logging.getLogger("campaign_orchestrator.feedback.ingest").addHandler(records)
    queue = make_queue(sqs, "ses-feedback")
    aside = make_queue(sqs, "ses-feedback-unparseable")
    garbage = ["this is not json", sns_envelope({"eventType": "Bounce", "mail": {"messageId": "ses-2"}})]
    send_all(sqs, queue, [SES_BODIES[0], *garbage])

    try:
        result = poll_queue(store, sqs, queue, wait_seconds=0, dead_letter_url=aside)
    finally:
        logging.getLogger("campaign_orchestrator.feedback.ingest").removeHandler(records)

    assert (result.unparseable, result.moved_aside, result.deleted) == (2, 2, 1)
    assert set(events(store)) == {("ses-1", "delivered")}  # the good message of the batch went in
    assert queue_depth(sqs, queue) == (0, 0)
    kept = sqs.receive_message(QueueUrl=aside, MaxNumberOfMessages=10, MessageAttributeNames=["All"])["Messages"]
    assert sorted(m["Body"] for m in kept) == sorted(garbage)  # bodies intact
    assert {m["MessageAttributes"]["source_queue"]["StringValue"] for m in kept} == {queue}
    reasons = sorted(m["MessageAttributes"]["error"]["StringValue"] for m in kept)
    assert reasons == ["SES Bounce timestamp is missing", "the body is not JSON (nor base64 gzip JSON)"]
    errors = [r.getMessage() for r in records.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and all("Unparseable feedback message" in e for e in errors)


def test_without_a_dead_letter_url_the_redrive_policy_keeps_them(
    store: psycopg.Connection, ledger: dict[str, Any], sqs: Any
) -> None:
    dlq = make_queue(sqs, "ses-feedback-dlq")
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = make_queue(
        sqs, "ses-feedback", VisibilityTimeout="1",
        RedrivePolicy=json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "1"}),
    )
    send_all(sqs, queue, ["{broken", SES_BODIES[0]])

    result = poll_queue(store, sqs, queue, wait_seconds=0)
    assert (result.unparseable, result.moved_aside, result.deleted) == (1, 0, 1)
    assert queue_depth(sqs, queue) == (0, 1)  # not deleted: in flight until the visibility timeout

    time.sleep(1.2)
    assert poll_queue(store, sqs, queue, wait_seconds=0).messages == 0  # SQS moved it on this receive
    kept = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in kept] == ["{broken"]


def test_notifications_without_an_outcome_are_acknowledged(
    store: psycopg.Connection, ledger: dict[str, Any], sqs: Any
) -> None:
    queue = make_queue(sqs, "ses-feedback")
    send_all(sqs, queue, [
        json.dumps({"Type": "SubscriptionConfirmation", "MessageId": "c1", "Token": "t", "TopicArn": TOPIC,
                    "SubscribeURL": "https://sns.example/confirm"}),
        sns_envelope(ses_event("DeliveryDelay", "ses-1", "alice@example.com")),
        sns_envelope({"notificationType": "AmazonSnsSubscriptionSucceeded", "message": "ok"}),
    ])
    result = poll_queue(store, sqs, queue, wait_seconds=0)
    assert (result.messages, result.ignored, result.unparseable, result.deleted) == (3, 3, 0, 3)
    assert events(store) == {}


def test_parser_keeps_one_event_per_recipient_and_stable_ids() -> None:
    bounce = ses_event("Bounce", "ses-9", "a@example.com", bouncedRecipients=[
        {"emailAddress": "a@example.com", "status": "5.1.1"}, {"emailAddress": "b@example.com", "status": "5.1.1"}])
    first, second = parse_sqs_body(sns_envelope(bounce))
    assert (first.recipient, second.recipient) == ("a@example.com", "b@example.com")
    assert first.provider_event_id != second.provider_event_id
    # Same notification, another SNS envelope or raw delivery: same ids.
    assert [e.provider_event_id for e in parse_sqs_body(json.dumps(bounce))] == [
        first.provider_event_id, second.provider_event_id]
    assert first.occurred_at.isoformat() == "2026-11-20T09:00:02.669000+00:00"
    assert first.detail == {"bounce_subtype": "General", "feedback_id": bounce["bounce"]["feedbackId"],
                            "status": "5.1.1", "recipient": "a@example.com"}
    (reject,) = parse_sqs_body(sns_envelope(ses_event("Reject", "ses-10", "c@example.com")))
    assert (reject.event_type, reject.occurred_at.isoformat()) == ("rejected", "2026-11-20T09:00:00.012000+00:00")
    for body in ("[]", json.dumps({"eventType": "Bounce", "mail": {"messageId": "x"}, "bounce": {
            "bounceType": "Sideways", "timestamp": "2026-11-20T09:00:00Z", "bouncedRecipients": []}}),
            json.dumps({"notification": {"messageId": "m"}, "status": "MAYBE"})):
        with pytest.raises(UnparseableMessage):
            parse_sqs_body(body)


# ---------------------------------------------------------------------------------------------
# The DAG and its operators
# ---------------------------------------------------------------------------------------------


def test_feedback_dag_parses_without_io() -> None:
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.test_dag_integrity import forbidden_io

    with forbidden_io() as counts:
        bag = DagBag(dag_folder=str(ROOT / "dags" / "campaign_feedback.py"), safe_mode=True)
    assert bag.import_errors == {}
    assert bag.dag_ids == ["campaign_feedback"]
    assert counts == {"sql": 0, "psycopg_connect": 0, "get_connection": 0, "variable_get": 0}
    dag = bag.dags["campaign_feedback"]
    assert dag.max_active_runs == 1 and not dag.catchup
    assert set(dag.task_ids) == {"ingest_ses_events", "ingest_sms_status", "ingest_bounce_mailbox", "sync_sms_opt_outs"}


def test_operator_skips_when_no_queue_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.exceptions import AirflowSkipException
    from campaign_orchestrator.operators.feedback import IngestFeedbackQueueOperator

    monkeypatch.delenv("AIRFLOW_CONN_CAMPAIGN_FEEDBACK", raising=False)
    operator = IngestFeedbackQueueOperator(task_id="ingest_ses_events", queue_url_extra="ses_queue_url")
    with pytest.raises(AirflowSkipException, match="ses_queue_url.*campaign_feedback"):
        operator.execute({})
    monkeypatch.setenv("AIRFLOW_CONN_CAMPAIGN_FEEDBACK", json.dumps({"conn_type": "generic", "extra": {}}))
    operator = IngestFeedbackQueueOperator(task_id="ingest_sms_status", queue_url_extra="sms_queue_url")
    with pytest.raises(AirflowSkipException, match="sms_queue_url"):
        operator.execute({})


def test_operator_drains_the_configured_queue(
    store: psycopg.Connection, ledger: dict[str, Any], ses_endpoint: MotoEndpoint, sqs: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from campaign_orchestrator.operators.feedback import IngestFeedbackQueueOperator

    queue = make_queue(sqs, "ses-feedback")
    send_all(sqs, queue, SES_BODIES[:4])
    monkeypatch.setenv(
        "AIRFLOW_CONN_CAMPAIGN_FEEDBACK", json.dumps({"conn_type": "generic", "extra": {"ses_queue_url": queue}})
    )
    operator = IngestFeedbackQueueOperator(
        task_id="ingest_ses_events", queue_url_extra="ses_queue_url", aws_conn_id=ses_endpoint.conn_id, wait_seconds=0
    )
    counts = operator.execute({})
    assert counts["deleted"] == 4 and counts["inserted"] == 4 and counts["hard_bounces"] == 1
    assert queue_depth(sqs, queue) == (0, 0)
