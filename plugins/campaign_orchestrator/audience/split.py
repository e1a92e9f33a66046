"""Split by rules: ordered rules give each non-held-out member a segment, first match wins.

A run with a split by rules evaluates its audience once into a temporary draft, then runs
one ``INSERT … SELECT`` per rule, in order, into a temporary profile -> segment table: rule k
chooses among the draft's non-held-out profiles (``split_candidate``) not yet in
``split_segment`` those its ``where`` holds for — conditions on profile fields, or on linked
entities (``subscription.status``, an ``EXISTS`` as in declarative blocks), compiled with
SQLAlchemy into parameterized SQL — and for a ``top`` rule only the first N of them by its
``order_by`` (nulls last, ties by profile id). The snapshot is then frozen from the draft
with each profile's segment (include/sql/orchestrator/split_*.sql, run/audience.py): no row
of the snapshot is written twice, all of a profile's entities share its segment, and the
outcome is deterministic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from campaign_orchestrator.audience.compile import AudienceCompileError, EntityBlockCompiler
from campaign_orchestrator.config.audience import EntityBlock
from campaign_orchestrator.config.base import parse_order_by

if TYPE_CHECKING:
    from campaign_orchestrator.audience.catalog import Catalog
    from campaign_orchestrator.config.audience import Split, SplitRule

_PARAM = re.compile(r"%\((\w+)\)s")
_DIALECT = postgresql.psycopg.dialect()


@dataclass(frozen=True)
class SegmentRule:
    """One rule, compiled: ``chosen`` selects the profile ids it takes (values in ``params``)."""

    segment: str
    chosen: str
    params: dict[str, Any]
    catch_all: bool = False
    """No condition and no top: everyone left (only the last rule may be one)."""


def compile_split_rules(split: Split, catalog: Catalog, timezone: str = "UTC") -> list[SegmentRule]:
    """The rules of ``split`` in order; an empty list for a split by percentages."""
    compiled: list[SegmentRule] = []
    for index, rule in enumerate(split.rules or []):
        try:
            compiled.append(_compile(index, rule, catalog, timezone))
        except (KeyError, ValueError) as exc:
            raise AudienceCompileError(
                f"audience.split.rules[{index}]: {exc.args[0] if exc.args else exc}"
            ) from exc
    return compiled


def _compile(index: int, rule: SplitRule, catalog: Catalog, timezone: str) -> SegmentRule:
    order = parse_order_by(rule.order_by) if rule.order_by else []
    on_profile = EntityBlock.model_validate({"from": catalog.profile, "where": rule.where})
    compiler = EntityBlockCompiler(catalog, rule.segment, on_profile, timezone)
    profile, conditions = compiler.where_on("p", tuple(column for column, _ in order))
    key = profile.c[catalog.entity(catalog.profile).key]
    candidate = sa.table("split_candidate", sa.column("profile_id")).alias("candidate")
    taken = sa.table("split_segment", sa.column("profile_id")).alias("taken")
    chosen = (
        sa.select(key.label("profile_id"))
        .select_from(profile.join(candidate, candidate.c.profile_id == key))
        .where(~sa.exists().where(taken.c.profile_id == key), *conditions)
    )
    if rule.top is not None:
        terms = [(profile.c[c].desc() if desc else profile.c[c].asc()).nulls_last() for c, desc in order]
        chosen = chosen.order_by(*terms, key).limit(rule.top)
    statement = chosen.compile(dialect=_DIALECT, compile_kwargs={"render_postcompile": True})
    prefix = f"rule{index}"
    # SQLAlchemy names values per statement (status_1…): prefix them per rule.
    text = _PARAM.sub(lambda m: f"%({prefix}__{m.group(1)})s", str(statement))
    params = {f"{prefix}__{name}": value for name, value in statement.params.items()}
    return SegmentRule(rule.segment, text, params, catch_all=rule.catch_all)
