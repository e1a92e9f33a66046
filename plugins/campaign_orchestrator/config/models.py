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

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

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
    after: list[str] = Field(
        default_factory=list,
        description="Run when these campaigns' runs have succeeded (their end signals an Airflow Asset)",
    )
    on_data: list[str] = Field(
        default_factory=list,
        description="Run when these store tables (schema.table) have new data: the ingestion that loads "
        "them updates the Asset campaign-store://<schema>/<table>",
    )

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
        if self.after or self.on_data:
            chosen.append("after/on_data")
        if len(chosen) != 1:
            raise ValueError(
                "give exactly one of: a cron expression ('0 9 * * 1'), a preset "
                f"({', '.join(SCHEDULE_PRESETS)}), 'manual', {{once: 2026-12-01T09:00}}, "
                "or assets: {after: [campaign_id]} and/or {on_data: [schema.table]}"
            )
        for campaign_id in self.after:
            if not re.match(IDENTIFIER, campaign_id):
                raise ValueError(f"after: {campaign_id!r} is not a campaign id")
        for table in self.on_data:
            if not re.match(r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$", table):
                raise ValueError(f"on_data: {table!r} must be schema.table, e.g. crm.booking")
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


OPERATORS = (
    "eq", "ne", "lt", "lte", "gt", "gte", "in", "not_in", "between", "is_null", "like", "ilike",
    "within_next_days", "within_last_days",
)
_FIELD_PATH = re.compile(r"^[a-z_][a-z0-9_]{0,62}(\.[a-z_][a-z0-9_]{0,62})?$")


def _check_conditions(where: dict[str, Any]) -> dict[str, Any]:
    for field_path, condition in where.items():
        if not _FIELD_PATH.match(field_path):
            raise ValueError(f"{field_path!r} is not a field or entity.field name")
        if isinstance(condition, dict):
            if len(condition) != 1 or next(iter(condition)) not in OPERATORS:
                raise ValueError(
                    f"{field_path}: {condition!r} must be one operator and its value, e.g. {{lte: 5}}; "
                    f"operators: {', '.join(OPERATORS)}"
                )
            op, value = next(iter(condition.items()))
            if op in ("in", "not_in") and not isinstance(value, list):
                raise ValueError(f"{field_path}: {op} takes a list")
            if op == "between" and not (isinstance(value, list) and len(value) == 2):
                raise ValueError(f"{field_path}: between takes [low, high]")
            if op in ("within_next_days", "within_last_days") and not (isinstance(value, int) and value >= 0):
                raise ValueError(f"{field_path}: {op} takes a number of days")
    return where


class EntityBlock(StrictModel):
    """Members found by conditions on any catalog entity, brought back to the profile.

    ``where`` maps a field of the entity, or ``linked_entity.field``, to a value (equality)
    or to one operator (``{lte: 5}``, ``{in: [a, b]}``, ``{within_next_days: 7}``…); all must
    hold. ``any_of`` adds groups of which at least one must hold.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_: str = Field(alias="from", pattern=IDENTIFIER, description="Catalog entity the block starts from")
    where: dict[str, Any] = Field(default_factory=dict)
    any_of: list[dict[str, Any]] = Field(default_factory=list)
    via: list[str] = Field(default_factory=list, description="Entities to pass through on the way to the profile")
    entity_key: str | None = Field(
        default=None, description="Entity on the path whose key makes one message per entity (e.g. booking)"
    )

    _conditions = field_validator("where")(classmethod(lambda cls, v: _check_conditions(v)))

    @field_validator("any_of")
    @classmethod
    def _groups(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for group in value:
            _check_conditions(group)
        return value


class SqlBlock(StrictModel):
    """Members returned by a SELECT under include/sql/ (profile_id, and entity_key if it says so)."""

    sql: str
    params: dict[str, Any] = Field(default_factory=dict)
    returns_entity_key: bool = False

    _path = field_validator("sql")(classmethod(lambda cls, v: _check_sql_path(v)))


def _check_sql_path(value: str) -> str:
    if not value.endswith(".sql"):
        raise ValueError(f"{value!r} must name a .sql file under include/sql/, e.g. audiences/lapsed.sql")
    if value.startswith("/") or ".." in value.split("/"):
        raise ValueError(f"{value!r} must be a relative path inside include/sql/")
    return value


class SavedBlock(StrictModel):
    """Members of a saved audience: its latest version, or a pinned one."""

    saved: str = Field(pattern=IDENTIFIER, description="Name the audience was saved under")
    version: int | Literal["latest"] = "latest"


def _block_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "sql" if "sql" in value else "saved" if "saved" in value else "entity"
    return {SqlBlock: "sql", SavedBlock: "saved"}.get(type(value), "entity")


AudienceBlock = Annotated[
    Annotated[EntityBlock, Tag("entity")] | Annotated[SqlBlock, Tag("sql")] | Annotated[SavedBlock, Tag("saved")],
    Discriminator(_block_kind),
]


class SaveAs(StrictModel):
    """Save each run's evaluated audience as a new version of a named saved audience."""

    name: str = Field(pattern=IDENTIFIER)
    retention: Duration | None = Field(default=None, description="Versions older than this are deleted; null: keep")

    @field_validator("retention", mode="before")
    @classmethod
    def _retention(cls, value: Any) -> timedelta | None:
        return None if value is None else parse_duration(value)


class Combine(StrictModel):
    """How blocks make the audience: the union of ``union`` blocks, kept only if in every
    ``intersect`` block, minus anyone in an ``exclude`` block (by profile)."""

    union: list[str] = Field(min_length=1)
    intersect: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)


