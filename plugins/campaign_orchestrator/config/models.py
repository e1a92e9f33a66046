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
    max_error_rate: float = Field(
        default=0.2,
        gt=0,
        le=1,
        description="Circuit breaker: a batch whose failed share exceeds this stops the run",
    )
    error_rate_min_messages: int = Field(
        default=50, ge=1, description="Messages a batch must have attempted before the breaker may trip"
    )


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


def _check_address(value: str | None) -> str | None:
    if value is None:
        return value
    from email.utils import parseaddr

    _, addr = parseaddr(value)
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", addr):
        raise ValueError(f"{value!r} is not an email address like 'Name <news@example.com>'")
    return value


class EmailStep(StepBase):
    """One email per audience member (or per entity): subject.txt, body.html and body.txt."""

    channel: Literal["email"]
    template: str = Field(
        description="Folder under include/templates/ holding subject.txt, body.html and body.txt"
    )
    sender: str = Field(description="From address, e.g. 'Acme Travel <news@acme.example>'")
    reply_to: str | None = None
    provider: Literal["smtp", "ses"] = "smtp"

    _sender = field_validator("sender", "reply_to")(classmethod(lambda cls, v: _check_address(v)))


class SmsStep(StepBase):
    """One SMS through Amazon SNS: the folder's sms.txt, to the profile's E.164 phone number."""

    channel: Literal["sms"]
    template: str = Field(description="Folder under include/templates/ holding sms.txt")
    provider: Literal["sns"] = "sns"
    sender_id: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9]{1,11}$", description="Alphanumeric sender id, where the country allows"
    )
    origination_number: str | None = Field(default=None, pattern=r"^\+[1-9][0-9]{7,14}$")
    sms_type: Literal["Promotional", "Transactional"] | None = Field(
        default=None, description="SNS SMSType; defaults from purpose"
    )
    max_segments: int = Field(
        default=3, ge=1, le=10, description="A message longer than this many segments fails instead of sending"
    )


class PushStep(StepBase):
    """One push notification through Amazon SNS platform endpoints (APNs and FCM)."""

    channel: Literal["push"]
    template: str = Field(description="Folder under include/templates/ holding title.txt and body.txt (link.txt optional)")
    provider: Literal["sns"] = "sns"
    data: dict[str, str] = Field(default_factory=dict, description="Custom data keys; values are Jinja strings")


class DirectMailStep(StepBase):
    """One extract per run of postal addresses plus personalization fields, with a manifest."""

    channel: Literal["direct_mail"]
    destination: str = Field(description="Folder URL: s3://bucket/prefix (aws connection) or file:///path")
    formats: list[Literal["csv", "parquet"]] = Field(default_factory=lambda: ["csv"], min_length=1)
    fields: list[str] = Field(
        default_factory=lambda: ["first_name", "last_name"],
        description="Profile columns added to the postal address in the extract",
    )

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(IDENTIFIER, name):
                raise ValueError(f"{name!r} is not a column name")
        return value

    @field_validator("destination")
    @classmethod
    def _destination(cls, value: str) -> str:
        if not re.match(r"^(s3|file)://", value):
            raise ValueError(f"{value!r} must be an s3://bucket/prefix or file:///path URL")
        return value.rstrip("/")


class WebhookStep(StepBase):
    """POST JSON to an HTTP endpoint (http connection), signed with HMAC, per message or per batch."""

    channel: Literal["webhook"]
    template: str = Field(description="Folder under include/templates/ holding payload.json")
    endpoint: str = Field(default="", description="Path appended to the connection's host, e.g. /hooks/campaign")
    mode: Literal["per_message", "per_batch"] = "per_message"
    consent_channel: Literal["email", "sms", "push", "direct_mail"] | None = Field(
        default=None, description="Whose consent a marketing webhook needs (required for marketing)"
    )

    @model_validator(mode="after")
    def _marketing_needs_a_consent_channel(self) -> WebhookStep:
        if self.purpose == "marketing" and self.consent_channel is None:
            raise ValueError(
                "a marketing webhook step needs consent_channel (email, sms, push or direct_mail), "
                "or purpose: transactional"
            )
        return self


Step = Annotated[
    EmailStep | SmsStep | PushStep | DirectMailStep | WebhookStep, Field(discriminator="channel")
]
STEP_MODELS: dict[str, type[StepBase]] = {
    "email": EmailStep,
    "sms": SmsStep,
    "push": PushStep,
    "direct_mail": DirectMailStep,
    "webhook": WebhookStep,
}


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
    send_window: Duration | None = Field(
        default=timedelta(hours=12),
        description="Messages not sent this long after the run started are excluded (send_window_expired)",
    )
    on_uncertain: Literal["skip", "resend"] = Field(
        default="skip",
        description=(
            "What a retried batch does with messages whose send outcome was lost in a crash: "
            "skip (report as uncertain; at most once) or resend (at least once)"
        ),
    )

    @field_validator("retry_delay", "send_window", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta | None:
        return None if value is None else parse_duration(value)

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
