"""Store delivery feedback, and drain the SQS queues it arrives on.

Exactly-once effect from at-least-once delivery: a batch of SQS messages is parsed, its
events inserted (idempotently, keyed by ``provider_event_id``) and its suppressions added in
one transaction, and only after that commits are the SQS messages deleted. A crash in between
redelivers them; the insert then adds nothing.

A message that cannot be parsed is never deleted unnoticed: it is logged with its SQS
MessageId, then either copied to ``dead_letter_url`` and deleted, or left on the queue so
that the queue's redrive policy moves it to its dead-letter queue after ``maxReceiveCount``
receives (without a redrive policy it stays until the queue's retention period ends, and is
logged at every poll).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb

from campaign_orchestrator.feedback.parse import UnparseableMessage, parse_sqs_body
from campaign_orchestrator.sqlfiles import query

if TYPE_CHECKING:
    from collections.abc import Sequence

    import psycopg

    from campaign_orchestrator.feedback.parse import DeliveryEvent
    from campaign_orchestrator.config.policies import SoftBounces

log = logging.getLogger(__name__)

SQS_BATCH = 10  # ReceiveMessage and DeleteMessageBatch take at most 10


def ingest_events(
    conn: psycopg.Connection,
    events: Sequence[DeliveryEvent],
    source: str = "ses_feedback",
    soft_bounces: SoftBounces | None = None,
) -> dict[str, int]:
    """Insert ``events`` linked to their ledger rows (by their ledger key when they carry one,
    else by provider message id), and suppress hard-bounced and complaining
    addresses, and soft-bounced ones past the threshold, in one transaction (a savepoint if
    the caller has one open).

    :param source: the suppression's ``source`` (``ses_feedback``, ``smtp_bounce``,
        ``sendgrid_webhook``…).
    :param soft_bounces: the threshold (``soft_bounces`` of ``_policies.yaml``); by default
        3 soft-bounced messages within 30 days.

    Returns counts: ``received``, ``inserted``, ``duplicates`` (already stored), ``unmatched``
    (inserted, no ledger row), one per event type inserted (``delivered``, ``bounced``...),
    ``hard_bounces``, ``soft_bounces`` and ``complaints`` (inserted events),
    ``suppressed_hard_bounce``, ``suppressed_complaint`` and ``suppressed_soft_bounce``
    (addresses newly added to ``crm.suppression``).
    """
    unique = list({e.provider_event_id: e for e in events}.values())
    counts: Counter[str] = Counter(received=len(events))
    if unique:
        params = {
            "provider_message_id": [e.provider_message_id for e in unique],
            "channel": [e.channel for e in unique],
            "event_type": [e.event_type for e in unique],
            "bounce_type": [e.bounce_type for e in unique],
            "detail": [Jsonb(e.detail) for e in unique],
            "occurred_at": [e.occurred_at for e in unique],
            "provider_event_id": [e.provider_event_id for e in unique],
            "recipient": [e.recipient for e in unique],
            "source": source,
            "run_key": [e.run_key for e in unique],
            "step_id": [e.step_id for e in unique],
            "profile_id": [e.profile_id for e in unique],
            "entity_key": [e.entity_key for e in unique],
        }
        soft_bounced: set[str] = set()
        with conn.transaction():
            rows = conn.execute(query("ingest_delivery_events"), params).fetchall()
            for kind, event_type, bounce_type, matched, channel, recipient in rows:
                if kind == "suppressed":
                    counts[f"suppressed_{event_type}"] += 1
                    continue
                counts["inserted"] += 1
                counts[event_type] += 1
                if not matched:
                    counts["unmatched"] += 1
                if event_type == "bounced" and bounce_type == "Permanent":
                    counts["hard_bounces"] += 1
                elif event_type == "bounced" and bounce_type == "Transient":
                    counts["soft_bounces"] += 1
                    if channel == "email" and (recipient or "").strip():
                        soft_bounced.add(recipient.strip().lower())
                elif event_type == "complained":
                    counts["complaints"] += 1
            if soft_bounced:
                counts["suppressed_soft_bounce"] += _suppress_soft_bounces(conn, soft_bounced, source, soft_bounces)
    counts["duplicates"] = len(events) - counts["inserted"]
    for key in ("inserted", "unmatched", "hard_bounces", "soft_bounces", "complaints", "suppressed_hard_bounce",
                "suppressed_complaint", "suppressed_soft_bounce"):
        counts.setdefault(key, 0)
    return dict(counts)


def _suppress_soft_bounces(
    conn: psycopg.Connection, addresses: set[str], source: str, policy: SoftBounces | None
) -> int:
    if policy is None:
        from campaign_orchestrator.config.policies import SoftBounces

        policy = SoftBounces()
    rows = conn.execute(
        query("feedback/suppress_soft_bounces"),
        {"addresses": sorted(addresses), "threshold": policy.suppress_after, "within": policy.within,
         "source": source},
    ).fetchall()
    return len(rows)


@dataclass
class PollResult:
    """What one :func:`poll_queue` call did; ``counts`` sums :func:`ingest_events` counts."""

    messages: int = 0
    deleted: int = 0
    ignored: int = 0
    """Messages carrying no delivery outcome (SES Send or DeliveryDelay, SNS confirmations)."""
    unparseable: int = 0
    moved_aside: int = 0
    delete_failures: int = 0
    counts: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "deleted": self.deleted,
            "ignored": self.ignored,
            "unparseable": self.unparseable,
            "moved_aside": self.moved_aside,
            "delete_failures": self.delete_failures,
            **dict(self.counts),
        }


def poll_queue(
    conn: psycopg.Connection,
    sqs_client: Any,
    queue_url: str,
    max_messages: int = 10_000,
    wait_seconds: int = 20,
    batch_messages: int = 100,
    dead_letter_url: str | None = None,
    soft_bounces: SoftBounces | None = None,
) -> PollResult:
    """Drain ``queue_url`` into the store until it is empty or ``max_messages`` were received.

    :param conn: an autocommit store connection (``store_connection()``) outside a
        transaction: messages are deleted only once their events are committed.
    :param sqs_client: a boto3 SQS client.
    :param max_messages: receive at most this many messages in this call.
    :param wait_seconds: long-poll wait of a receive on an empty queue (0-20).
    :param batch_messages: messages ingested per transaction (received 10 at a time).
    :param dead_letter_url: where unparseable messages are copied before being deleted;
        ``None`` leaves them on the queue for its redrive policy.
    :param soft_bounces: the soft-bounce threshold (:func:`ingest_events`).
    """
    if not conn.autocommit or conn.info.transaction_status != TransactionStatus.IDLE:
        raise ValueError("poll_queue needs an autocommit connection outside a transaction")
    if dead_letter_url is None and not _has_redrive_policy(sqs_client, queue_url):
        log.warning(
            "%s has no redrive policy and no dead-letter URL was given: unparseable messages stay "
            "on the queue (and are logged at every poll) until its retention period ends",
            queue_url,
        )
    result = PollResult()
    while result.messages < max_messages:
        batch = _receive(sqs_client, queue_url, min(batch_messages, max_messages - result.messages), wait_seconds)
        if not batch:
            break
        result.messages += len(batch)
        events: list[DeliveryEvent] = []
        done: list[dict[str, Any]] = []
        for message in batch:
            try:
                parsed = parse_sqs_body(message.get("Body", ""))
            except UnparseableMessage as exc:
                result.unparseable += 1
                _set_aside(sqs_client, queue_url, message, str(exc), dead_letter_url, result)
                continue
            if not parsed:
                result.ignored += 1
            events.extend(parsed)
            done.append(message)
        result.counts.update(ingest_events(conn, events, soft_bounces=soft_bounces))  # committed on return
        _delete(sqs_client, queue_url, done, result)
        if len(batch) < batch_messages:
            break  # the queue ran dry during this batch
    log.info("Polled %s: %s", queue_url, result.as_dict())
    return result


def _receive(sqs_client: Any, queue_url: str, wanted: int, wait_seconds: int) -> list[dict[str, Any]]:
    """Up to ``wanted`` messages: the first receive long-polls, the next ones only take what is there."""
    received: list[dict[str, Any]] = []
    while len(received) < wanted:
        response = sqs_client.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(SQS_BATCH, wanted - len(received)),
            WaitTimeSeconds=wait_seconds if not received else 0,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        messages = response.get("Messages", [])
        if not messages:
            break
        received.extend(messages)
    return received


def _delete(sqs_client: Any, queue_url: str, messages: list[dict[str, Any]], result: PollResult) -> None:
    for start in range(0, len(messages), SQS_BATCH):
        chunk = messages[start : start + SQS_BATCH]
        response = sqs_client.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
        )
        result.deleted += len(response.get("Successful", []))
        for failure in response.get("Failed", []):
            # Stored already: when SQS redelivers it, the insert adds nothing.
            result.delete_failures += 1
            log.warning("Could not delete SQS message %s: %s", chunk[int(failure["Id"])]["MessageId"], failure)


def _set_aside(
    sqs_client: Any,
    queue_url: str,
    message: dict[str, Any],
    reason: str,
    dead_letter_url: str | None,
    result: PollResult,
) -> None:
    body = message.get("Body", "")
    receives = message.get("Attributes", {}).get("ApproximateReceiveCount", "?")
    log.error(
        "Unparseable feedback message %s on %s (received %s times): %s; body starts %r",
        message.get("MessageId"), queue_url, receives, reason, body[:300],
    )
    if dead_letter_url is None:
        return  # left on the queue: visible again after its visibility timeout
    sqs_client.send_message(
        QueueUrl=dead_letter_url,
        MessageBody=body or json.dumps({"empty_body_of": message.get("MessageId")}),
        MessageAttributes={
            "source_queue": {"DataType": "String", "StringValue": queue_url},
            "source_message_id": {"DataType": "String", "StringValue": str(message.get("MessageId"))},
            "error": {"DataType": "String", "StringValue": reason[:1000] or "unparseable"},
        },
    )
    sqs_client.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    result.moved_aside += 1


def _has_redrive_policy(sqs_client: Any, queue_url: str) -> bool:
    attributes = sqs_client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])
    return bool(attributes.get("Attributes", {}).get("RedrivePolicy"))
