"""What every step has (id, purpose, consent, after, when), and the waits between steps.

The channel steps that send are in ``config/channels.py``; how steps follow each other is
checked by ``config/journey.py``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from campaign_orchestrator.config.base import IDENTIFIER, Duration, ListOf, OrderBy, StrictModel, parse_duration

OUTCOMES = ("sent", "delivered", "opened", "clicked", "bounced", "complained", "failed", "excluded")
MACHINE_OUTCOMES = ("opened", "clicked")
"""Outcomes an open or a click no person made can fake; conditions on them skip those by default."""
Outcome = Literal[
    "sent", "delivered", "opened", "clicked", "bounced", "complained", "failed", "excluded",
    "not_sent", "not_delivered", "not_opened", "not_clicked", "not_bounced", "not_complained", "not_failed",
    "not_excluded",
]


class Condition(StrictModel):
    """A per-recipient condition on an earlier step's outcome, or on a conversion.

    ``{step: welcome_email, outcome: not_opened}``: the recipient's message of that step was not
    opened (by the time this step is targeted, i.e. within the wait before it). Outcomes come
    from the ledger (sent, failed, excluded) and from delivery feedback (delivered, opened,
    clicked, bounced, complained); a click counts as an open. ``{converted: false}``: no row in
    the campaign's ``conversion`` table for the profile since the run started. Opens and clicks
    no person made (privacy proxies, security scanners, hits within a second of sending) do not
    count unless ``include_machine: true``.
    """

    step: str | None = Field(default=None, pattern=IDENTIFIER, description="An earlier message step")
    outcome: Outcome | None = None
    converted: bool | None = None
    include_machine: bool = Field(
        default=False,
        description="With an opened/clicked outcome (or not_…): count opens and clicks marked as machine-made "
        "too (Apple Mail Privacy Protection, security scanners, hits within a second of sending)",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Condition:
        if self.converted is not None:
            if self.step is not None or self.outcome is not None:
                raise ValueError("a condition is either {converted: true|false} or {step: ..., outcome: ...}")
        elif self.step is None or self.outcome is None:
            raise ValueError(
                "a condition needs step and outcome, e.g. {step: welcome_email, outcome: not_opened}, "
                "or converted: true|false"
            )
        if self.include_machine and (self.outcome or "").removeprefix("not_") not in MACHINE_OUTCOMES:
            raise ValueError(
                "include_machine applies to the outcomes opened, clicked, not_opened and not_clicked, "
                f"not to {self.outcome or 'converted'!r}; remove it"
            )
        return self

    def describe(self) -> str:
        if self.converted is not None:
            return "converted" if self.converted else "not converted"
        described = f"{self.step} {self.outcome.replace('_', ' ')}"  # type: ignore[union-attr]
        return described + " (machine opens included)" if self.include_machine else described


LOCALE = r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$"


class Locales(StrictModel):
    """Which locale variant of the step's template folder a profile gets
    (``include/templates/<template>/<locale>/``; see channels/locales.py). The chain for a
    profile's locale: the locale itself (``fr-CA``), its language (``fr``), ``fallback`` of
    either, then ``default``."""

    default: str | None = Field(
        default=None, pattern=LOCALE,
        description="The variant for locales with none of their own (default: the folder's own parts)",
    )
    fallback: dict[str, str] = Field(
        default_factory=dict, description="A locale to try next for a locale (or language) without a variant, "
        "e.g. {ca: es, pt-BR: pt}",
    )

    @field_validator("fallback")
    @classmethod
    def _locales(cls, value: dict[str, str]) -> dict[str, str]:
        for source, target in value.items():
            for name in (source, target):
                if not re.match(LOCALE, str(name)):
                    raise ValueError(f"{name!r} is not a locale like 'fr', 'fr-CA' or 'pt_BR'")
        return value


class StepBase(StrictModel):
    """What every step has: an id, a channel, a purpose, consent rules and a template."""

    id: str = Field(pattern=IDENTIFIER)
    purpose: Literal["marketing", "transactional"] = Field(
        default="marketing",
        description="marketing: opt-in and every business rule apply; transactional: consent is "
        "not required, but hard bounces and complaints still suppress",
    )
    consent: Literal["opt_in", "not_opted_out"] = Field(
        default="opt_in",
        description="opt_in: only profiles that opted in; not_opted_out: unknown consent counts as consent",
    )
    connection_id: str | None = Field(default=None, description="Airflow connection; each channel has a default")
    rate_per_second: float | None = Field(
        default=None,
        gt=0,
        le=100_000,
        description="Messages per second for this step, on top of the provider's shared limit",
    )
    segment: str | None = Field(default=None, description="Only this segment of audience.split gets the step")
    message_per: Literal["profile", "entity"] | None = Field(
        default=None,
        description="entity: one message per audience entity (templates get `entity`); profile: one per "
        "profile (templates get `entities`, the profile's audience entities). Default: entity when "
        "the audience has entity keys, else profile",
    )
    entities_order_by: OrderBy = Field(
        default=None, description="With message_per: profile, the order of `entities` (e.g. 'starts_on desc')"
    )
    max_entities: int | None = Field(
        default=None, ge=1, description="With message_per: profile, at most this many `entities` per message"
    )
    locales: Locales | None = Field(
        default=None, description="Locale variants of the template: {default: en, fallback: {ca: es}}"
    )
    after: Annotated[list[str], ListOf] = Field(
        default_factory=list,
        description="Steps (or waits) this step follows: it targets who came through them, once they "
        "are done. Empty: the step starts from the audience. Two steps after the same one fork; "
        "a step after several joins their branches",
    )
    when: Annotated[list[Condition], ListOf] = Field(
        default_factory=list,
        description="All must hold, per recipient, when the step is targeted; the others get a ledger "
        "row excluded as condition_not_met and leave this branch",
    )

    @model_validator(mode="after")
    def _entities_options(self) -> StepBase:
        if self.message_per != "profile" and (self.entities_order_by or self.max_entities):
            raise ValueError(
                "entities_order_by and max_entities shape the `entities` list of a step with "
                "message_per: profile; add message_per: profile or remove them"
            )
        return self


class WaitUntil(StrictModel):
    """Wait until the next time of day, in each recipient's time zone (or a fixed one)."""

    until: str = Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", description="Local time of day, HH:MM")
    timezone: str = Field(
        default="recipient",
        description="'recipient' (the profile's time_zone, UTC when unknown) or an IANA time zone",
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if value != "recipient":
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"{value!r} is not 'recipient' or an IANA time zone like 'Europe/Paris'") from None
        return value


class WaitStep(StrictModel):
    """Hold the branch: a duration after the steps before it are done, or until a local time
    of day. The wait is deferred (no worker slot is held); the trigger form's ``time_scale``
    compresses it for tests and demos."""

    id: str = Field(pattern=IDENTIFIER)
    wait: Annotated[
        Annotated[Duration, Tag("duration")] | Annotated[WaitUntil, Tag("until")],
        Discriminator(lambda v: "until" if isinstance(v, (dict, WaitUntil)) else "duration"),
    ] = Field(description="'2d', '6h', or {until: '09:00', timezone: recipient}")
    after: Annotated[list[str], ListOf] = Field(min_length=1, description="The steps the wait follows")
    channel: Literal["wait"] = Field(default="wait", description="Set by the model: a wait sends nothing")

    @field_validator("wait", mode="before")
    @classmethod
    def _wait(cls, value: Any) -> Any:
        return value if isinstance(value, dict) else parse_duration(value)
