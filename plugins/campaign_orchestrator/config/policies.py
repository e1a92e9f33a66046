"""Limits and rules: one campaign's guardrails, and the rules every campaign obeys
(``dags/campaigns/_policies.yaml``: frequency caps and quiet hours, applied at send time by
``run/policies.py``)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from campaign_orchestrator.config.base import StrictModel, parse_duration
from campaign_orchestrator.config.errors import ConfigError, read_yaml_file, validation_problems

POLICIES_FILE = "_policies.yaml"


class Guardrails(StrictModel):
    """Limits that stop a run before it sends, unless an operator overrides them."""

    max_audience: int | None = Field(
        default=None, ge=1, description="A run whose audience is larger fails before sending"
    )
    max_error_rate: float = Field(
        default=0.2,
        gt=0,
        le=1,
        description="Circuit breaker: a batch whose failed share exceeds this stops the run",
    )
    error_rate_min_messages: int = Field(
        default=50, ge=1, description="Messages a batch must have attempted before the breaker may trip"
    )
    max_messages_per_profile: int | None = Field(
        default=None,
        ge=1,
        description="With one message per entity: a profile gets at most this many per step and run; "
        "the rest are excluded (max_messages_per_profile)",
    )


class FrequencyCap(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: Literal["email", "sms", "push", "direct_mail", "webhook"]
    purpose: Literal["marketing", "transactional"] | None = Field(default=None, description="None: both")
    max: int = Field(ge=0)
    per: timedelta

    @field_validator("per", mode="before")
    @classmethod
    def _per(cls, value: Any) -> timedelta:
        return parse_duration(value)

    def applies_to(self, channel: str, purpose: str) -> bool:
        return self.channel == channel and (self.purpose is None or self.purpose == purpose)


class QuietHours(BaseModel):
    """No message on ``channels`` between ``start`` and ``end`` in the recipient's local time
    (a window may cross midnight). ``fallback: defer`` sends them once the window ends, within
    the run's send window; ``discard`` excludes them as quiet_hours. Both are reported."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: list[Literal["email", "sms", "push", "webhook"]] = Field(min_length=1)
    start: str = Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    end: str = Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    fallback: Literal["defer", "discard"] = "defer"


class SoftBounces(BaseModel):
    """An address is suppressed (``soft_bounce``) once it has soft-bounced on
    ``suppress_after`` distinct messages within ``within`` (feedback/ingest.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    suppress_after: int = Field(default=3, ge=1)
    within: timedelta = Field(default=timedelta(days=30))

    @field_validator("within", mode="before")
    @classmethod
    def _within(cls, value: Any) -> timedelta:
        return parse_duration(value)


DEFAULT_QUIET_HOURS = (QuietHours(channels=["sms", "push"], start="21:00", end="08:00", fallback="defer"),)


class Policies(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    frequency_caps: list[FrequencyCap] = Field(default_factory=list)
    quiet_hours: list[QuietHours] | None = Field(
        default=None, description="None: the default (no SMS or push between 21:00 and 08:00, deferred)"
    )
    soft_bounces: SoftBounces = Field(default_factory=SoftBounces)

    def quiet_rules(self, channel: str) -> list[QuietHours]:
        rules = DEFAULT_QUIET_HOURS if self.quiet_hours is None else self.quiet_hours
        return [r for r in rules if channel in r.channels]


def load_policies(config_dir: Path) -> Policies:
    """The rules of ``_policies.yaml`` in ``config_dir`` (none: the defaults). Raises
    ValueError naming the file, line and field: a broken rules file must stop sends, not be
    ignored. ``campaigns validate`` and DAG parsing report it first (:func:`policies_error`)."""
    error = policies_error(config_dir)
    if error is not None:
        raise ValueError(error.render())
    path = config_dir / POLICIES_FILE
    if not path.is_file():
        return Policies()
    parsed = read_yaml_file(path, "rules (frequency_caps, quiet_hours)")
    return Policies() if isinstance(parsed, ConfigError) else Policies.model_validate(parsed[1])


def policies_error(config_dir: Path) -> ConfigError | None:
    """What is wrong with ``_policies.yaml``, located (file:line: field), or None."""
    path = config_dir / POLICIES_FILE
    if not path.is_file():
        return None
    parsed = read_yaml_file(path, "rules (frequency_caps, quiet_hours)")
    if isinstance(parsed, ConfigError):
        if parsed.problems[0].message.startswith("file is empty"):
            return None  # an empty rules file: no caps, the default quiet hours
        return ConfigError(path, "_policies", parsed.problems)
    node, raw = parsed
    try:
        Policies.model_validate(raw)
    except ValidationError as exc:
        return ConfigError(path, "_policies", tuple(validation_problems(exc, node, Policies)))
    return None
