"""Render one push step's templates for a recipient into a platform-neutral payload.

The payload is ``{"title", "body", "link", "data"}``; :mod:`.sns` shapes it for APNs or FCM
according to the profile's ``push_platform``, which is therefore always fetched.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from jinja2 import ChoiceLoader, DictLoader

from campaign_orchestrator.channels.base import Outbound, Renderer, RenderRejected
from campaign_orchestrator.channels.registry import CHANNELS
from campaign_orchestrator.channels.sms.render import message_id
from campaign_orchestrator.channels.templating import check_template_fields, require_template_parts, template_environment

if TYPE_CHECKING:
    from collections.abc import Sequence

    from campaign_orchestrator.channels.base import Recipient
    from campaign_orchestrator.channels.templating import TemplateFields
    from campaign_orchestrator.channels.email.render import CampaignInfo
    from campaign_orchestrator.config.channels import PushStep
    from campaign_orchestrator.paths import ProjectPaths

RESERVED_DATA_KEYS = frozenset({"aps", "link"})
"""Keys the APNs payload uses itself; custom data sits beside them."""
PLATFORM_FIELD = "push_platform"


class PushRenderer(Renderer):
    """Renders ``title.txt``, ``body.txt``, the optional ``link.txt`` and each value of
    ``step.data`` (a Jinja string, compiled once in the same sandbox and checked like a file).

    An empty title or body is rejected (``empty_message``); an empty link is None.

    :param step: the push step.
    :param campaign: the campaign; its ``id`` and ``description`` are in the template context.
    :param run_key: the run, part of every message id.
    :param paths: project folders; templates are read from ``paths.templates``.
    :param template: template folder under ``include/templates``; defaults to ``step.template``.
    """

    def __init__(
        self,
        step: PushStep,
        campaign: CampaignInfo,
        run_key: int,
        paths: ProjectPaths,
        template: str | None = None,
    ) -> None:
        self.step = step
        self.run_key = run_key
        self.template = template or step.template
        spec = CHANNELS["push"]
        folder = paths.templates / self.template
        require_template_parts(folder, self.template, spec.template_parts)
        reserved = sorted(RESERVED_DATA_KEYS & set(step.data))
        if reserved:
            raise ValueError(f"step {step.id!r}: data keys {', '.join(reserved)} are reserved for the push payload")
        parts = [*spec.template_parts, *(p for p in spec.optional_parts if (folder / p).is_file())]
        names = {part.split(".")[0]: f"{self.template}/{part}" for part in parts}
        env = template_environment(paths.templates)
        # The data strings are checked like files: through an overlay that can also load them.
        sources = {f"{self.template}/data.{key}": value for key, value in step.data.items()}
        checking = env.overlay(loader=ChoiceLoader([DictLoader(sources), env.loader]))  # type: ignore[list-item]
        self._template_fields = check_template_fields(checking, [*names.values(), *sources])
        self._fields = tuple(sorted({*self._template_fields.profile, PLATFORM_FIELD}))
        self._parts = {key: env.get_template(name) for key, name in names.items()}
        self._data = {key: env.from_string(value) for key, value in step.data.items()}
        self._campaign = {"id": campaign.id, "description": campaign.description}

    @property
    def profile_fields(self) -> Sequence[str]:
        return self._fields

    @property
    def template_fields(self) -> TemplateFields:
        return replace(self._template_fields, profile=self._fields)

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
        context = self.context(recipient, mid)
        title = self._parts["title"].render(context).strip()
        body = self._parts["body"].render(context).strip()
        if not title or not body:
            raise RenderRejected("empty_message", f"{self.template}: the {'title' if not title else 'body'} is empty")
        link = self._parts["link"].render(context).strip() if "link" in self._parts else ""
        payload = {
            "title": title,
            "body": body,
            "link": link or None,
            "data": {key: template.render(context) for key, template in self._data.items()},
        }
        return Outbound(recipient=recipient, payload=payload, message_id=mid)
