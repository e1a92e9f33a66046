"""What every channel implements: a renderer (profile row -> payload) and a sender.

A sender is opened once per batch (one provider connection per batch, not per message) and
returns one :class:`Outcome` per message it was given, in order, never raising for a
per-message problem: what the provider accepted must be recorded even when a later message
of the same chunk fails. Outcomes:

- ``sent``: accepted by the provider;
- ``failed``: permanently refused (invalid address, unsubscribed…), never retried;
- ``retry``: not accepted, safe to send again (connection refused, throttled, 4xx);
- ``uncertain``: the connection broke after the message was handed over but before the
  provider confirmed it; it is not resent unless the campaign says ``on_uncertain: resend``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence
    from datetime import datetime
    from types import TracebackType

    from campaign_orchestrator.channels.templating import TemplateFields


@dataclass(slots=True)
class Recipient:
    """One message's target, as claimed from the ledger, with the profile fields it needs."""

    profile_id: int
    entity_key: str
    address: str
    profile: dict[str, Any]
    entity: dict[str, Any] | None = None
    """The message's audience entity, with the fields its templates name (one message per entity)."""
    entities: list[dict[str, Any]] | None = None
    """The profile's audience entities, likewise (one message per profile)."""


@dataclass(slots=True)
class Outbound:
    recipient: Recipient
    payload: Any
    """Channel-specific: raw MIME bytes for email, text for SMS, a dict for push…"""
    message_id: str
    units: int | None = None
    """Billable units known at render time (SMS segments)."""
    variant: str | None = None
    """The template variant rendered: ``default`` or a locale (``fr``), see channels/locales.py."""


@dataclass(slots=True, frozen=True)
class Outcome:
    status: Literal["sent", "failed", "retry", "uncertain"]
    provider_message_id: str | None = None
    reason: str | None = None
    """Short code for a failure: 'rejected', 'render_error', …"""
    error: str | None = None
    units: int | None = None
    """Billable units of the message where the channel has them (SMS segments)."""
    disable_address: bool = False
    """The provider says this address is dead (a disabled push endpoint): stop using it."""


class RenderRejected(ValueError):
    """A message that renders but must not be sent (e.g. too many SMS segments); it is
    recorded as failed with ``reason``, and the other messages go on."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class TransientSendError(RuntimeError):
    """Some messages could not be sent for now: the batch stops and the task is retried."""


@dataclass
class RenderFailure:
    recipient: Recipient
    error: str


class Renderer(ABC):
    @property
    @abstractmethod
    def profile_fields(self) -> Sequence[str]:
        """Profile columns the templates reference: all a send fetches (the skinny profile)."""

    @property
    def template_fields(self) -> TemplateFields:
        """Everything the templates read: profile fields and entity paths (what a send fetches)."""
        from campaign_orchestrator.channels.templating import TemplateFields

        return TemplateFields(profile=tuple(self.profile_fields))

    @abstractmethod
    def render(self, recipient: Recipient) -> Outbound: ...


class Sender(ABC):
    """A provider session for one batch."""

    def __enter__(self) -> Sender:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def open(self) -> None:  # noqa: B027 - optional hook
        pass

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    @abstractmethod
    def send(self, messages: Sequence[Outbound]) -> list[Outcome]:
        """Send ``messages``; return one outcome per message, in order."""


@dataclass
class BatchStats:
    sent: int = 0
    failed: int = 0
    excluded_late: int = 0
    uncertain: int = 0
    returned_to_pending: int = 0
    deferred: int = 0
    """Left pending by quiet hours or a send time ahead: a later attempt of the batch sends them."""
    resume_at: datetime | None = None
    """The earliest send time (not_before) among the deferred messages, if any has one."""
    failures: dict[str, int] = field(default_factory=dict)

    def count_failure(self, reason: str) -> None:
        self.failed += 1
        self.failures[reason] = self.failures.get(reason, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "excluded_late": self.excluded_late,
            "uncertain": self.uncertain,
            "returned_to_pending": self.returned_to_pending,
            "deferred": self.deferred,
            "failures": dict(self.failures),
        }


def chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
