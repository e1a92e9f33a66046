"""Render one email step's templates for a recipient into wire-ready MIME bytes."""

from __future__ import annotations

import hashlib
import uuid
from typing import TYPE_CHECKING, Any, Protocol

from campaign_orchestrator.channels.base import Outbound, Renderer, RenderRejected
from campaign_orchestrator.channels.email.mime import MimeBuilder
from campaign_orchestrator.channels.registry import template_parts
from campaign_orchestrator.channels.templating import check_template_fields, require_template_parts, template_environment
from campaign_orchestrator.tracking.rewrite import LinkTracker
from campaign_orchestrator.tracking.settings import TrackingNotConfigured
from campaign_orchestrator.tracking.settings import load_settings as load_tracking_settings
from campaign_orchestrator.unsubscribe.tokens import UnsubscribeNotConfigured, email_link, expiry, load_settings

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from campaign_orchestrator.channels.base import Recipient
    from campaign_orchestrator.channels.templating import TemplateFields
    from campaign_orchestrator.config.channels import EmailStep
    from campaign_orchestrator.paths import ProjectPaths
    from campaign_orchestrator.tracking.settings import TrackingSettings
    from campaign_orchestrator.unsubscribe.tokens import UnsubscribeSettings

MESSAGE_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/campaign-orchestrator/message-id")
"""Fixed forever: Message-IDs of past runs must stay reproducible."""
_NAMESPACE_BYTES = MESSAGE_ID_NAMESPACE.bytes
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
"""First hex digit of the clock_seq field: its top two bits set to the RFC 4122 variant (10)."""


class CampaignInfo(Protocol):
    id: str
    description: str


def message_uuid(name: str) -> str:
    """``str(uuid.uuid5(MESSAGE_ID_NAMESPACE, name))``, a quarter of its cost: the same SHA-1
    of namespace and name, formatted without building a :class:`uuid.UUID`."""
    digits = hashlib.sha1(_NAMESPACE_BYTES + name.encode("utf-8")).hexdigest()
    # The first 16 bytes, with the version (5) in the 13th digit and the variant in the 17th.
    return (
        f"{digits[:8]}-{digits[8:12]}-5{digits[13:16]}-{_VARIANT[digits[16]]}{digits[17:20]}-{digits[20:32]}"
    )


def message_id(run_key: int, step_id: str, profile_id: int, entity_key: str, domain: str) -> str:
    """The same message always gets the same Message-ID, across retries and attempts, so
    a message resent after an uncertain outcome can be recognised as a duplicate."""
    return f"<{message_uuid(f'{run_key}:{step_id}:{profile_id}:{entity_key}')}@{domain}>"


