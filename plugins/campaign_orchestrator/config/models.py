"""Typed models of a campaign config file.

Every campaign YAML is validated against :class:`CampaignConfig` before a DAG is built.
Models forbid unknown keys, so a typo is an error naming the field, never a silently
ignored setting.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any, Literal, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator

IDENTIFIER = r"^[a-z][a-z0-9_]{0,62}$"
SCHEDULE_PRESETS = ("@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly")
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_ISO_DURATION = re.compile(r"^P(?!$)(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$")
_CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z?LW#]+$")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info: ValidationInfo) -> Any:
        # Pydantic takes YAML's true/false as 1/0: `batch_size: true` would send one message
        # per task. A number field gets a number.
        if isinstance(value, bool) and info.field_name and _number_only(cls, info.field_name):
            raise ValueError(f"{str(value).lower()} is not a number")
        return value


@lru_cache(maxsize=None)
def _number_only(model: type[BaseModel], name: str) -> bool:
    """The field takes int or float, and no bool (or anything) else that true/false could be."""
    leaves, pending = set(), [model.model_fields[name].annotation]
    while pending:
        annotation = pending.pop()
        args = get_args(annotation)
        if args and get_origin(annotation) is not Literal:
            pending.extend(args)
        else:
            leaves.add(annotation)
    return bool(leaves & {int, float}) and not leaves & {bool, Any}


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
        if _ISO_DURATION.match(value):  # ISO 8601 (P2D, PT5M): how a dumped config writes them
            from pydantic import TypeAdapter

            return TypeAdapter(timedelta).validate_python(value)
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
        from croniter import croniter  # Airflow's own cron parser: what it refuses, it refuses later

        if not croniter.is_valid(value):
            raise ValueError(
                f"{value!r} is not a valid cron expression: minute 0-59, hour 0-23, day 1-31, month 1-12 "
                "(or JAN-DEC), weekday 0-6 (or SUN-SAT), e.g. '0 9 * * 1'"
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


_ORDER_BY_TERM = re.compile(r"^\s*([a-z_][a-z0-9_]{0,62})(?:\s+(asc|desc))?\s*$", re.IGNORECASE)


def parse_order_by(value: str) -> list[tuple[str, bool]]:
    """``"lifetime_value desc, created_at"`` -> ``[("lifetime_value", True), ("created_at", False)]``
    (column, descending). Raises ValueError naming the term that is not ``column [asc|desc]``."""
    terms = []
    for term in value.split(","):
        match = _ORDER_BY_TERM.match(term)
        if not match:
            raise ValueError(
                f"order_by {value!r}: {term.strip()!r} is not 'column', 'column asc' or 'column desc' "
                "(column names: lower-case letters, digits and _)"
            )
        terms.append((match.group(1), (match.group(2) or "asc").lower() == "desc"))
    return terms


def _check_order_by(value: str | None) -> str | None:
    if value is not None:
        parse_order_by(value)
    return value


class SplitRule(StrictModel):
    """One rule of a split by rules: the members it takes join ``segment``.

    ``where`` holds conditions on profile fields (or ``linked_entity.field``), with the
    operators of declarative blocks; ``top: N`` with ``order_by`` takes only the first N of
    them (ties broken by profile id). A rule with neither is the catch-all: everyone left.
    """

    segment: str = Field(pattern=IDENTIFIER)
    where: dict[str, Any] = Field(default_factory=dict, description="Conditions on profile fields; all must hold")
    top: int | None = Field(default=None, ge=1, description="Take only the first N members by order_by")
    order_by: str | None = Field(
        default=None, description="Profile columns ordering a top rule, e.g. 'created_at desc, last_name'"
    )

    _conditions = field_validator("where")(classmethod(lambda cls, v: _check_conditions(v)))
    _order = field_validator("order_by")(classmethod(lambda cls, v: _check_order_by(v)))

    @model_validator(mode="after")
    def _top_needs_an_order(self) -> SplitRule:
        if self.top is not None and self.order_by is None:
            raise ValueError(f"segment {self.segment}: top needs order_by (which {self.top} come first?)")
        if self.order_by is not None and self.top is None:
            raise ValueError(f"segment {self.segment}: order_by only orders a top rule; add top: N or remove it")
        return self

    @property
    def catch_all(self) -> bool:
        return not self.where and self.top is None


class Split(StrictModel):
    """Segments of the (non-held-out) audience; a step with ``segment: name`` targets only
    that segment (A/B content variants, tiers, top N).

    ``segments`` splits by percentages, by deterministic hash of the profile id. ``rules``
    splits by ordered rules, first match wins; members matching no rule get no segment
    (steps with a ``segment`` skip them; steps without one still target them)."""

    segments: dict[str, float] | None = Field(default=None, min_length=2)
    rules: list[SplitRule] | None = Field(default=None, min_length=1)
    salt: str = "split"

    @property
    def segment_names(self) -> list[str]:
        return list(self.segments) if self.segments is not None else [r.segment for r in self.rules or []]

    @model_validator(mode="after")
    def _sum(self) -> Split:
        if (self.segments is None) == (self.rules is None):
            raise ValueError(
                "give either segments (percentages, e.g. {a: 50, b: 50}) or rules "
                "(e.g. [{segment: gold, where: {tier: gold}}, {segment: rest}]), not both or neither"
            )
        if self.rules is not None:
            return self._check_rules(self.rules)
        total = sum(self.segments.values())
        if abs(total - 100) > 1e-6 or any(v <= 0 for v in self.segments.values()):
            raise ValueError(f"split percentages must be positive and add up to 100 (they add up to {total:g})")
        for name in self.segments:
            if not re.match(IDENTIFIER, name):
                raise ValueError(f"segment name {name!r} must be lower-case letters, digits and _")
        return self

    def _check_rules(self, rules: list[SplitRule]) -> Split:
        seen: set[str] = set()
        for index, rule in enumerate(rules):
            if rule.segment in seen:
                raise ValueError(f"rules[{index}]: segment {rule.segment!r} is already taken by an earlier rule")
            seen.add(rule.segment)
            if rule.catch_all and index != len(rules) - 1:
                raise ValueError(
                    f"rules[{index}]: segment {rule.segment!r} has no where and no top, so it takes everyone "
                    "left; only the last rule may do that"
                )
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
    entity: str | None = Field(
        default=None,
        pattern=IDENTIFIER,
        description="Catalog entity of the audience's entity keys (e.g. booking), for templates using "
        "entity/entities; inferred from the blocks' entity_key, required when SQL returns the keys",
    )

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
        self.entity_type()
        return self

    def keyed_blocks(self) -> dict[str, str | None]:
        """Blocks whose members carry entity keys, by name, with the entity they name (None
        when an SQL or saved block returns keys of an entity it does not say). Only the union
        blocks count: intersect and exclude blocks match by profile."""
        union = self.combine.union if self.combine else list(self.blocks)
        keyed: dict[str, str | None] = {}
        for name in union:
            block = self.blocks[name]
            if isinstance(block, EntityBlock) and block.entity_key is not None:
                keyed[name] = block.entity_key
            elif isinstance(block, (SqlBlock, SavedBlock)) and getattr(block, "returns_entity_key", True):
                keyed[name] = None
        return keyed

    def entity_type(self) -> str | None:
        """The catalog entity of the audience's entity keys: ``entity``, else the one the
        keyed blocks name. Blocks naming different entities are an error: their keys would
        mix in one ledger key (booking 7 and subscription 7 would be one message)."""
        named = {name: entity for name, entity in self.keyed_blocks().items() if entity is not None}
        kinds = sorted(set(named.values()))
        if len(kinds) > 1:
            listed = ", ".join(f"{name}: {entity}" for name, entity in named.items())
            raise ValueError(
                f"blocks: entity_key names different entities ({listed}); one audience's entity keys must "
                "all be of one entity, so give the blocks the same entity_key or drop it from some"
            )
        if self.entity is not None and kinds and kinds[0] != self.entity:
            raise ValueError(
                f"entity: {self.entity!r}, but the blocks' entity_key is {kinds[0]!r}; make them agree"
            )
        return self.entity or (kinds[0] if kinds else None)


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


def _as_list(value: Any) -> Any:
    """``after: email`` and ``when: {step: email, outcome: opened}`` are lists of one."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