class Holdout(StrictModel):
    """A random control group by deterministic hash of the profile id: held-out members get
    a ledger row with status held_out and no message, so a report can compute lift."""

    percent: float = Field(gt=0, lt=100)
    salt: str = Field(default="holdout", description="Change it to draw a new group")


class Split(StrictModel):
    """Percentages of the (non-held-out) audience, by deterministic hash; a step with
    ``segment: name`` targets only that segment (A/B content variants)."""

    segments: dict[str, float] = Field(min_length=2)
    salt: str = "split"

    @model_validator(mode="after")
    def _sum(self) -> Split:
        total = sum(self.segments.values())
        if abs(total - 100) > 1e-6 or any(v <= 0 for v in self.segments.values()):
            raise ValueError(f"split percentages must be positive and add up to 100 (they add up to {total:g})")
        for name in self.segments:
            if not re.match(IDENTIFIER, name):
                raise ValueError(f"segment name {name!r} must be lower-case letters, digits and _")
        return self


class Audience(StrictModel):
    """Who the campaign targets: one SQL file (``sql`` + ``params``), or named ``blocks``
    (SQL or declarative, from any catalog entity) combined with ``combine``.

    ``sql`` is a SELECT under ``include/sql/`` returning a ``profile_id`` column (and
    optionally ``entity_key`` for one message per entity). Values go in ``params`` and are
    bound by the driver, referenced in the file as ``%(name)s``.
    """

    sql: str | None = Field(default=None, description="Path of the audience SELECT, relative to include/sql/")
    params: dict[str, Any] = Field(default_factory=dict)
    blocks: dict[str, AudienceBlock] = Field(default_factory=dict)
    combine: Combine | None = None
    holdout: Holdout | None = None
    split: Split | None = None
    save_as: SaveAs | None = None

    @field_validator("sql")
    @classmethod
    def _sql_path(cls, value: str | None) -> str | None:
        return None if value is None else _check_sql_path(value)

    @model_validator(mode="after")
    def _one_source(self) -> Audience:
        if (self.sql is None) == (not self.blocks):
            raise ValueError("give either sql (one SELECT file) or blocks (named audience blocks), not both or neither")
        if self.params and self.sql is None:
            raise ValueError("params belong to sql; with blocks, give each block its own params")
        for name in self.blocks:
            if not re.match(IDENTIFIER, name):
                raise ValueError(f"block name {name!r} must be lower-case letters, digits and _")
        if self.combine is not None:
            for group in ("union", "intersect", "exclude"):
                for ref in getattr(self.combine, group):
                    if ref not in self.blocks:
                        raise ValueError(
                            f"combine.{group}: unknown block {ref!r}; blocks: {', '.join(self.blocks) or 'none'}"
                        )
        return self


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
    late_run_tolerance: Duration | None = Field(
        default=timedelta(hours=2),
        description="A scheduled run starting later than this after its time (e.g. the DAG was "
        "unpaused days later) is skipped instead of sending a stale campaign; null: always send",
    )
    on_uncertain: Literal["skip", "resend"] = Field(
        default="skip",
        description=(
            "What a retried batch does with messages whose send outcome was lost in a crash: "
            "skip (report as uncertain; at most once) or resend (at least once)"
        ),
    )

    @field_validator("retry_delay", "send_window", "late_run_tolerance", mode="before")
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
    def _segments_exist(self) -> CampaignConfig:
        segments = set(self.audience.split.segments) if self.audience.split else set()
        for index, step in enumerate(self.steps):
            if step.segment is not None and step.segment not in segments:
                raise ValueError(
                    f"steps[{index}].segment: unknown segment {step.segment!r}; audience.split has "
                    f"{', '.join(sorted(segments)) or 'no segments'}"
                )
        return self

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