class EmailRenderer(Renderer):
    """Renders ``subject.txt``, ``body.txt`` and ``body.html`` of a step's template folder.

    Templates are checked (only known names, profile fields named statically) and compiled
    once, here; :meth:`render` only renders and assembles.

    :param step: the email step.
    :param campaign: the campaign; its ``id`` and ``description`` are in the template context.
    :param run_key: the run, part of every Message-ID.
    :param paths: project folders; templates are read from ``paths.templates``.
    :param template: template folder under ``include/templates``; defaults to ``step.template``.
    :param headers: extra headers identical for every message (e.g. ``X-Campaign``).
    :param unsubscribe: signing settings for the one-click unsubscribe link; by default a
        marketing step reads the ``campaign_unsubscribe`` connection here (at send time).
        Every marketing message gets ``List-Unsubscribe`` and ``List-Unsubscribe-Post``
        (RFC 8058) and ``unsubscribe_url`` in its template context; without the connection
        each is rejected as ``no_unsubscribe_link``. Transactional messages get neither
        (``unsubscribe_url`` is None) and need no connection.
    :param tracking: signing settings for the open pixel and click links of a step that
        tracks (``step.tracks``); by default read from ``campaign_tracking`` (or
        ``campaign_unsubscribe``) here. Without either each message is rejected as
        ``no_tracking_link``.
    """

    def __init__(
        self,
        step: EmailStep,
        campaign: CampaignInfo,
        run_key: int,
        paths: ProjectPaths,
        template: str | None = None,
        headers: Mapping[str, str] | None = None,
        unsubscribe: UnsubscribeSettings | None = None,
        tracking: TrackingSettings | None = None,
    ) -> None:
        self.step = step
        self.run_key = run_key
        self.template = template or step.template
        folder = paths.templates / self.template
        parts = template_parts("email")
        require_template_parts(folder, self.template, parts)
        env = template_environment(paths.templates)
        names = [f"{self.template}/{part}" for part in parts]
        self._template_fields = check_template_fields(env, names)
        self._fields = self._template_fields.profile
        self._subject, self._html, self._text = (
            env.get_template(f"{self.template}/{part}") for part in ("subject.txt", "body.html", "body.txt")
        )
        self._mime = MimeBuilder(step.sender, step.reply_to, static_headers=headers)
        self._campaign = {"id": campaign.id, "description": campaign.description}
        self._unsubscribe: UnsubscribeSettings | None = None
        self._no_unsubscribe = ""
        if step.purpose == "marketing":
            try:
                self._unsubscribe = unsubscribe or load_settings()
                self._unsubscribe.url("")  # a base URL is needed, not only a secret
            except UnsubscribeNotConfigured as exc:
                self._unsubscribe, self._no_unsubscribe = None, str(exc)
        # One expiry per renderer (a send task): links stay valid validity_days after sending.
        self._expires = expiry(self._unsubscribe) if self._unsubscribe else 0
        self._tracker, self._no_tracker = self._link_tracker(tracking)

    def _link_tracker(self, settings: TrackingSettings | None) -> tuple[LinkTracker | None, str]:
        """The step's link tracker (None when it tracks nothing), or why it cannot have one."""
        tracks = self.step.tracks
        if not (tracks.opens or tracks.clicks):
            return None, ""
        try:
            settings = settings or load_tracking_settings()
            untracked = (self._unsubscribe.url(""),) if self._unsubscribe else ()
            tracker = LinkTracker(
                settings, self.run_key, self.step.id, opens=tracks.opens, clicks=tracks.clicks, untracked=untracked
            )
        except TrackingNotConfigured as exc:
            return None, str(exc)
        return tracker, ""

    @property
    def profile_fields(self) -> Sequence[str]:
        return self._fields

    @property
    def template_fields(self) -> TemplateFields:
        return self._template_fields

    @property
    def envelope_from(self) -> str:
        """The sender's bare address: SMTP ``MAIL FROM`` and the SES ``Source``."""
        return self._mime.envelope_from

    def context(self, recipient: Recipient, message_id: str, unsubscribe_url: str | None = None) -> dict[str, Any]:
        return {
            "profile": recipient.profile,
            "campaign": self._campaign,
            "entity_key": recipient.entity_key,
            "entity": recipient.entity,
            "entities": recipient.entities,
            "message": {"id": message_id},
            "unsubscribe_url": unsubscribe_url,
        }

    def unsubscribe_link(self, recipient: Recipient) -> tuple[str | None, dict[str, str] | None]:
        """The message's one-click URL and RFC 8058 headers; (None, None) when transactional.

        The token names the message by its ledger key ``run_key:step_id:entity_key``.
        """
        if self.step.purpose != "marketing":
            return None, None
        if self._unsubscribe is None:
            raise RenderRejected("no_unsubscribe_link", self._no_unsubscribe)
        ref = f"{self.run_key}:{self.step.id}:{recipient.entity_key}"
        return email_link(self._unsubscribe, recipient.profile_id, self._campaign["id"], ref, self._expires)

    def render(self, recipient: Recipient) -> Outbound:
        mid = message_id(self.run_key, self.step.id, recipient.profile_id, recipient.entity_key, self._mime.domain)
        url, headers = self.unsubscribe_link(recipient)
        context = self.context(recipient, mid, url)
        html = self._html.render(context)
        if self._tracker is not None:
            html = self._tracker.rewrite(html, recipient.profile_id, recipient.entity_key)
        elif self._no_tracker:
            raise RenderRejected("no_tracking_link", self._no_tracker)
        payload = self._mime.build(
            to=recipient.address,
            subject=self._subject.render(context),
            text=self._text.render(context),
            html=html,
            message_id=mid,
            headers=headers,
        )
        return Outbound(recipient=recipient, payload=payload, message_id=mid)
