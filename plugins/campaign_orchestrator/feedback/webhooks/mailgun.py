"""Mailgun's webhooks: one JSON event per request, ``{"signature": {...}, "event-data": {...}}``.

Authenticity: ``signature.signature`` is the hex ``HMAC-SHA256(signing key, timestamp +
token)``, compared in constant time; the timestamp must be recent and each ``token`` is
accepted once (``campaign.webhook_token``, in the transaction that stores the event, so a
request whose storing failed can be retried).

Events: ``delivered``, ``failed`` with ``severity: permanent`` (``bounced``, hard or soft by
``delivery-status``'s code; ``reason`` ``suppress-*``: Mailgun did not send at all,
``rejected``), ``rejected``, ``complained``, ``opened``, ``clicked``. ``failed`` with
``severity: temporary`` (Mailgun retries), ``accepted`` and ``unsubscribed``: acknowledged.
The message is ours by the user variable ``campaign_message_id`` (``X-Mailgun-Variables``)
or by ``message.headers.message-id``.
"""

from __future__ import annotations

import hmac
import time
from typing import TYPE_CHECKING, Any

from campaign_orchestrator.feedback.classify import classify
from campaign_orchestrator.feedback.parse import DeliveryEvent
from campaign_orchestrator.feedback.webhooks.common import Malformed, Refused, epoch_time, keep, message_reference

if TYPE_CHECKING:
    from campaign_orchestrator.feedback.webhooks.settings import WebhookSettings

EVENTS = {"delivered": "delivered", "failed": "bounced", "rejected": "rejected", "complained": "complained",
          "opened": "opened", "clicked": "clicked"}
_NOT_SENT = frozenset({"suppress-bounce", "suppress-complaint", "suppress-unsubscribe"})


def verify(settings: WebhookSettings, document: Any, now: float | None = None) -> str:
    """The request's one-time token, once its signature is checked; raises :class:`Refused`."""
    block = document.get("signature") if isinstance(document, dict) else None
    if not isinstance(block, dict) or not all(isinstance(block.get(k), str) and block.get(k)
                                              for k in ("timestamp", "token", "signature")):
        raise Refused(401, "no signature block (timestamp, token, signature)")
    stamp, token, given = block["timestamp"], block["token"], block["signature"]
    if not stamp.isdigit() or abs((time.time() if now is None else now) - int(stamp)) > settings.max_age:
        raise Refused(403, "the signed timestamp is malformed or too old")
    message = (stamp + token).encode()
    genuine = False
    for secret in settings.mailgun_secrets:  # every one, so the time does not say which matched
        genuine |= hmac.compare_digest(hmac.new(secret.encode(), message, "sha256").hexdigest(), given.lower())
    if not genuine:
        raise Refused(403, "the Mailgun signature does not match")
    return token


def parse(document: dict[str, Any]) -> tuple[list[DeliveryEvent], int]:
    data = document.get("event-data")
    if not isinstance(data, dict) or not isinstance(data.get("event"), str):
        raise Malformed("no event-data with an event")
    kind = data["event"]
    severity = data.get("severity")
    if kind not in EVENTS or (kind == "failed" and severity != "permanent"):
        return [], 1  # accepted, unsubscribed, a temporary failure Mailgun retries, a new kind
    recipient = data.get("recipient")
    if not isinstance(recipient, str) or not recipient:
        raise Malformed(f"{kind} event without a recipient")
    headers = (data.get("message") or {}).get("headers") or {}
    header_id = headers.get("message-id") if isinstance(headers, dict) else None
    fallback = f"<{header_id.strip('<>')}>" if isinstance(header_id, str) and header_id else None
    reference = message_reference(data.get("user-variables"), fallback)
    if not reference:
        raise Malformed(f"{kind} event names no message (campaign_message_id or message.headers.message-id)")
    event_id = data.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise Malformed(f"{kind} event without an id")
    status = data.get("delivery-status") if isinstance(data.get("delivery-status"), dict) else {}
    event_type, bounce_type = EVENTS[kind], None
    detail = keep({
        "recipient": recipient, "reason": data.get("reason"), "severity": severity,
        "code": status.get("code"), "enhanced_code": status.get("enhanced-code"),
        "diagnostic_code": status.get("message") or status.get("description"), "url": data.get("url"),
        "user_agent": (data.get("client-info") or {}).get("user-agent") if isinstance(data.get("client-info"), dict)
        else None, "mailgun_event_id": event_id,
    })
    if kind == "failed":
        if data.get("reason") in _NOT_SENT:
            event_type = "rejected"
        else:
            verdict = classify(status.get("enhanced-code"), f"{status.get('code', '')} {status.get('message', '')}",
                               default="Permanent")
            bounce_type, detail["bounce_class"] = verdict.bounce_type, verdict.bounce_class
    occurred_at = epoch_time(data.get("timestamp"), f"{kind} event timestamp")
    return [DeliveryEvent(
        provider_message_id=reference,
        channel="email",
        event_type=event_type,
        occurred_at=occurred_at,
        # Mailgun's id is unique "within a day"; with the event's time it is unique.
        provider_event_id=f"mailgun:{event_id}:{data.get('timestamp')}",
        recipient=recipient,
        bounce_type=bounce_type,
        detail=detail,
    )], 0
