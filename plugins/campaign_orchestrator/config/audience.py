"""Who a campaign targets: an SQL file, or named blocks (SQL, saved audiences, declarative
filters on any catalog entity) combined, with holdout, split and save-as."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from campaign_orchestrator.config.base import IDENTIFIER, Duration, OrderBy, StrictModel, parse_duration

OPERATORS = (
    "eq", "ne", "lt", "lte", "gt", "gte", "in", "not_in", "between", "is_null", "like", "ilike",
    "within_next_days", "within_last_days", "within_next_calendar_days", "within_last_calendar_days",
)
DAY_WINDOWS = ("within_next_days", "within_last_days", "within_next_calendar_days", "within_last_calendar_days")
"""Operators of a window of days around now; see the README's "Dates and time windows"."""
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
            if op in DAY_WINDOWS and not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
                raise ValueError(f"{field_path}: {op} takes a number of days")
    return where


Conditions = Annotated[dict[str, Any], AfterValidator(_check_conditions)]
"""``{field: value}`` or ``{field: {operator: value}}``, checked for known operators."""


class EntityBlock(StrictModel):
    """Members found by conditions on any catalog entity, brought back to the profile.

    ``where`` maps a field of the entity, or ``linked_entity.field``, to a value (equality)
    or to one operator (``{lte: 5}``, ``{in: [a, b]}``, ``{within_next_days: 7}``…); all must
    hold. ``any_of`` adds groups of which at least one must hold.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_: str = Field(alias="from", pattern=IDENTIFIER, description="Catalog entity the block starts from")
    where: Conditions = Field(default_factory=dict)
    any_of: list[Conditions] = Field(default_factory=list)
    via: list[str] = Field(default_factory=list, description="Entities to pass through on the way to the profile")
    entity_key: str | None = Field(
        default=None, description="Entity on the path whose key makes one message per entity (e.g. booking)"
    )


class SqlBlock(StrictModel):
    """Members returned by a SELECT under include/sql/ (profile_id, and entity_key if it says so)."""

    sql: SqlPath
    params: dict[str, Any] = Field(default_factory=dict)
    returns_entity_key: bool = False


def _check_sql_path(value: str) -> str:
    if not value.endswith(".sql"):
        raise ValueError(f"{value!r} must name a .sql file under include/sql/, e.g. audiences/lapsed.sql")
    if value.startswith("/") or ".." in value.split("/"):
        raise ValueError(f"{value!r} must be a relative path inside include/sql/")
    return value


SqlPath = Annotated[str, AfterValidator(_check_sql_path)]
"""A ``.sql`` file relative to include/sql/."""


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


class SplitRule(StrictModel):
    """One rule of a split by rules: the members it takes join ``segment``.

    ``where`` holds conditions on profile fields (or ``linked_entity.field``), with the
    operators of declarative blocks; ``top: N`` with ``order_by`` takes only the first N of
    them (ties broken by profile id). A rule with neither is the catch-all: everyone left.
    """

    segment: str = Field(pattern=IDENTIFIER)
    where: Conditions = Field(default_factory=dict, description="Conditions on profile fields; all must hold")
    top: int | None = Field(default=None, ge=1, description="Take only the first N members by order_by")
    order_by: OrderBy = Field(
        default=None, description="Profile columns ordering a top rule, e.g. 'created_at desc, last_name'"
    )

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

    sql: SqlPath | None = Field(default=None, description="Path of the audience SELECT, relative to include/sql/")
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
