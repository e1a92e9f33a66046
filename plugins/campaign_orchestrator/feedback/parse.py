"""Turn provider feedback, as it arrives in SQS, into :class:`DeliveryEvent` rows.

Two sources, each possibly wrapped in an SNS envelope (``{"Type": "Notification",
"MessageId": ..., "Message": "<json>"}``; a subscription with raw message delivery drops it):

- **SES event notifications**: ``eventType`` (configuration-set event publishing) or
  ``notificationType`` (identity feedback notifications) with ``mail.messageId``, the SES
  MessageId the ledger holds. One event per recipient (``bouncedRecipients``,
  ``complainedRecipients``, ``delivery.recipients``; opens, clicks and rejects concern the
  message, so ``mail.destination``).
- **SNS delivery status logs** (SMS, and push to platform endpoints): ``notification.messageId``
  (the ``Publish`` MessageId), ``status`` ``SUCCESS``/``FAILURE``, ``delivery.destination``.
  Also accepted in the CloudWatch Logs subscription form (``logEvents[].message``, possibly
  gzip+base64) that a log export forwards.

Outcomes of :func:`parse_sqs_body`: events (possibly none, for a notification that carries
no delivery outcome: ``Send``, ``DeliveryDelay``, an SNS subscription confirmation...), or
:class:`UnparseableMessage`, which the poller moves aside instead of deleting.

``provider_event_id`` is a hash of the event's own content and its recipient, so the same
notification delivered twice (SQS is at-least-once, SNS retries) is the same row.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

SES_EVENT_TYPES = {
    "Delivery": "delivered",
    "Bounce": "bounced",
    "Complaint": "complained",
    "Open": "opened",
    "Click": "clicked",
    "Reject": "rejected",
}
# Notifications that say nothing final about a delivery: acknowledged, not stored.
SES_IGNORED = frozenset(
    {"Send", "DeliveryDelay", "Rendering Failure", "Subscription", "AmazonSnsSubscriptionSucceeded"}
)
BOUNCE_TYPES = frozenset({"Permanent", "Transient", "Undetermined"})
SNS_STATUSES = {"SUCCESS": "delivered", "FAILURE": "delivery_failed"}
SNS_NON_NOTIFICATIONS = frozenset({"SubscriptionConfirmation", "UnsubscribeConfirmation"})


class UnparseableMessage(ValueError):
    """The body is not feedback this module understands; the reason says what is wrong."""


@dataclass(frozen=True)
class DeliveryEvent:
    """One provider event about one message (and, for email, one recipient).

    :param provider_message_id: the SES or SNS MessageId, as in ``campaign.message``.
    :param channel: ``email``, ``sms`` or ``push``; the ledger's channel wins when it matches.
    :param event_type: one of ``campaign.delivery_event``'s event types.
    :param occurred_at: when the provider says it happened (UTC).
    :param provider_event_id: the idempotency key.
    :param recipient: the address concerned, as the provider wrote it (bounces and complaints
        suppress it).
    :param bounce_type: ``Permanent``, ``Transient`` or ``Undetermined`` for a bounce.
    :param detail: provider fields worth keeping (diagnostic, sub-type, link, user agent...).
    :param run_key: with ``step_id``, ``profile_id`` and ``entity_key``, the ledger key of the
        message when the event names it itself (a tracking link does): it is matched by that
        key instead of ``provider_message_id``, and dropped if that ledger row is gone.
    """

    provider_message_id: str
    channel: str
    event_type: str
    occurred_at: datetime
    provider_event_id: str
    recipient: str | None = None
    bounce_type: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    run_key: int | None = None
    step_id: str | None = None
    profile_id: int | None = None
    entity_key: str | None = None


def parse_sqs_body(body: str) -> list[DeliveryEvent]:
    """The events of one SQS message body; raises :class:`UnparseableMessage`."""
    document = _load(body)
    if document.get("Type") in SNS_NON_NOTIFICATIONS:
        return []
    if document.get("Type") == "Notification" and "Message" in document:
        inner = document["Message"]
        document = _load(inner) if isinstance(inner, str) else inner
        if not isinstance(document, dict):
            raise UnparseableMessage("the SNS envelope's Message is not a JSON object")
    return parse_document(document)


def parse_document(document: dict[str, Any]) -> list[DeliveryEvent]:
    """The events of one unwrapped notification (SES event, SNS status log, or a CloudWatch
    Logs subscription batch of status logs)."""
    if "eventType" in document or "notificationType" in document:
        return parse_ses_event(document)
    if "notification" in document and "status" in document:
        return [parse_sns_status(document)]
    if isinstance(document.get("logEvents"), list):
        events: list[DeliveryEvent] = []
        for entry in document["logEvents"]:
            message = entry.get("message") if isinstance(entry, dict) else None
            if not isinstance(message, str):
                raise UnparseableMessage("a CloudWatch Logs entry has no message")
            events.extend(parse_document(_load(message)))
        return events
    raise UnparseableMessage(f"neither an SES event nor an SNS delivery status log (keys: {sorted(document)[:8]})")


def parse_ses_event(document: dict[str, Any]) -> list[DeliveryEvent]:
    kind = document.get("eventType") or document.get("notificationType")
    if kind in SES_IGNORED:
        return []
    event_type = SES_EVENT_TYPES.get(kind)  # type: ignore[arg-type]
    if event_type is None:
        raise UnparseableMessage(f"unknown SES event type {kind!r}")
    mail = _object(document, "mail")
    message_id = mail.get("messageId")
    if not isinstance(message_id, str) or not message_id:
        raise UnparseableMessage(f"SES {kind} event without mail.messageId")
    section = document.get(kind[0].lower() + kind[1:], {}) or {}  # "bounce", "deliveryDelay"...
    if not isinstance(section, dict):
        raise UnparseableMessage(f"SES {kind} event: {kind!r} section is not an object")
    occurred_at = _timestamp(section.get("timestamp") or mail.get("timestamp"), f"SES {kind} timestamp")

    bounce_type = None
    base_detail: dict[str, Any] = {}
    if kind == "Bounce":
        bounce_type = section.get("bounceType")
        if bounce_type not in BOUNCE_TYPES:
            raise UnparseableMessage(f"SES bounce with bounceType {bounce_type!r}")
        base_detail = {"bounce_subtype": section.get("bounceSubType"), "feedback_id": section.get("feedbackId")}
        recipients = [(r.get("emailAddress"), r) for r in _list(section, "bouncedRecipients")]
    elif kind == "Complaint":
        base_detail = {
            "feedback_type": section.get("complaintFeedbackType"),
            "complaint_subtype": section.get("complaintSubType"),
            "feedback_id": section.get("feedbackId"),
        }
        recipients = [(r.get("emailAddress"), r) for r in _list(section, "complainedRecipients")]
    elif kind == "Delivery":
        base_detail = {"smtp_response": section.get("smtpResponse")}
        recipients = [(r, {}) for r in section.get("recipients") or mail.get("destination") or []]
    elif kind == "Click":
        base_detail = {"link": section.get("link"), "user_agent": section.get("userAgent")}
        recipients = [(r, {}) for r in mail.get("destination") or []]
    elif kind == "Open":
        base_detail = {"user_agent": section.get("userAgent")}
        recipients = [(r, {}) for r in mail.get("destination") or []]
    else:  # Reject
        base_detail = {"reason": section.get("reason")}
        recipients = [(r, {}) for r in mail.get("destination") or []]
    if not recipients:
        if kind in ("Bounce", "Complaint"):
            raise UnparseableMessage(f"SES {kind} event names no recipient")
        recipients = [(None, {})]

    digest = _digest(document)
    events = []
    for address, per_recipient in recipients:
        if address is not None and not isinstance(address, str):
            raise UnparseableMessage(f"SES {kind} event: a recipient address is not a string")
        detail = {k: v for k, v in base_detail.items() if v is not None}
        for key, name in (("status", "status"), ("diagnosticCode", "diagnostic_code"), ("action", "action")):
            if per_recipient.get(key) is not None:
                detail[name] = per_recipient[key]
        if address:
            detail["recipient"] = address
        events.append(
            DeliveryEvent(
                provider_message_id=message_id,
                channel="email",
                event_type=event_type,
                occurred_at=occurred_at,
                provider_event_id=f"ses:{digest}:{_digest(address or '')[:16]}",
                recipient=address,
                bounce_type=bounce_type,
                detail=detail,
            )
        )
    return events


def parse_sns_status(document: dict[str, Any]) -> DeliveryEvent:
    notification = _object(document, "notification")
    delivery = document.get("delivery") or {}
    if not isinstance(delivery, dict):
        raise UnparseableMessage("SNS delivery status log: delivery is not an object")
    message_id = notification.get("messageId")
    if not isinstance(message_id, str) or not message_id:
        raise UnparseableMessage("SNS delivery status log without notification.messageId")
    status = document.get("status")
    event_type = SNS_STATUSES.get(status)  # type: ignore[arg-type]
    if event_type is None:
        raise UnparseableMessage(f"SNS delivery status {status!r} is neither SUCCESS nor FAILURE")
    published = _timestamp(notification.get("timestamp"), "SNS notification.timestamp")
    # The log's timestamp is the publish time; the hand-off to the carrier or push service
    # happened dwellTimeMs later.
    dwell = delivery.get("dwellTimeMs")
    occurred_at = published + timedelta(milliseconds=dwell) if isinstance(dwell, (int, float)) else published
    destination = delivery.get("destination")
    channel = "sms" if isinstance(destination, str) and destination.startswith("+") else "push"
    detail = {
        key: delivery[source]
        for key, source in (
            ("provider_response", "providerResponse"),
            ("status_code", "statusCode"),
            ("phone_carrier", "phoneCarrier"),
            ("price_usd", "priceInUSD"),
            ("parts", "numberOfMessageParts"),
        )
        if delivery.get(source) is not None
    }
    if destination:
        detail["recipient"] = destination
    return DeliveryEvent(
        provider_message_id=message_id,
        channel=channel,
        event_type=event_type,
        occurred_at=occurred_at,
        provider_event_id=f"sns:{_digest(document)}",
        recipient=destination if isinstance(destination, str) else None,
        detail=detail,
    )


def _load(text: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except (TypeError, ValueError):
        document = _maybe_compressed(text)
    if not isinstance(document, dict):
        raise UnparseableMessage("the body is not a JSON object")
    return document


def _maybe_compressed(text: str) -> Any:
    """A CloudWatch Logs subscription payload: gzip, then base64 when it went through a queue."""
    try:
        return json.loads(gzip.decompress(base64.b64decode(text, validate=True)))
    except (binascii.Error, OSError, EOFError, ValueError, TypeError):
        raise UnparseableMessage("the body is not JSON (nor base64 gzip JSON)") from None


def _object(document: dict[str, Any], key: str) -> dict[str, Any]:
    value = document.get(key)
    if not isinstance(value, dict):
        raise UnparseableMessage(f"{key!r} is missing or not an object")
    return value


def _list(section: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = section.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise UnparseableMessage(f"{key!r} is not a list of objects")
    return value


def _timestamp(value: Any, what: str) -> datetime:
    """ISO 8601 (SES: ``2017-08-05T00:41:02.669Z``) or SNS logs' ``2016-06-28 00:40:34.558`` (UTC)."""
    if not isinstance(value, str) or not value:
        raise UnparseableMessage(f"{what} is missing")
    try:
        parsed = datetime.fromisoformat(value)  # 3.11 reads a trailing Z
    except ValueError:
        raise UnparseableMessage(f"{what} {value!r} is not a timestamp") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _digest(value: Any) -> str:
    canonical = value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]
