"""Render a webhook step's ``payload.json`` for a recipient into a JSON value.

The template is JSON with Jinja expressions in it, and every ``{{ expression }}`` is written
as a JSON literal of its value, never as raw text::

    {"name": {{ profile.first_name }}, "tier": {{ profile.tier }}, "id": {{ profile.profile_id }}}

renders ``{"name": "Ann \\"Nancy\\" O'Hara", "tier": null, "id": 42}``: quotes, backslashes,
newlines and control characters in profile values are escaped by :func:`json.dumps`, so a
value can never break out of its place in the document (no JSON injection). Strings become
JSON strings, numbers numbers, ``None`` ``null``; ``Decimal`` is written as a number,
dates and times as ISO 8601 strings. To build a string from pieces, concatenate inside the
expression (``{{ "Hello " ~ profile.first_name }}``); writing ``"Hello {{ profile.first_name }}"``
puts a quoted string inside a string, which fails validation.

The rendered text is parsed with :func:`json.loads` (``NaN`` and ``Infinity`` refused); a
message whose text is not JSON fails with reason ``invalid_payload`` and the others go on.
Templates render in the same sandbox, with the same static checks, as every other channel
(:mod:`campaign_orchestrator.channels.templating`).
"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, time
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from campaign_orchestrator.channels.base import Outbound, RenderRejected
from campaign_orchestrator.channels.messages import ledger_uuid
from campaign_orchestrator.channels.template_renderer import TemplateRenderer

if TYPE_CHECKING:

    from campaign_orchestrator.channels.base import Recipient
    from campaign_orchestrator.channels.messages import CampaignInfo
    from campaign_orchestrator.config.channels import WebhookStep
    from campaign_orchestrator.paths import ProjectPaths

PAYLOAD = "payload.json"


def json_literal(value: Any) -> str:
    """The JSON text of one template expression's value (the environment's ``finalize``)."""
    if isinstance(value, Decimal) and value.is_finite():
        return str(value)  # exact: a float would round 0.1 + 0.2
    return json.dumps(value, ensure_ascii=False, allow_nan=False, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal) and value.is_finite():
        return float(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    raise TypeError(f"a {type(value).__name__} value cannot be written as JSON")


@lru_cache(maxsize=16)
def _environment(folder: str) -> ImmutableSandboxedEnvironment:
    # No autoescape: escaping is json.dumps in finalize, which sees every expression's value.
    return ImmutableSandboxedEnvironment(
        loader=FileSystemLoader(folder),
        undefined=StrictUndefined,
        autoescape=False,
        finalize=json_literal,
        keep_trailing_newline=False,
    )


def json_template_environment(templates: Path | str) -> ImmutableSandboxedEnvironment:
    """The sandboxed environment whose expressions render as JSON literals; one per folder."""
    return _environment(str(Path(templates).resolve()))


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_payload(text: str, template: str) -> Any:
    """``json.loads`` of a rendered payload, or :class:`RenderRejected` saying where it breaks."""
    try:
        return json.loads(text, parse_constant=_no_constants)
    except ValueError as exc:
        raise RenderRejected("invalid_payload", f"{template} did not render to valid JSON: {exc}") from exc


def webhook_message_id(run_key: int, step_id: str, profile_id: int, entity_key: str) -> str:
    """The message's idempotency key: the same message always gets the same one, across
    retries and attempts."""
    return ledger_uuid(run_key, step_id, profile_id, entity_key)


class WebhookRenderer(TemplateRenderer):
    """Renders ``payload.json`` of a step's template folder into the object the sender POSTs.

    :param step: the webhook step.
    :param campaign: the campaign; its ``id`` and ``description`` are in the template context.
    :param run_key: the run, part of every message id.
    :param paths: project folders; templates are read from ``paths.templates``.
    :param template: template folder under ``include/templates``; defaults to ``step.template``.
    """

    channel = "webhook"

    def __init__(
        self,
        step: WebhookStep,
        campaign: CampaignInfo,
        run_key: int,
        paths: ProjectPaths,
        template: str | None = None,
    ) -> None:
        super().__init__(step, campaign, run_key, paths, template, environment=json_template_environment(paths.templates))

    def render_text(self, recipient: Recipient, message_id: str) -> tuple[str, str, str]:
        """The rendered text, the variant and its template name."""
        variant = self.templates_for(recipient)
        name = f"{self.variants.folder(variant.variant)}/{PAYLOAD}"
        return variant.parts[PAYLOAD].render(self.context(recipient, message_id)), variant.variant, name

    def render(self, recipient: Recipient) -> Outbound:
        mid = webhook_message_id(self.run_key, self.step.id, recipient.profile_id, recipient.entity_key)
        text, variant, name = self.render_text(recipient, mid)
        return Outbound(recipient=recipient, payload=parse_payload(text, name), message_id=mid, variant=variant)
