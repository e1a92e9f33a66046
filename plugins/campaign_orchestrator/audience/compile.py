"""Compile a campaign's audience config into one SELECT of (profile_id, entity_key).

- ``sql``: the campaign's file, its params bound as they are.
- ``blocks``: each block becomes a SELECT of (profile_id, entity_key): a SQL block is its
  file with its params renamed ``<block>__<name>`` so blocks never collide; an entity block
  is built with SQLAlchemy from the entity catalog — conditions on the entity and on linked
  entities (``EXISTS``), then joins along the catalog's links to the profile. ``combine``
  unions, intersects and excludes them in SQL.

Everything stays inside PostgreSQL: the result is spliced as a subquery into the run's
``INSERT … SELECT`` (or a preview's). Values are always bound parameters.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from campaign_orchestrator.audience.catalog import Catalog, Hop, load_catalog
from campaign_orchestrator.config.audience import DAY_WINDOWS

if TYPE_CHECKING:
    from campaign_orchestrator.config.audience import Audience, EntityBlock, SqlBlock
    from campaign_orchestrator.config.campaign import CampaignConfig
    from campaign_orchestrator.paths import ProjectPaths

_PARAM = re.compile(r"%\((\w+)\)s")
_DIALECT = postgresql.psycopg.dialect()


class AudienceCompileError(ValueError):
    """A block cannot be compiled; the message names the block and the field."""


class UnknownAudienceParam(AudienceCompileError):
    """An override (``--param``, the trigger form's ``audience_params``) names no parameter of
    the audience, or one that several blocks have; the message lists the valid names."""


@dataclass
class AudienceQuery:
    """A SELECT returning profile_id (and entity_key when ``has_entity_key``), with params."""

    text: str
    params: dict[str, Any]
    label: str
    """What errors should name: the SQL file, or the campaign's audience blocks."""
    has_entity_key: bool
    source_file: Path | None = None
    """Set when ``text`` is exactly one file, so error positions map to its lines."""
    blocks: dict[str, str] = field(default_factory=dict)
    unique: bool = False
    """No two rows share (profile_id, entity_key) and no entity_key is NULL, by construction:
    the evaluation needs no DISTINCT of its own (see :func:`compile_audience`)."""
    timezone: str = "UTC"
    """The campaign's time zone: the calendar of date windows (``within_next_days``)."""
    block_files: dict[str, Path] | None = None
    """For blocks: the file of each SQL block, by name (errors point into it)."""

    def limited(self, limit: int) -> AudienceQuery:
        """The first ``limit`` members by profile id: an operator's cap for one run."""
        text = f"SELECT * FROM (\n{self.text}\n) AS unlimited ORDER BY profile_id LIMIT %(run_limit)s"
        return AudienceQuery(
            text, {**self.params, "run_limit": limit}, f"{self.label} (limit {limit:,})", self.has_entity_key,
            unique=self.unique, timezone=self.timezone,
        )


def compile_audience(
    config: CampaignConfig, paths: ProjectPaths, overrides: dict[str, Any] | None = None
) -> AudienceQuery:
    """The audience as one SELECT. ``overrides`` set audience parameters for this run (see
    :func:`resolve_params`); an unknown name raises :class:`UnknownAudienceParam`."""
    audience = config.audience
    overrides = resolve_params(config, paths, overrides or {})
    if audience.sql is not None:
        path = paths.sql / audience.sql
        return AudienceQuery(
            read_sql(path), {**audience.params, **overrides}, str(path), has_entity_key=False, source_file=path,
            timezone=config.timezone,
        )
    catalog = load_catalog(paths.root / "include" / "entities.yaml")
    compiled = {
        name: _compile_block(name, block, catalog, paths, overrides, config.timezone)
        for name, block in audience.blocks.items()
    }
    text, params = _combine(audience, compiled)
    from campaign_orchestrator.config.audience import SqlBlock

    # Unique by construction unless a block of the campaign's own SQL is united in: an entity
    # block is unique by its keys (or DISTINCT, see EntityBlockCompiler.select), a saved
    # audience by its primary key, several blocks by the UNION, and intersect and exclude only
    # filter. SQL may repeat a member, or return a NULL entity key beside '' for a profile,
    # which the evaluation's coalesce makes the same member.
    union = audience.combine.union if audience.combine else list(compiled)
    return AudienceQuery(
        text,
        params,
        f"audience blocks of {config.id}",
        has_entity_key=True,
        blocks={name: q.text for name, q in compiled.items()},
        block_files={name: paths.sql / b.sql for name, b in audience.blocks.items() if isinstance(b, SqlBlock)},
        unique=not any(isinstance(audience.blocks[name], SqlBlock) for name in union),
        timezone=config.timezone,
    )


def block_problems(config: CampaignConfig, paths: ProjectPaths) -> list[str]:
    """Every block that does not compile, each with its own message (compilation stops at
    the first, for a run; validation reports them all)."""
    catalog = load_catalog(paths.root / "include" / "entities.yaml")
    problems = []
    for name, block in config.audience.blocks.items():
        try:
            _compile_block(name, block, catalog, paths, {}, config.timezone)
        except AudienceCompileError as exc:
            problems.append(str(exc))
        except (KeyError, ValueError, OSError) as exc:
            problems.append(f"audience.blocks.{name}: {exc.args[0] if exc.args else exc}")
    return problems


def audience_params(config: CampaignConfig, paths: ProjectPaths) -> dict[str, set[str]]:
    """The parameters an override may set: for an SQL audience ``{"": names}``, for blocks
    ``{block: names}`` of each SQL block — its ``params`` and the ``%(name)s`` its file uses."""
    from campaign_orchestrator.config.audience import SqlBlock

    audience = config.audience
    if audience.sql is not None:
        return {"": set(audience.params) | _placeholders(paths.sql / audience.sql)}
    return {
        name: set(block.params) | _placeholders(paths.sql / block.sql)
        for name, block in audience.blocks.items()
        if isinstance(block, SqlBlock)
    }


def resolve_params(config: CampaignConfig, paths: ProjectPaths, overrides: dict[str, Any]) -> dict[str, Any]:
    """Overrides by the names compilation binds: for blocks, ``<block>__<name>``.

    A block's parameter is ``<block>__<name>``, or just ``<name>`` when exactly one block has
    it. A name no parameter has, or one several blocks share, is an error naming the valid
    ones (with "did you mean"): an override that silently changes nothing would send to an
    audience nobody asked for."""
    known = audience_params(config, paths)
    valid = sorted(
        {n for names in known.values() for n in names}
        | {f"{block}__{n}" for block, names in known.items() if block for n in names}
    )
    resolved: dict[str, Any] = {}
    for name, value in overrides.items():
        if "" in known:
            if name not in known[""]:
                raise UnknownAudienceParam(_unknown_param(name, valid, config.id))
            resolved[name] = value
            continue
        block, sep, param = name.partition("__")
        if sep and block in known and param in known[block]:
            resolved[name] = value
            continue
        having = sorted(b for b, names in known.items() if name in names)
        if len(having) > 1:
            raise UnknownAudienceParam(
                f"audience parameter {name!r} is used by blocks {', '.join(having)}: say which, e.g. "
                f"{having[0]}__{name}"
            )
        if not having:
            raise UnknownAudienceParam(_unknown_param(name, valid, config.id))
        resolved[f"{having[0]}__{name}"] = value
    return resolved


def _unknown_param(name: str, valid: list[str], campaign_id: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    listed = ", ".join(valid) if valid else "none (its audience takes no parameters)"
    return f"unknown audience parameter {name!r}{hint} The audience of {campaign_id} has: {listed}"


def _placeholders(path: Path) -> set[str]:
    try:
        return set(_PARAM.findall(path.read_text(encoding="utf-8")))
    except OSError:
        return set()


def read_sql(path: Path) -> str:
    text = path.read_text(encoding="utf-8").strip()
    # The SELECT is spliced in as a subquery, where a trailing semicolon is a syntax error.
    return text.rstrip(";").rstrip()


@dataclass
class _Compiled:
    text: str
    params: dict[str, Any]


def _compile_block(
    name: str,
    block: EntityBlock | SqlBlock,
    catalog: Catalog,
    paths: ProjectPaths,
    overrides: dict[str, Any],
    timezone: str = "UTC",
) -> _Compiled:
    from campaign_orchestrator.config.audience import SavedBlock, SqlBlock

    if isinstance(block, SavedBlock):
        # The version is resolved when the run evaluates; a missing one fails with its name.
        version = None if block.version == "latest" else block.version
        text = (
            "SELECT m.profile_id, m.entity_key FROM campaign.saved_audience_member AS m "
            "WHERE m.saved_id = campaign.saved_audience_id("
            f"%({name}__saved)s, %({name}__version)s::integer)"
        )
        return _Compiled(text, {f"{name}__saved": block.saved, f"{name}__version": version})
    if isinstance(block, SqlBlock):
        text = read_sql(paths.sql / block.sql)
        params = {**block.params, **{k.split("__", 1)[1]: v for k, v in overrides.items() if k.startswith(f"{name}__")}}
        renamed = _PARAM.sub(lambda m: f"%({name}__{m.group(1)})s", text)
        entity_key = "audience.entity_key::text" if block.returns_entity_key else "''"
        # Newlines around spliced SQL: a file ending in a -- comment must not swallow the ")".
        wrapped = f"SELECT audience.profile_id, {entity_key} AS entity_key FROM (\n{renamed}\n) AS audience"
        return _Compiled(wrapped, {f"{name}__{k}": v for k, v in params.items()})
    try:
        select = EntityBlockCompiler(catalog, name, block, timezone).select()
    except (KeyError, ValueError) as exc:
        raise AudienceCompileError(f"audience.blocks.{name}: {exc.args[0] if exc.args else exc}") from exc
    compiled = select.compile(dialect=_DIALECT, compile_kwargs={"render_postcompile": True})
    # SQLAlchemy names parameters per statement (status_1…): prefix them per block.
    text = _PARAM.sub(lambda m: f"%({name}__{m.group(1)})s", str(compiled))
    return _Compiled(text, {f"{name}__{k}": v for k, v in compiled.params.items()})


def _combine(audience: Audience, compiled: dict[str, _Compiled]) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {}
    for block in compiled.values():
        params.update(block.params)
    names = list(compiled)
    union = audience.combine.union if audience.combine else names
    intersect = audience.combine.intersect if audience.combine else []
    exclude = audience.combine.exclude if audience.combine else []
    parts = " UNION ".join(f"SELECT profile_id, entity_key FROM ({compiled[n].text}) AS {n}" for n in union)
    text = f"SELECT combined.profile_id, combined.entity_key FROM ({parts}) AS combined"
    # Blocks of the same entity as the audience's keys match member by member (booking by
    # booking: "upcoming" keeps only the upcoming bookings, not every booking of a traveller
    # who has one); any other block matches by profile.
    by_entity = _entity_matched_blocks(audience, [*intersect, *exclude])

    def key(n: str, alias: str = "") -> str:
        return f"({alias}profile_id, {alias}entity_key)" if n in by_entity else f"{alias}profile_id"

    def same(n: str) -> str:
        pair = f" AND {n}.entity_key = combined.entity_key" if n in by_entity else ""
        return f"{n}.profile_id = combined.profile_id{pair}"

    # NOT EXISTS, not NOT IN: an anti-join at any size (NOT IN falls back to a rescan per row
    # once the excluded profiles outgrow work_mem), and a NULL profile id excludes nobody.
    conditions = [
        f"{key(n, 'combined.')} IN (SELECT {key(n).strip('()')} FROM ({compiled[n].text}) AS {n})" for n in intersect
    ] + [f"NOT EXISTS (SELECT FROM ({compiled[n].text}) AS {n} WHERE {same(n)})" for n in exclude]
    if conditions:
        text += " WHERE " + " AND ".join(conditions)
    return text, params


def _entity_matched_blocks(audience: Audience, names: list[str]) -> set[str]:
    """Intersect/exclude blocks keyed by the same catalog entity as every union block."""
    from campaign_orchestrator.config.audience import EntityBlock

    keyed = audience.keyed_blocks()
    union = audience.combine.union if audience.combine else list(audience.blocks)
    entities = {keyed.get(n, "") for n in union}
    if len(entities) != 1 or None in entities or "" in entities:
        return set()
    (entity,) = entities
    return {
        n for n in names
        if isinstance(audience.blocks[n], EntityBlock) and audience.blocks[n].entity_key == entity
    }


def combine_sql(audience: Audience, sources: dict[str, str]) -> str:
    """``audience.combine`` over other sources of its blocks, each a SELECT of (profile_id,
    entity_key) by block name — e.g. the temporary tables ``campaigns calculate`` evaluates
    each block into once: the same combination a run's audience SELECT makes."""
    text, _ = _combine(audience, {name: _Compiled(source, {}) for name, source in sources.items()})
    return text


class EntityBlockCompiler:
    """SQLAlchemy SELECT for one declarative block.

    :param timezone: the campaign's time zone, the calendar of date windows.
    """

    def __init__(self, catalog: Catalog, name: str, block: EntityBlock, timezone: str = "UTC") -> None:
        self.catalog = catalog
        self.name = name
        self.block = block
        self.timezone = timezone
        self._param = 0
        self._fields = self._referenced_fields()

    def _referenced_fields(self) -> dict[str, set[str]]:
        """Columns each entity needs: its key, its link columns, and the fields conditions name."""
        fields: dict[str, set[str]] = {}
        for name, entity in self.catalog.entities.items():
            fields[name] = {entity.key, *entity.links.values()}
        for name in [self.block.from_, *self.block.via]:
            self.catalog.entity(name)  # an unknown one is an error naming it, with "did you mean"
        for group in [self.block.where, *self.block.any_of]:
            for path in group:
                if "." in path:
                    other, column = path.split(".", 1)
                    self.catalog.entity(other)
                    fields[other].add(column)
                else:
                    fields[self.block.from_].add(path)
        return fields

    def select(self) -> sa.Select:
        block = self.block
        hops = self.catalog.path(block.from_, self.catalog.profile, block.via or None)
        tables = {block.from_: self._table(block.from_, "b0")}
        joined: sa.FromClause = tables[block.from_]
        current = block.from_
        for index, hop in enumerate(hops, start=1):
            target = self._table(hop.target, f"b{index}")
            joined = joined.join(target, tables[current].c[hop.source_column] == target.c[hop.target_column])
            tables[hop.target] = target
            current = hop.target
        profile = tables[self.catalog.profile]
        entity_key: sa.ColumnElement[Any] = sa.literal_column("''")
        if block.entity_key is not None:
            if block.entity_key not in tables:
                raise ValueError(
                    f"entity_key {block.entity_key!r} is not on the path {block.from_} -> "
                    f"{' -> '.join(h.target for h in hops)}"
                )
            keyed = tables[block.entity_key]
            entity_key = sa.cast(keyed.c[self.catalog.entity(block.entity_key).key], sa.Text)
        conditions = self._conditions(block.where, block.from_, tables[block.from_])
        if block.any_of:
            conditions.append(sa.or_(*[sa.and_(*self._conditions(g, block.from_, tables[block.from_])) for g in block.any_of]))
        key = self.catalog.entity(self.catalog.profile).key
        select = (
            sa.select(profile.c[key].label("profile_id"), entity_key.label("entity_key"))
            .select_from(joined)
            .where(*conditions)
        )
        # DISTINCT hashes every row (a second for a million bookings): only where the joins
        # can repeat a (profile, entity key) pair.
        keyed_by = block.entity_key or self.catalog.profile
        return select if keyed_by in self._unique_keys(block.from_, hops) else select.distinct()

    def _unique_keys(self, start: str, hops: list[Hop]) -> set[str]:
        """The entities whose key no two joined rows share (catalog keys are unique).

        A join on the target's key (to one) repeats no row. A join from rows unique by the
        source's key, on that key, gives each target row at most once: unique by its key too."""
        unique = {start}
        for hop in hops:
            to_one = hop.target_column == self.catalog.entity(hop.target).key
            from_one = hop.source_column == self.catalog.entity(hop.source).key and hop.source in unique
            if to_one:
                unique |= {hop.target} if from_one else set()
            else:
                unique = {hop.target} if from_one else set()
        return unique

    def where_on(
        self, alias: str, extra_columns: tuple[str, ...] = ()
    ) -> tuple[sa.Alias, list[sa.ColumnElement[bool]]]:
        """The block's entity as ``alias`` (with ``extra_columns`` too) and its ``where``
        conditions on it, for other statements that filter the same way (split rules)."""
        self._fields[self.block.from_].update(extra_columns)
        table = self._table(self.block.from_, alias)
        return table, self._conditions(self.block.where, self.block.from_, table)

    def _table(self, entity_name: str, alias: str) -> sa.Alias:
        # Lightweight table clauses: only the columns this block uses, no reflection.
        entity = self.catalog.entity(entity_name)
        columns = [sa.column(c) for c in sorted(self._fields[entity_name])]
        return sa.table(entity.name, *columns, schema=entity.schema).alias(alias)

    def _conditions(self, where: dict[str, Any], entity_name: str, table: sa.FromClause) -> list[sa.ColumnElement[bool]]:
        local: list[sa.ColumnElement[bool]] = []
        linked: dict[str, dict[str, Any]] = {}
        for path, condition in where.items():
            if "." in path:
                other, column = path.split(".", 1)
                linked.setdefault(other, {})[column] = condition
            else:
                local.append(self._condition(table.c[path], path, condition))
        for other, conditions in linked.items():
            local.append(self._exists(entity_name, table, other, conditions))
        return local

    def _exists(self, entity_name: str, table: sa.FromClause, other: str, conditions: dict[str, Any]) -> sa.Exists:
        """``has a linked <other> with …``: works whichever side of the link holds the column."""
        hop = self._direct_hop(entity_name, other)
        self._param += 1
        linked = self._table(other, f"x{self._param}")
        inner = [self._condition(linked.c[c], f"{other}.{c}", v) for c, v in conditions.items()]
        return sa.exists().where(linked.c[hop.target_column] == table.c[hop.source_column], *inner)

    def _direct_hop(self, entity_name: str, other: str) -> Hop:
        for hop in self.catalog._neighbours(entity_name):
            if hop.target == other:
                return hop
        raise ValueError(
            f"{entity_name} has no link to {other!r}; linked entities: "
            f"{', '.join(sorted(h.target for h in self.catalog._neighbours(entity_name))) or 'none'}"
        )

    def _condition(self, column: sa.ColumnElement[Any], path: str, condition: Any) -> sa.ColumnElement[bool]:
        if not isinstance(condition, dict):
            condition = {"eq": condition}
        op, value = next(iter(condition.items()))
        value = _typed(value)
        if op == "eq":
            return column.is_(None) if value is None else column == value
        if op == "ne":
            return column.is_not(None) if value is None else column != value
        if op in ("lt", "lte", "gt", "gte"):
            return {"lt": column < value, "lte": column <= value, "gt": column > value, "gte": column >= value}[op]
        if op == "in":
            return column.in_(value)
        if op == "not_in":
            return column.not_in(value)
        if op == "between":
            return column.between(value[0], value[1])
        if op == "is_null":
            return column.is_(None) if value else column.is_not(None)
        if op == "like":
            return column.like(value)
        if op == "ilike":
            return column.ilike(value)
        if op in DAY_WINDOWS:
            # campaign.within_next_days(column, days, time zone) and its kin (migration 0013):
            # PostgreSQL picks the overload for the column's type (calendar days for a date,
            # rolling days from now for a timestamp) and inlines it, so indexes still serve.
            window = getattr(sa.func.campaign, op)
            return window(
                column, sa.literal(int(value), sa.Integer), sa.literal(self.timezone, sa.Text), type_=sa.Boolean
            )
        raise ValueError(f"{path}: unknown operator {op!r}")


def _typed(value: Any) -> Any:
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return value


def seed_of(salt: str) -> int:
    """A stable 63-bit seed for PostgreSQL's hashtextextended from a config salt."""
    return int.from_bytes(hashlib.blake2b(salt.encode(), digest_size=8).digest(), "big") >> 1


__all__ = ["AudienceCompileError", "AudienceQuery", "UnknownAudienceParam", "resolve_params", "combine_sql", "compile_audience", "date", "datetime", "seed_of"]
