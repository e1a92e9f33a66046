"""SendGrid's Event Webhook: a signed JSON array of events.

The Signed Event Webhook signs ``timestamp + body`` with ECDSA P-256 / SHA-256:
``X-Twilio-Email-Event-Webhook-Signature`` is the base64 DER signature,
``X-Twilio-Email-Event-Webhook-Timestamp`` the Unix time (as sendgrid-python's
``EventWebhook.verify_signature`` checks it). The body is verified as received, byte for
byte, before it is parsed.

Events: ``delivered``, ``bounce`` (``type`` ``bounce``: hard or soft by its ``status``;
``blocked``: soft, a block of our message), ``dropped`` (SendGrid refused to send:
``rejected``), ``spamreport`` (``complained``), ``open``, ``click``. ``processed``,
``deferred`` (still trying) and the unsubscribe events carry no outcome: acknowledged.
The message is ours by the custom argument ``campaign_message_id`` (``X-SMTPAPI``
unique_args, top-level in each event) or by ``smtp-id``, the Message-ID SendGrid received.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import TYPE_CHECKING, Any

from campaign_orchestrator.feedback.classify import classify
from campaign_orchestrator.feedback.parse import DeliveryEvent
from campaign_orchestrator.feedback.webhooks.common import (
    Malformed,
    Refused,
    content_id,
    epoch_time,
    keep,
    load_json,
    message_reference,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from campaign_orchestrator.feedback.webhooks.settings import WebhookSettings

SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"
EVENTS = {"delivered": "delivered", "bounce": "bounced", "dropped": "rejected", "spamreport": "complained",
          "open": "opened", "click": "clicked"}
ACKNOWLEDGED = frozenset({"processed", "deferred", "unsubscribe", "group_unsubscribe", "group_resubscribe"})


def verify(settings: WebhookSettings, body: bytes, headers: Mapping[str, str], now: float | None = None) -> None:
    """Raise :class:`Refused` unless the body is signed by the configured key, recently."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    signature, stamp = headers.get(SIGNATURE_HEADER), headers.get(TIMESTAMP_HEADER)
    if not signature or not stamp:
        raise Refused(401, "missing X-Twilio-Email-Event-Webhook-Signature or -Timestamp")
    if not stamp.isdigit() or abs((time.time() if now is None else now) - int(stamp)) > settings.max_age:
        raise Refused(403, "the signed timestamp is missing, malformed or too old")
    try:
        settings.sendgrid_public_key.verify(
            base64.b64decode(signature, validate=True), stamp.encode() + body, ec.ECDSA(hashes.SHA256())
        )
    except (InvalidSignature, binascii.Error, ValueError):
        raise Refused(403, "the SendGrid signature does not match") from None


def parse(body: bytes) -> tuple[list[DeliveryEvent], int]:
    """The events of a verified body, and how many were acknowledged without an event."""
    document = load_json(body)
    if not isinstance(document, list):
        raise Malformed("a SendGrid Event Webhook body is a JSON array of events")
    events, acknowledged = [], 0
    for index, item in enumerate(document):
        if not isinstance(item, dict) or not isinstance(item.get("event"), str):
            raise Malformed(f"event {index} is not an object with an 'event'")
        kind = item["event"]
        if kind in ACKNOWLEDGED or kind not in EVENTS:
            acknowledged += 1  # unknown kinds too: SendGrid adds some, a 400 would make it retry forever
            continue
        events.append(_event(item, kind, index))
    return events, acknowledged


def _event(item: dict[str, Any], kind: str, index: int) -> DeliveryEvent:
    recipient = item.get("email")
    if not isinstance(recipient, str) or not recipient:
        raise Malformed(f"event {index} ({kind}) has no email")
    occurred_at = epoch_time(item.get("timestamp"), f"event {index} timestamp")
    smtp_id = item.get("smtp-id") if isinstance(item.get("smtp-id"), str) else None
    reference = message_reference(item, smtp_id) or item.get("sg_message_id")
    if not isinstance(reference, str) or not reference:
        raise Malformed(f"event {index} ({kind}) names no message (campaign_message_id, smtp-id or sg_message_id)")
    bounce_type = None
    detail = keep({
        "recipient": recipient, "reason": item.get("reason"), "status": item.get("status"),
        "response": item.get("response"), "bounce_type": item.get("type"),
        "bounce_classification": item.get("bounce_classification"), "url": item.get("url"),
        "user_agent": item.get("useragent"), "ip": item.get("ip"), "sg_message_id": item.get("sg_message_id"),
    })
    if kind == "bounce":
        if item.get("type") == "blocked":
            bounce_type, detail["bounce_class"] = "Transient", "policy"
        else:
            verdict = classify(item.get("status"), item.get("reason"), default="Permanent")
            bounce_type, detail["bounce_class"] = verdict.bounce_type, verdict.bounce_class
    event_id = item.get("sg_event_id")
    return DeliveryEvent(
        provider_message_id=reference,
        channel="email",
        event_type=EVENTS[kind],
        occurred_at=occurred_at,
        provider_event_id=f"sendgrid:{event_id}" if isinstance(event_id, str) and event_id else
        f"sendgrid:{content_id(item)}",
        recipient=recipient,
        bounce_type=bounce_type,
        detail=detail,
    )
