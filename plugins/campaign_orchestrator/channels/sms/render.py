"""Render one SMS step's ``sms.txt`` for a recipient, and count what it will cost."""

from __future__ import annotations

from typing import TYPE_CHECKING

from campaign_orchestrator.channels.base import Outbound, RenderRejected
from campaign_orchestrator.channels.messages import ledger_uuid
from campaign_orchestrator.channels.sms.segments import non_gsm7, segments
from campaign_orchestrator.channels.template_renderer import TemplateRenderer

if TYPE_CHECKING:
    from campaign_orchestrator.channels.base import Recipient
    from campaign_orchestrator.channels.messages import CampaignInfo
    from campaign_orchestrator.config.channels import SmsStep
    from campaign_orchestrator.paths import ProjectPaths


class SmsRenderer(TemplateRenderer):
    """Renders ``sms.txt`` of a step's template folder into the text to send.

    Trailing whitespace (the newline editors add) is dropped, since it would be sent and
    billed. A text of more than ``step.max_segments`` segments is rejected with reason
    ``too_many_segments``, and an empty one with ``empty_message``; the other messages go on.

    :param step: the SMS step.
    :param campaign: the campaign; its ``id`` and ``description`` are in the template context.
    :param run_key: the run, part of every message id.
    :param paths: project folders; templates are read from ``paths.templates``.
    :param template: template folder under ``include/templates``; defaults to ``step.template``.
    """

    channel = "sms"

    def __init__(
        self,
        step: SmsStep,
        campaign: CampaignInfo,
        run_key: int,
        paths: ProjectPaths,
        template: str | None = None,
    ) -> None:
        super().__init__(step, campaign, run_key, paths, template)
        self.max_segments = step.max_segments

    def render(self, recipient: Recipient) -> Outbound:
        mid = ledger_uuid(self.run_key, self.step.id, recipient.profile_id, recipient.entity_key)
        variant = self.templates_for(recipient)
        text = variant.parts["sms.txt"].render(self.context(recipient, mid)).rstrip()
        where = f"{self.variants.folder(variant.variant)}/sms.txt"
        encoding, count = segments(text)
        if count == 0:
            raise RenderRejected("empty_message", f"{where} rendered an empty message")
        if count > self.max_segments:
            why = ""
            if encoding == "UCS-2":
                chars = ", ".join(repr(ch) for ch in non_gsm7(text)[:5])
                why = f"; UCS-2 because of {chars}"
            raise RenderRejected(
                "too_many_segments",
                f"{where} rendered {len(text)} characters: {count} segments ({encoding}), "
                f"max {self.max_segments}{why}",
            )
        return Outbound(recipient=recipient, payload=text, message_id=mid, units=count, variant=variant.variant)
