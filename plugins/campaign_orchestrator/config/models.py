"""Typed models of a campaign config file.

Every campaign YAML is validated against :class:`CampaignConfig` before a DAG is built.
Models forbid unknown keys, so a typo is an error naming the field, never a silently
ignored setting.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

IDENTIFIER = r"^[a-z][a-z0-9_]{0,62}$"
SCHEDULE_PRESETS = ("@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly")
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z?LW#]+$")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_duration(value: Any) -> timedelta:
    """Accept ``30s``, ``5m``, ``2h``, ``1d``, a number of seconds, or a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return timedelta(**{_DURATION_UNITS[match.group(2)]: int(match.group(1))})
    raise ValueError(f"{value!r} is not a duration; write e.g. '30s', '5m', '2h' or '1d'")


Duration = Annotated[timedelta, Field(json_schema_extra={"type": "string", "examples": ["5m", "2h"]})]


class OnceSchedule(StrictModel):
    """Run a single time, at ``once`` (in the campaign's time zone unless it carries an offset)."""

    once: datetime


class Schedule(StrictModel):
    """When the Airflow scheduler fires the campaign.

    ``cron`` takes a five-field cron expression or a preset (``@daily``…); ``manual`` means
    only operators (or another campaign) trigger it.
    """

    cron: str | None = None
    once: datetime | None = None
    manual: bool = False

    @model_validator(mode="before")
    @classmethod
    def _from_shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"manual": True} if value.strip() == "manual" else {"cron": value}
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Schedule:
        chosen = [name for name in ("cron", "once") if getattr(self, name) is not None]
        if self.manual:
            chosen.append("manual")
        if len(chosen) != 1:
            raise ValueError(
                "give exactly one of: a cron expression ('0 9 * * 1'), a preset "
                f"({', '.join(SCHEDULE_PRESETS)}), 'manual', or {{once: 2026-12-01T09:00}}"
            )
        return self

    @field_validator("cron")
    @classmethod
    def _cron_shape(cls, value: str | None) -> str | None:
        if value is None:
            return value
        value = value.strip()
        if value.startswith("@"):
            if value not in SCHEDULE_PRESETS:
                raise ValueError(f"unknown preset {value!r}; valid presets: {', '.join(SCHEDULE_PRESETS)}")
            return value
        fields = value.split()
        if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
            raise ValueError(
                f"{value!r} is not a five-field cron expression (minute hour day month weekday), e.g. '0 9 * * 1'"
            )
        return value


class ValidityWindow(StrictModel):
    """The campaign is scheduled only between ``start`` and ``end`` (inclusive dates or datetimes)."""

    start: datetime | date
    end: datetime | date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> ValidityWindow:
        if self.end is not None and _as_datetime(self.end) < _as_datetime(self.start):
            raise ValueError("valid.end is before valid.start")
        return self


def _as_datetime(value: datetime | date) -> datetime:
    return value if isinstance(value, datetime) else datetime(value.year, value.month, value.day)


class Audience(StrictModel):
    """Who the campaign targets.

    ``sql`` is a SELECT file under ``include/sql/`` returning a ``profile_id`` column (and
    optionally ``entity_key`` for one message per entity). Values go in ``params`` and are
    bound by the driver, referenced in the file as ``%(name)s``.
    """

    sql: str = Field(description="Path of the audience SELECT, relative to include/sql/")
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("sql")
    @classmethod
    def _sql_path(cls, value: str) -> str:
        if not value.endswith(".sql"):
            raise ValueError(f"{value!r} must name a .sql file under include/sql/, e.g. audiences/lapsed.sql")
        if value.startswith("/") or ".." in value.split("/"):
            raise ValueError(f"{value!r} must be a relative path inside include/sql/")
        return value


class Guardrails(StrictModel):
    """Limits that stop a run before it sends, unless an operator overrides them."""

    max_audience: int | None = Field(
        default=None, ge=1, description="A run whose audience is larger fails before sending"
    )


class EmailStep(StrictModel):
    """Send one email per audience member (or per entity) on the email channel."""

    id: str = Field(pattern=IDENTIFIER)
    channel: Literal["email"]
    purpose: Literal["marketing", "transactional"] = "marketing"
    template: str = Field(
        description="Folder under include/templates/ holding subject.txt, body.html and body.txt"
    )
    sender: str = Field(description="From address, e.g. 'Acme Travel <news@acme.example>'")
    reply_to: str | None = None
    provider: Literal["smtp", "ses"] = "smtp"
    connection_id: str | None = Field(
        default=None, description="Airflow connection; defaults to smtp_default or aws_default"
    )
    consent: Literal["opt_in", "not_opted_out"] = Field(
        default="opt_in",
        description="opt_in: only profiles that opted in; not_opted_out: unknown consent counts as consent",
    )

    @field_validator("sender", "reply_to")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from email.utils import parseaddr

        _, addr = parseaddr(value)
        if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", addr):
            raise ValueError(f"{value!r} is not an email address like 'Name <news@example.com>'")
        return value


Step = Annotated[EmailStep, Field(discriminator="channel")]


class CampaignConfig(StrictModel):
    """One campaign: a YAML file under ``dags/campaigns/`` becomes one Airflow DAG."""

    id: str = Field(pattern=IDENTIFIER, description="DAG id; lower-case letters, digits and _")
    description: str = ""
    owner: str = "campaigns"
    tags: list[str] = Field(default_factory=list)
    schedule: Schedule
    timezone: str = "UTC"
    valid: ValidityWindow
    audience: Audience
    steps: list[Step] = Field(min_length=1)
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    retries: int = Field(default=3, ge=0, le=20)
    retry_delay: Duration = timedelta(minutes=5)
    guardrails: Guardrails = Guardrails()
    on_uncertain: Literal["skip", "resend"] = Field(
        default="skip",
        description=(
            "What a retried batch does with messages whose send outcome was lost in a crash: "
            "skip (report as uncertain; at most once) or resend (at least once)"
        ),
    )

    @field_validator("retry_delay", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone, e.g. 'Europe/Paris' or 'UTC'") from None
        return value

    @model_validator(mode="after")
    def _unique_step_ids(self) -> CampaignConfig:
        seen: set[str] = set()
        for step in self.steps:
            if step.id in seen:
                raise ValueError(f"two steps have the id {step.id!r}; step ids must be unique")
            seen.add(step.id)
        return self

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)
