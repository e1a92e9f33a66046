"""Render one email step's templates for a recipient into wire-ready MIME bytes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from campaign_orchestrator.channels.base import Outbound, RenderRejected
from campaign_orchestrator.channels.email.mime import MimeBuilder
from campaign_orchestrator.channels.messages import email_message_id
from campaign_orchestrator.channels.template_renderer import TemplateRenderer
from campaign_orchestrator.tracking.rewrite import LinkTracker
from campaign_orchestrator.tracking.settings import TrackingNotConfigured
from campaign_orchestrator.tracking.settings import load_settings as load_tracking_settings
from campaign_orchestrator.unsubscribe.tokens import UnsubscribeNotConfigured, email_link, expiry, load_settings

if TYPE_CHECKING:
    from collections.abc import Mapping

    from campaign_orchestrator.channels.base import Recipient
    from campaign_orchestrator.channels.messages import CampaignInfo
    from campaign_orchestrator.config.channels import EmailStep
    from campaign_orchestrator.paths import ProjectPaths
    from campaign_orchestrator.tracking.settings import TrackingSettings
    from campaign_orchestrator.unsubscribe.tokens import UnsubscribeSettings

class EmailRenderer(TemplateRenderer):
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

    channel = "email"

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
        super().__init__(step, campaign, run_key, paths, template)
        self._mime = MimeBuilder(step.sender, step.reply_to, static_headers=headers)
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
    def envelope_from(self) -> str:
        """The sender's bare address: SMTP ``MAIL FROM`` and the SES ``Source``."""
        return self._mime.envelope_from

    def context(self, recipient: Recipient, message_id: str, unsubscribe_url: str | None = None) -> dict[str, Any]:
        return super().context(recipient, message_id, unsubscribe_url=unsubscribe_url)

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
        mid = email_message_id(self.run_key, self.step.id, recipient.profile_id, recipient.entity_key, self._mime.domain)
        url, headers = self.unsubscribe_link(recipient)
        context = self.context(recipient, mid, url)
        variant = self.templates_for(recipient)
        parts = variant.parts
        html = parts["body.html"].render(context)
        if self._tracker is not None:
            html = self._tracker.rewrite(html, recipient.profile_id, recipient.entity_key)
        elif self._no_tracker:
            raise RenderRejected("no_tracking_link", self._no_tracker)
        payload = self._mime.build(
            to=recipient.address,
            subject=parts["subject.txt"].render(context),
            text=parts["body.txt"].render(context),
            html=html,
            message_id=mid,
            headers=headers,
        )
        return Outbound(recipient=recipient, payload=payload, message_id=mid, variant=variant.variant)
