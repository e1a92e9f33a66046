"""The tasks of the ``campaign_feedback`` DAG: drain the providers' feedback queues and the
SMTP bounce mailbox into the store, and copy the SNS SMS opt-out list into consent.

Queue URLs live in the extras of one Airflow connection (``campaign_feedback`` by default),
read at run time only: parsing the DAG touches no connection, database or network. A queue
that is not configured skips its task, saying which extra to set.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException

from campaign_orchestrator.store.connect import store_connection

if TYPE_CHECKING:
    import psycopg
    from airflow.sdk import Context

log = logging.getLogger(__name__)

FEEDBACK_CONN_ID = "campaign_feedback"


class FeedbackOperator(BaseOperator):
    """Base of the feedback tasks: knows the store and the AWS connection.

    :param aws_conn_id: Airflow AWS connection for SQS and SNS.
    :param store_conn_id: the campaign store connection (default ``campaign_store``).
    """

    ui_color = "#eef7ec"

    def __init__(self, *, aws_conn_id: str = "aws_default", store_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.aws_conn_id = aws_conn_id
        self.store_conn_id = store_conn_id

    def connect(self) -> psycopg.Connection:
        return store_connection(self.store_conn_id)


class IngestFeedbackQueueOperator(FeedbackOperator):
    """Drain one SQS queue of SES events or SNS delivery status logs into
    ``campaign.delivery_event``; permanent bounces and complaints suppress their address.
    Applies pending store migrations first (this DAG may run before any campaign does).
    Returns the counts of :func:`~campaign_orchestrator.feedback.ingest.poll_queue`.

    :param queue_url_extra: the extra of ``feedback_conn_id`` holding the queue URL
        (``ses_queue_url``, ``sms_queue_url``); absent or empty: the task is skipped.
    :param dead_letter_url_extra: the extra holding a queue for unparseable messages; absent:
        they stay on the queue for its redrive policy.
    :param feedback_conn_id: the Airflow connection whose extras name the queues.
    :param max_messages: receive at most this many messages per run.
    :param wait_seconds: long-poll wait on an empty queue (0-20).
    """

    template_fields = ("queue_url_extra", "feedback_conn_id", "max_messages")

    def __init__(
        self,
        *,
        queue_url_extra: str,
        dead_letter_url_extra: str | None = None,
        feedback_conn_id: str = FEEDBACK_CONN_ID,
        max_messages: int = 10_000,
        wait_seconds: int = 20,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.queue_url_extra = queue_url_extra
        self.dead_letter_url_extra = dead_letter_url_extra
        self.feedback_conn_id = feedback_conn_id
        self.max_messages = max_messages
        self.wait_seconds = wait_seconds

    @cached_property
    def extras(self) -> dict[str, Any]:
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            return BaseHook.get_connection(self.feedback_conn_id).extra_dejson
        except AirflowNotFoundException:
            return {}

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.providers.amazon.aws.hooks.sqs import SqsHook

        from campaign_orchestrator.feedback.ingest import poll_queue

        queue_url = self.extras.get(self.queue_url_extra)
        if not queue_url:
            raise AirflowSkipException(
                f"No queue configured: set the extra {self.queue_url_extra!r} of the Airflow connection "
                f"{self.feedback_conn_id!r} to the SQS queue URL to ingest this feedback"
            )
        dead_letter_url = self.extras.get(self.dead_letter_url_extra) if self.dead_letter_url_extra else None
        client = SqsHook(aws_conn_id=self.aws_conn_id).get_conn()
        with self.connect() as conn:
            policies = _migrate_and_load_policies(conn)
            result = poll_queue(
                conn, client, queue_url, max_messages=int(self.max_messages), wait_seconds=self.wait_seconds,
                dead_letter_url=dead_letter_url or None, soft_bounces=policies.soft_bounces,
            )
        if result.unparseable:
            log.error(
                "%d unparseable messages %s; see the errors above",
                result.unparseable,
                f"moved to {dead_letter_url}" if dead_letter_url else "left on the queue for its redrive policy",
            )
        return result.as_dict()


class IngestBounceMailboxOperator(FeedbackOperator):
    """Read the SMTP bounce mailbox over IMAP into ``campaign.delivery_event``
    (:func:`~campaign_orchestrator.feedback.bounces.ingest_mailbox`): DSNs and complaint
    reports tied to their message by VERP or returned Message-ID; the rest kept in
    ``campaign.unmatched_feedback``. Skipped when the connection is not defined.

    :param bounces_conn_id: the Airflow connection of the bounce mailbox (and VERP settings).
    :param max_messages: read at most this many messages per run.
    """

    template_fields = ("bounces_conn_id", "max_messages")

    def __init__(self, *, bounces_conn_id: str = "campaign_bounces", max_messages: int = 5_000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bounces_conn_id = bounces_conn_id
        self.max_messages = max_messages

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException

        from campaign_orchestrator.feedback.bounces import ingest_mailbox
        from campaign_orchestrator.feedback.mailbox import BounceMailbox, settings_from_connection
        from campaign_orchestrator.feedback.verp import settings_from_extras

        try:
            connection = BaseHook.get_connection(self.bounces_conn_id)
        except AirflowNotFoundException:
            raise AirflowSkipException(
                f"No bounce mailbox: define the Airflow connection {self.bounces_conn_id!r} (IMAP host, port, "
                "login, password; extras verp_domain and secret for VERP) to ingest SMTP bounces"
            ) from None
        if not connection.host:
            raise AirflowSkipException(f"connection {self.bounces_conn_id!r} names no IMAP host: nothing to read")
        settings = settings_from_connection(connection)
        verp = settings_from_extras(connection.extra_dejson or {})
        with self.connect() as conn:
            policies = _migrate_and_load_policies(conn)
            with BounceMailbox(settings) as mailbox:
                result = ingest_mailbox(
                    conn, mailbox, verp, source=f"imap:{self.bounces_conn_id}", max_messages=int(self.max_messages),
                    soft_bounces=policies.soft_bounces,
                )
        if result.kept:
            log.warning("%d reports matched no message; kept in campaign.unmatched_feedback", result.kept)
        return result.as_dict()


def _migrate_and_load_policies(conn: psycopg.Connection):
    """Apply pending migrations (this DAG may run before any campaign does) and read the
    rules across campaigns (the soft-bounce threshold)."""
    from campaign_orchestrator.paths import ProjectPaths
    from campaign_orchestrator.run.policies import load_policies
    from campaign_orchestrator.store.migrations import migrate

    paths = ProjectPaths.discover()
    migrate(conn, paths.migrations)
    return load_policies(paths.campaigns)


class SyncSmsOptOutsOperator(FeedbackOperator):
    """Mark ``sms`` consent ``opted_out`` for profiles on the account's SNS opt-out list
    (:func:`~campaign_orchestrator.channels.sms.sns.sync_opt_outs`); returns how many changed."""

    def __init__(self, *, feedback_conn_id: str = "campaign_feedback", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.feedback_conn_id = feedback_conn_id

    def execute(self, context: Context) -> dict[str, int]:
        from airflow.providers.amazon.aws.hooks.sns import SnsHook
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException

        from campaign_orchestrator.channels.sms.sns import sync_opt_outs

        try:
            extras = BaseHook.get_connection(self.feedback_conn_id).extra_dejson
        except AirflowNotFoundException:
            extras = {}
        if not extras.get("sync_sms_opt_outs"):
            # An email-only deployment has no SNS account to read: opt in explicitly.
            raise AirflowSkipException(
                f"SMS opt-out sync is off: set the extra 'sync_sms_opt_outs': true on the Airflow "
                f"connection {self.feedback_conn_id!r} to copy the SNS opt-out list into consent"
            )
        with self.connect() as conn:
            changed = sync_opt_outs(conn, SnsHook(aws_conn_id=self.aws_conn_id))
        return {"opted_out": changed}