OUTCOMES = ("sent", "delivered", "opened", "clicked", "bounced", "complained", "failed", "excluded")
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
    the campaign's ``conversion`` table for the profile since the run started.
    """

    step: str | None = Field(default=None, pattern=IDENTIFIER, description="An earlier message step")
    outcome: Outcome | None = None
    converted: bool | None = None

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
        return self

    def describe(self) -> str:
        if self.converted is not None:
            return "converted" if self.converted else "not converted"
        return f"{self.step} {self.outcome.replace('_', ' ')}"  # type: ignore[union-attr]


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
    entities_order_by: str | None = Field(
        default=None, description="With message_per: profile, the order of `entities` (e.g. 'starts_on desc')"
    )
    max_entities: int | None = Field(
        default=None, ge=1, description="With message_per: profile, at most this many `entities` per message"
    )
    _entities_order = field_validator("entities_order_by")(classmethod(lambda cls, v: _check_order_by(v)))
    after: list[str] = Field(
        default_factory=list,
        description="Steps (or waits) this step follows: it targets who came through them, once they "
        "are done. Empty: the step starts from the audience. Two steps after the same one fork; "
        "a step after several joins their branches",
    )
    when: list[Condition] = Field(
        default_factory=list,
        description="All must hold, per recipient, when the step is targeted; the others get a ledger "
        "row excluded as condition_not_met and leave this branch",
    )

    _after = field_validator("after", mode="before")(classmethod(lambda cls, v: _as_list(v)))
    _when = field_validator("when", mode="before")(classmethod(lambda cls, v: _as_list(v)))

    @model_validator(mode="after")
    def _entities_options(self) -> StepBase:
        if self.message_per != "profile" and (self.entities_order_by or self.max_entities):
            raise ValueError(
                "entities_order_by and max_entities shape the `entities` list of a step with "
                "message_per: profile; add message_per: profile or remove them"
            )
        return self


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
    after: list[str] = Field(min_length=1, description="The steps the wait follows")
    channel: Literal["wait"] = Field(default="wait", description="Set by the model: a wait sends nothing")

    _after = field_validator("after", mode="before")(classmethod(lambda cls, v: _as_list(v)))

    @field_validator("wait", mode="before")
    @classmethod
    def _wait(cls, value: Any) -> Any:
        return value if isinstance(value, dict) else parse_duration(value)


def _step_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return "wait" if "wait" in value and "channel" not in value else value.get("channel")
    return getattr(value, "channel", None)


MessageStep = EmailStep | SmsStep | PushStep | DirectMailStep | WebhookStep
Step = Annotated[
    Annotated[EmailStep, Tag("email")]
    | Annotated[SmsStep, Tag("sms")]
    | Annotated[PushStep, Tag("push")]
    | Annotated[DirectMailStep, Tag("direct_mail")]
    | Annotated[WebhookStep, Tag("webhook")]
    | Annotated[WaitStep, Tag("wait")],
    Discriminator(_step_kind),
]
STEP_MODELS: dict[str, type[StepBase]] = {
    "email": EmailStep,
    "sms": SmsStep,
    "push": PushStep,
    "direct_mail": DirectMailStep,
    "webhook": WebhookStep,
}


class Conversion(StrictModel):
    """What counts as a conversion for ``{converted: ...}`` conditions: a row of a store table
    for the profile, stamped at or after the run's start."""

    table: str = Field(pattern=r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$", description="schema.table, e.g. crm.booking")
    profile_column: str = Field(default="profile_id", pattern=IDENTIFIER)
    time_column: str = Field(default="created_at", pattern=IDENTIFIER, description="When the conversion happened")


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
    conversion: Conversion | None = Field(
        default=None, description="The store table whose rows are conversions, for {converted: ...} conditions"
    )
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
        segments = set(self.audience.split.segment_names) if self.audience.split else set()
        for index, step in enumerate(self.steps):
            if getattr(step, "segment", None) is not None and step.segment not in segments:
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

    @model_validator(mode="after")
    def _journey(self) -> CampaignConfig:
        from campaign_orchestrator.config.journey import check_journey

        check_journey(self)
        return self

    @property
    def message_steps(self) -> list[MessageStep]:
        """The steps that send (every step but the waits), in file order."""
        return [step for step in self.steps if not isinstance(step, WaitStep)]

    @property
    def waits(self) -> list[WaitStep]:
        return [step for step in self.steps if isinstance(step, WaitStep)]

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)
