"""Delivery feedback for every campaign: every 5 minutes, drain the SES event and SNS SMS
status queues and the SMTP bounce mailbox (IMAP) into campaign.delivery_event (hard bounces
and complaints suppress their address at once, soft bounces past a threshold) and copy the
SNS SMS opt-out list into consent.

Queue URLs are extras of the Airflow connection ``campaign_feedback`` (``ses_queue_url``,
``sms_queue_url``, optionally ``ses_dead_letter_url``/``sms_dead_letter_url``); the bounce
mailbox is the connection ``campaign_bounces``. Both are read when a task runs; a source
left unconfigured skips its task. Parsing opens no connection. (Email service webhooks are
not polled: they are served by the api-server, plugins/feedback_webhooks_plugin.py.)
"""

from datetime import datetime, timedelta

from airflow.sdk import DAG
from campaign_orchestrator.operators.feedback import (
    IngestBounceMailboxOperator,
    IngestFeedbackQueueOperator,
    SyncSmsOptOutsOperator,
)

with DAG(
    dag_id="campaign_feedback",
    description="Ingest SES/SNS delivery feedback, SMTP bounces (IMAP) and SMS opt-outs into the campaign store",
    schedule="*/5 * * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["campaign-feedback"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1), "execution_timeout": timedelta(minutes=15)},
):
    IngestFeedbackQueueOperator(
        task_id="ingest_ses_events", queue_url_extra="ses_queue_url", dead_letter_url_extra="ses_dead_letter_url"
    )
    IngestFeedbackQueueOperator(
        task_id="ingest_sms_status", queue_url_extra="sms_queue_url", dead_letter_url_extra="sms_dead_letter_url"
    )
    IngestBounceMailboxOperator(task_id="ingest_bounce_mailbox")
    SyncSmsOptOutsOperator(task_id="sync_sms_opt_outs")
