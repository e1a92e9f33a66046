"""A pixel load or a click as a delivery event, stored through the feedback ingestion.

Idempotency (``provider_event_id``): one ``opened`` row per message
(``track:open:<run>:<step>:<profile>:<entity>``) and one ``clicked`` row per message and link
(``track:click:<link>:…``). Further hits are not counted: they add nothing, except that a
person's hit turns a machine's row into a person's (see ``ingest_delivery_events.sql``),
which is what conditions read. The event is matched to its ledger row by the key the token
carries, so it works whichever provider sent the message (SES stores its own message id).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

from campaign_orchestrator.feedback.ingest import ingest_events
from campaign_orchestrator.feedback.parse import DeliveryEvent

if TYPE_CHECKING:
    import psycopg

    from campaign_orchestrator.tracking.tokens import TrackingToken

USER_AGENT_CHARS = 300
"""Of the user agent kept in the event's detail."""


def hit_event(
    token: TrackingToken,
    *,
    url: str | None = None,
    user_agent: str | None = None,
    machine: str | None = None,
    occurred_at: datetime | None = None,
) -> DeliveryEvent:
    """The event of one hit of a genuine ``token``.

    :param url: the destination of a click.
    :param user_agent: the request's User-Agent, kept (truncated) in ``detail``.
    :param machine: why no person made it (:func:`~campaign_orchestrator.tracking.machine.classify`).
    """
    key = token.key
    ref = f"{key.run_key}:{key.step_id}:{key.profile_id}:{key.entity_key}"
    detail: dict[str, object] = {"source": "tracking"}
    if token.kind == "click":
        event_type, event_id = "clicked", f"track:click:{token.link}:{ref}"
        detail.update(link=token.link, url=url)
    else:
        event_type, event_id = "opened", f"track:open:{ref}"
    if user_agent:
        detail["user_agent"] = user_agent[:USER_AGENT_CHARS]
    if machine:
        detail["machine"] = machine
    return DeliveryEvent(
        provider_message_id="",  # the ledger row's, once matched by key
        channel="email",
        event_type=event_type,
        occurred_at=occurred_at or datetime.now(timezone.utc),
        provider_event_id=event_id,
        detail=detail,
        run_key=key.run_key,
        step_id=key.step_id,
        profile_id=key.profile_id,
        entity_key=key.entity_key,
    )


def record_hit(conn: psycopg.Connection, event: DeliveryEvent) -> bool:
    """Store ``event`` in one short transaction; True if it added or changed a row (False:
    a repeated hit, or a message whose run was deleted)."""
    return ingest_events(conn, [event])["inserted"] > 0


__all__ = ["hit_event", "record_hit"]
