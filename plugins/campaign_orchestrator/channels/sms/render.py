"""Render one SMS step's ``sms.txt`` for a recipient, and count what it will cost."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from campaign_orchestrator.channels.base import Outbound, Renderer, RenderRejected
from campaign_orchestrator.channels.email.render import message_uuid
from campaign_orchestrator.channels.registry import template_parts
from campaign_orchestrator.channels.sms.segments import non_gsm7, segments
from campaign_orchestrator.channels.templating import check_template_fields, require_template_parts, template_environment

if TYPE_CHECKING:
    from collections.abc import Sequence

    from campaign_orchestrator.channels.base import Recipient
    from campaign_orchestrator.channels.templating import TemplateFields
    from campaign_orchestrator.channels.email.render import CampaignInfo
    from campaign_orchestrator.config.channels import SmsStep
    from campaign_orchestrator.paths import ProjectPaths


def message_id(run_key: int, step_id: str, profile_id: int, entity_key: str) -> str:
    """The same message always gets the same id (a UUID), across retries and attempts."""
    return message_uuid(f"{run_key}:{step_id}:{profile_id}:{entity_key}")


class SmsRenderer(Renderer):
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

    def __init__(
        self,
        step: SmsStep,
        campaign: CampaignInfo,
        run_key: int,
        paths: ProjectPaths,
        template: str | None = None,
    ) -> None:
        self.step = step
        self.run_key = run_key
        self.max_segments = step.max_segments
        self.template = template or step.template
        folder = paths.templates / self.template
        require_template_parts(folder, self.template, template_parts("sms"))
        env = template_environment(paths.templates)
        name = f"{self.template}/sms.txt"
        self._template_fields = check_template_fields(env, [name])
        self._fields = self._template_fields.profile
        self._text = env.get_template(name)
        self._campaign = {"id": campaign.id, "description": campaign.description}

    @property
    def profile_fields(self) -> Sequence[str]:
        return self._fields

    @property
    def template_fields(self) -> TemplateFields:
        return self._template_fields

    def context(self, recipient: Recipient, message_id: str) -> dict[str, Any]:
        return {
            "profile": recipient.profile,
            "campaign": self._campaign,
            "entity_key": recipient.entity_key,
            "entity": recipient.entity,
            "entities": recipient.entities,
            "message": {"id": message_id},
        }

    def render(self, recipient: Recipient) -> Outbound:
        mid = message_id(self.run_key, self.step.id, recipient.profile_id, recipient.entity_key)
        text = self._text.render(self.context(recipient, mid)).rstrip()
        encoding, count = segments(text)
        if count == 0:
            raise RenderRejected("empty_message", f"{self.template}/sms.txt rendered an empty message")
        if count > self.max_segments:
            why = ""
            if encoding == "UCS-2":
                chars = ", ".join(repr(ch) for ch in non_gsm7(text)[:5])
                why = f"; UCS-2 because of {chars}"
            raise RenderRejected(
                "too_many_segments",
                f"{self.template}/sms.txt rendered {len(text)} characters: {count} segments ({encoding}), "
                f"max {self.max_segments}{why}",
            )
        return Outbound(recipient=recipient, payload=text, message_id=mid, units=count)
