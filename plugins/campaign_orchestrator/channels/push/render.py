"""Render one push step's templates for a recipient into a platform-neutral payload.

The payload is ``{"title", "body", "link", "data"}``; :mod:`.sns` shapes it for APNs or FCM
according to the profile's ``push_platform``, which is therefore always fetched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jinja2 import ChoiceLoader, DictLoader

from campaign_orchestrator.channels.base import Outbound, RenderRejected
from campaign_orchestrator.channels.messages import ledger_uuid
from campaign_orchestrator.channels.template_renderer import TemplateRenderer
from campaign_orchestrator.channels.templating import template_environment

if TYPE_CHECKING:
    from collections.abc import Sequence

    from jinja2 import Environment

    from campaign_orchestrator.channels.base import Recipient
    from campaign_orchestrator.channels.messages import CampaignInfo
    from campaign_orchestrator.config.channels import PushStep
    from campaign_orchestrator.paths import ProjectPaths

RESERVED_DATA_KEYS = frozenset({"aps", "link"})
"""Keys the APNs payload uses itself; custom data sits beside them."""
PLATFORM_FIELD = "push_platform"


class PushRenderer(TemplateRenderer):
    """Renders ``title.txt``, ``body.txt``, the optional ``link.txt`` and each value of
    ``step.data`` (a Jinja string, compiled once in the same sandbox and checked like a file).

    An empty title or body is rejected (``empty_message``); an empty link is None.

    :param step: the push step.
    :param campaign: the campaign; its ``id`` and ``description`` are in the template context.
    :param run_key: the run, part of every message id.
    :param paths: project folders; templates are read from ``paths.templates``.
    :param template: template folder under ``include/templates``; defaults to ``step.template``.
    """

    channel = "push"

    def __init__(
        self,
        step: PushStep,
        campaign: CampaignInfo,
        run_key: int,
        paths: ProjectPaths,
        template: str | None = None,
    ) -> None:
        reserved = sorted(RESERVED_DATA_KEYS & set(step.data))
        if reserved:
            raise ValueError(f"step {step.id!r}: data keys {', '.join(reserved)} are reserved for the push payload")
        self._data_sources = {f"{template or step.template}/data.{key}": value for key, value in step.data.items()}
        super().__init__(step, campaign, run_key, paths, template)
        env = template_environment(paths.templates)
        self._data = {key: env.from_string(value) for key, value in step.data.items()}

    def checking_environment(self, env: Environment) -> Environment:
        # The data strings are checked like files: through an overlay that can also load them.
        return env.overlay(loader=ChoiceLoader([DictLoader(self._data_sources), env.loader]))  # type: ignore[list-item]

    def extra_sources(self) -> Sequence[str]:
        return list(self._data_sources)

    def extra_profile_fields(self) -> Sequence[str]:
        return (PLATFORM_FIELD,)

    def render(self, recipient: Recipient) -> Outbound:
        mid = ledger_uuid(self.run_key, self.step.id, recipient.profile_id, recipient.entity_key)
        context = self.context(recipient, mid)
        variant = self.templates_for(recipient)
        parts = variant.parts
        title = parts["title.txt"].render(context).strip()
        body = parts["body.txt"].render(context).strip()
        if not title or not body:
            raise RenderRejected("empty_message", f"{self.template}: the {'title' if not title else 'body'} is empty")
        link = parts["link.txt"].render(context).strip() if "link.txt" in parts else ""
        payload = {
            "title": title,
            "body": body,
            "link": link or None,
            "data": {key: template.render(context) for key, template in self._data.items()},
        }
        return Outbound(recipient=recipient, payload=payload, message_id=mid, variant=variant.variant)
