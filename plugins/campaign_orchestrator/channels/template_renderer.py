"""What the four renderers share: a step's template folder and its locale variants, checked
and compiled once; the profile and entity fields they read; the template context.

Each channel's renderer (``channels/<channel>/render.py``) subclasses :class:`TemplateRenderer`
and only says how its parts become a payload. Templates are checked when the renderer is
built (a send task's start), so a broken one fails the task, not each message; ``render``
only renders. With locale variants (``channels/locales.py``), the profile's ``locale`` is
fetched with the other fields and picks the variant per message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from campaign_orchestrator.channels.base import Renderer, RenderRejected
from campaign_orchestrator.channels.locales import DEFAULT, Variants
from campaign_orchestrator.channels.registry import CHANNELS
from campaign_orchestrator.channels.templating import (
    TemplateCheckError,
    TemplateFields,
    check_template_fields,
    require_template_parts,
    template_environment,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from jinja2 import Environment, Template

    from campaign_orchestrator.channels.base import Recipient
    from campaign_orchestrator.channels.messages import CampaignInfo
    from campaign_orchestrator.paths import ProjectPaths

LOCALE_FIELD = "locale"
"""The profile column that picks a locale variant."""


@dataclass(frozen=True)
class Compiled:
    """One variant's parts, compiled, by file name (``subject.txt``…)."""

    variant: str
    parts: dict[str, Template]


class TemplateRenderer(Renderer):
    """A channel renderer built on a step's template folder.

    :param step: the step (its ``template``, and ``locales`` for variants).
    :param campaign: the campaign; its ``id`` and ``description`` are in the template context.
    :param run_key: the run, part of every message id.
    :param paths: project folders; templates are read from ``paths.templates``.
    :param template: template folder under ``include/templates``; defaults to ``step.template``.
    :param environment: the Jinja environment (default: the sandboxed, autoescaping one).
    """

    channel: ClassVar[str]

    def __init__(
        self,
        step: Any,
        campaign: CampaignInfo,
        run_key: int,
        paths: ProjectPaths,
        template: str | None = None,
        environment: Environment | None = None,
    ) -> None:
        self.step = step
        self.run_key = run_key
        self.template = template or step.template
        spec = CHANNELS[self.channel]
        env = environment or template_environment(paths.templates)
        self.variants = step_variants(step, paths, self.template)
        if not self.variants.variants:
            require_template_parts(paths.templates / self.template, self.template, spec.template_parts)
        self._compiled: dict[str, Compiled] = {}
        fields: list[TemplateFields] = []
        for variant in self.variants.variants:
            folder = paths.templates / self.variants.folder(variant)
            require_template_parts(folder, self.variants.folder(variant), spec.template_parts)
            parts = [*spec.template_parts, *(p for p in spec.optional_parts if (folder / p).is_file())]
            names = [f"{self.variants.folder(variant)}/{part}" for part in parts]
            fields.append(check_template_fields(self.checking_environment(env), [*names, *self.extra_sources()]))
            self._compiled[variant] = Compiled(variant, {part: env.get_template(n) for part, n in zip(parts, names)})
        self._template_fields = _union(fields)
        profile = set(self._template_fields.profile) | set(self.extra_profile_fields())
        if self.variants.localized:
            profile.add(LOCALE_FIELD)
        self._fields = tuple(sorted(profile))
        self._campaign = {"id": campaign.id, "description": campaign.description}

    def checking_environment(self, env: Environment) -> Environment:
        """The environment templates are checked in; a subclass may overlay sources of its own."""
        return env

    def extra_sources(self) -> Sequence[str]:
        """Template names beside the folder's parts to check with them (push's ``data``)."""
        return ()

    def extra_profile_fields(self) -> Sequence[str]:
        """Profile columns the channel needs whatever the templates read (push's platform)."""
        return ()

    @property
    def profile_fields(self) -> Sequence[str]:
        return self._fields

    @property
    def template_fields(self) -> TemplateFields:
        return TemplateFields(
            profile=self._fields,
            entity=self._template_fields.entity,
            entities=self._template_fields.entities,
            uses_entities=self._template_fields.uses_entities,
        )

    def templates_for(self, recipient: Recipient) -> Compiled:
        """The compiled parts of the variant the recipient's locale picks."""
        if not self.variants.localized:
            return self._compiled[DEFAULT]
        choice = self.variants.choose(recipient.profile.get(LOCALE_FIELD))
        if choice.variant is None or choice.variant not in self._compiled:
            raise RenderRejected("no_variant", f"{self.template}: {choice.explain()}")
        return self._compiled[choice.variant]

    def context(self, recipient: Recipient, message_id: str, **extra: Any) -> dict[str, Any]:
        return {
            "profile": recipient.profile,
            "campaign": self._campaign,
            "entity_key": recipient.entity_key,
            "entity": recipient.entity,
            "entities": recipient.entities,
            "message": {"id": message_id},
            **extra,
        }


def step_variants(step: Any, paths: ProjectPaths, template: str | None = None) -> Variants:
    """The locale variants of a step's template folder, with the step's ``locales`` rules."""
    locales = getattr(step, "locales", None)
    spec = CHANNELS[step.channel]
    return Variants.discover(
        paths.templates,
        template or step.template,
        [*spec.template_parts, *spec.optional_parts],
        fallback=locales.fallback if locales else None,
        default=locales.default if locales else None,
    )


def _union(fields: list[TemplateFields]) -> TemplateFields:
    if not fields:
        raise TemplateCheckError("no template parts to render")
    return TemplateFields(
        profile=tuple(sorted({f for t in fields for f in t.profile})),
        entity=tuple(sorted({p for t in fields for p in t.entity})),
        entities=tuple(sorted({p for t in fields for p in t.entities})),
        uses_entities=any(t.uses_entities for t in fields),
    )


__all__ = ["LOCALE_FIELD", "Compiled", "TemplateRenderer", "step_variants"]
