"""Postmark's webhooks: one JSON record per request, authenticated by HTTP Basic.

Postmark does not sign payloads: the webhook URL carries Basic credentials
(``https://user:password@host/campaigns-feedback/postmark``), compared in constant time,
optionally with an allow-list of source addresses (Postmark publishes its webhook IPs).

Records: ``Delivery``, ``Bounce`` (``Type`` ``HardBounce``/``BadEmailAddress``: hard;
``SoftBounce``, ``Blocked``, ``DMARCPolicy``: soft; ``SpamNotification``: a complaint;
``ManuallyDeactivated``/``Unconfirmed``: Postmark did not send, ``rejected``; delays
(``Transient``, ``DnsError``) and auto-responses: acknowledged), ``SpamComplaint``,
``Open``, ``Click``. The message is ours by the metadata ``campaign_message_id``
(``X-PM-Metadata-campaign_message_id``); Postmark's ``MessageID`` is its own.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from typing import TYPE_CHECKING, Any

from campaign_orchestrator.feedback.parse import DeliveryEvent
from campaign_orchestrator.feedback.webhooks.common import (
    Malformed,
    Refused,
    content_id,
    iso_time,
    keep,
    message_reference,
)

if TYPE_CHECKING:
    from campaign_orchestrator.feedback.webhooks.settings import WebhookSettings

BOUNCES = {"HardBounce": "Permanent", "BadEmailAddress": "Permanent", "SoftBounce": "Transient",
           "Blocked": "Transient", "DMARCPolicy": "Transient"}
COMPLAINTS = frozenset({"SpamNotification", "SpamComplaint"})
NOT_SENT = frozenset({"ManuallyDeactivated", "Unconfirmed"})
TIMES = {"Delivery": "DeliveredAt", "Bounce": "BouncedAt", "SpamComplaint": "BouncedAt", "Open": "ReceivedAt",
         "Click": "ReceivedAt"}


def verify(settings: WebhookSettings, authorization: str | None, client_ip: str | None) -> None:
    """Raise :class:`Refused` unless the Basic credentials (and the source address) match."""
    if settings.postmark_networks:
        try:
            address = ipaddress.ip_address(client_ip or "")
        except ValueError:
            raise Refused(403, "the request's source address is unknown") from None
        if not any(address in network for network in settings.postmark_networks):
            raise Refused(403, f"{address} is not in postmark_allowed_ips")
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise Refused(401, "no HTTP Basic credentials")
    try:
        given = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise Refused(401, "malformed HTTP Basic credentials") from None
    if not hmac.compare_digest(given, settings.postmark_credentials or b"\x00"):
        raise Refused(403, "the HTTP Basic credentials do not match")


def parse(document: Any) -> tuple[list[DeliveryEvent], int]:
    if not isinstance(document, dict) or not isinstance(document.get("RecordType"), str):
        raise Malformed("a Postmark webhook body is a JSON object with a RecordType")
    record = document["RecordType"]
    if record not in TIMES:
        return [], 1  # SubscriptionChange, Inbound, a new kind
    bounce_kind = document.get("Type") if record in ("Bounce", "SpamComplaint") else None
    event_type, bounce_type = {"Delivery": "delivered", "Open": "opened", "Click": "clicked",
                               "SpamComplaint": "complained"}.get(record, "bounced"), None
    if record == "Bounce":
        if bounce_kind in COMPLAINTS:
            event_type = "complained"
        elif bounce_kind in NOT_SENT:
            event_type = "rejected"
        elif bounce_kind in BOUNCES:
            bounce_type = BOUNCES[bounce_kind]
        else:
            return [], 1  # delays (Transient, DnsError), auto-responders, address changes…
    recipient = document.get("Email") or document.get("Recipient")
    if not isinstance(recipient, str) or not recipient:
        raise Malformed(f"{record} record without Email or Recipient")
    postmark_id = document.get("MessageID")
    reference = message_reference(document.get("Metadata"), postmark_id if isinstance(postmark_id, str) else None)
    if not reference:
        raise Malformed(f"{record} record names no message (Metadata.campaign_message_id or MessageID)")
    occurred_at = iso_time(document.get(TIMES[record]), f"{record} {TIMES[record]}")
    if record in ("Bounce", "SpamComplaint") and document.get("ID") is not None:
        event_id = f"postmark:bounce:{document['ID']}"
    else:
        event_id = f"postmark:{content_id(record, postmark_id, recipient, document.get(TIMES[record]), document.get('OriginalLink'))}"
    detail = keep({
        "recipient": recipient, "postmark_type": bounce_kind, "description": document.get("Description"),
        "diagnostic_code": document.get("Details"), "postmark_message_id": postmark_id,
        "url": document.get("OriginalLink"), "user_agent": document.get("UserAgent"),
        "message_stream": document.get("MessageStream"),
    })
    if bounce_type:
        detail["bounce_class"] = "permanent" if bounce_type == "Permanent" else "policy" if bounce_kind in (
            "Blocked", "DMARCPolicy") else "temporary"
    return [DeliveryEvent(
        provider_message_id=reference,
        channel="email",
        event_type=event_type,
        occurred_at=occurred_at,
        provider_event_id=event_id,
        recipient=recipient,
        bounce_type=bounce_type,
        detail=detail,
    )], 0
