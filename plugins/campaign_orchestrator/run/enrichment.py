"""Enrichment: the fields of the audience's entities that a step's templates read.

A step sending one message per entity gives its templates ``entity``: the fields of that
row of the audience's entity (``entity.starts_on``) and of the entities it links to
(``entity.product.name``). A step sending one message per profile gives them ``entities``:
the profile's audience entities of the run, each enriched the same way. Which fields are
fetched comes from the templates
(:func:`~campaign_orchestrator.channels.templating.referenced_entity_paths`); which segments
of a path are linked entities comes from the entity catalog (include/entities.yaml):

- a *forward* link (``booking.links.product: product_id``: the row holds the other's key)
  leads to at most one row, so ``entity.product.name`` is followed;
- a *reverse one-to-one* link (``inventory`` is keyed by the ``product_id`` it links with)
  also leads to at most one row, so ``entity.product.inventory.quantity`` is followed;
- a one-to-many link (a product's bookings) is refused: a template field is one value.

The first segment that is not a link is the column; what follows it is the value's own
(``entity.starts_on.year``). A linked row that does not exist gives its fields as None.

Fetching is set-based: one statement per claimed chunk (by key, or by profile for the
``entities`` lists), joining only the linked tables the templates follow and selecting only
the columns they name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from psycopg import sql

from campaign_orchestrator.config.base import parse_order_by
from campaign_orchestrator.sqlfiles import query

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    import psycopg

    from campaign_orchestrator.audience.catalog import Catalog
    from campaign_orchestrator.channels.base import Recipient
    from campaign_orchestrator.channels.templating import EntityPath, TemplateFields
    from campaign_orchestrator.config.campaign import CampaignConfig
    from campaign_orchestrator.config.channels import Step
    from campaign_orchestrator.paths import ProjectPaths

_COLUMN = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class EnrichmentError(ValueError):
    """Templates read entity fields the audience or the catalog cannot provide; the message
    names the config field or template and the fix."""


@dataclass(frozen=True)
class Join:
    """A linked entity the templates follow: ``child.child_column = parent.parent_column``."""

    name: str
    parent_column: str
    child_column: str
    node: PlanNode


@dataclass(frozen=True)
class PlanNode:
    """One entity of the fetch: the columns the templates name, and the links they follow."""

    entity: str
    table: str
    key: str
    path: tuple[str, ...]
    """Where its fields sit in the template's dict: () for the audience entity, ("product",)…"""
    columns: tuple[str, ...]
    joins: tuple[Join, ...] = ()

    def nodes(self) -> Iterator[PlanNode]:
        yield self
        for join in self.joins:
            yield from join.node.nodes()


def one_row_link(catalog: Catalog, source: str, name: str) -> tuple[str, str] | None:
    """(column of ``source``, column of ``name``) when ``name`` is an entity ``source`` leads
    to at most one row of: a forward link, or a reverse link on the other entity's key."""
    entity = catalog.entities[source]
    if name in entity.links and name in catalog.entities:
        return entity.links[name], catalog.entities[name].key
    other = catalog.entities.get(name)
    if other is not None and name != source and other.links.get(source) == other.key:
        return entity.key, other.key
    return None


def plan_fields(catalog: Catalog, entity: str, paths: Iterable[EntityPath], label: str) -> PlanNode:
    """The fetch plan of ``paths`` (from the templates) starting at the catalog ``entity``.

    ``label`` is how templates name the root (``entity``), for error messages."""
    tree: dict[str, Any] = {}
    for path in paths:
        _place(catalog, entity, list(path), tree, (label,))
    return _node(catalog, entity, tree, ())


def _place(catalog: Catalog, entity: str, segments: list[str], tree: dict[str, Any], shown: tuple[str, ...]) -> None:
    head, rest = segments[0], segments[1:]
    where = ".".join((*shown, head))
    if one_row_link(catalog, entity, head) is None:
        other = catalog.entities.get(head)
        if other is not None and entity in other.links:
            raise EnrichmentError(
                f"{where}: one {entity} has many {head} rows ({head}.links.{entity}: {other.links[entity]}), "
                f"so {head} is not one value a template can show; make {head} the audience's entity instead"
            )
        if not _COLUMN.match(head):
            raise EnrichmentError(f"{where}: {head!r} is not a column name")
        tree[head] = None
        return
    if not rest:
        raise EnrichmentError(
            f"{where} is the linked entity {head} as a whole; name its fields, e.g. "
            f"{where}.{catalog.entity(head).key}, so only those columns are fetched"
        )
    subtree = tree.setdefault(head, {})
    _place(catalog, head, rest, subtree, (*shown, head))


def _node(catalog: Catalog, entity: str, tree: dict[str, Any], path: tuple[str, ...]) -> PlanNode:
    spec = catalog.entity(entity)
    joins = []
    for name, subtree in sorted(tree.items()):
        if subtree is not None:
            link = one_row_link(catalog, entity, name)
            assert link is not None
            joins.append(Join(name, link[0], link[1], _node(catalog, name, subtree, (*path, name))))
    columns = tuple(sorted(name for name, subtree in tree.items() if subtree is None))
    return PlanNode(entity, spec.table, spec.key, path, columns, tuple(joins))


@dataclass
class Enrichment:
    """Fetches and attaches ``entity`` (``per="entity"``) or ``entities`` (``per="profile"``).

    :param plan: what to fetch, from :func:`plan_fields`.
    :param per: one message per entity or per profile.
    :param order_by: (column, descending) of the audience entity ordering ``entities``.
    :param max_entities: at most this many ``entities`` per profile.
    :param profile_column: the entity's column linking it to the profile (for proofs).
    """

    plan: PlanNode
    per: Literal["entity", "profile"]
    order_by: tuple[tuple[str, bool], ...] = ()
    max_entities: int | None = None
    profile_column: str | None = None
    _statements: dict[str, sql.Composable] = field(default_factory=dict, repr=False, init=False)
    _layout: list[tuple[tuple[str, ...], str]] = field(default_factory=list, repr=False, init=False)

    def attach(self, conn: psycopg.Connection, run_key: int, recipients: Sequence[Recipient]) -> list[Recipient]:
        """Set each recipient's ``entity`` or ``entities``; return those whose entity no
        longer exists (one message per entity), which must not be rendered."""
        if not recipients:
            return []
        if self.per == "entity":
            rows = self.fetch_by_keys(conn, sorted({r.entity_key for r in recipients if r.entity_key}))
            missing = []
            for recipient in recipients:
                recipient.entity = rows.get(recipient.entity_key)
                if recipient.entity is None:
                    missing.append(recipient)
            return missing
        lists = self.fetch_for_profiles(conn, run_key, sorted({r.profile_id for r in recipients}))
        for recipient in recipients:
            recipient.entities = lists.get(recipient.profile_id, [])
        return []

    def attach_claimed(
        self, conn: psycopg.Connection, run_key: int, step_id: str, recipients: list[Recipient]
    ) -> tuple[list[Recipient], int]:
        """:meth:`attach` for a chunk just claimed (rows in ``sending``, same transaction): a
        message whose entity was deleted since the audience was evaluated is excluded as
        ``entity_not_found`` instead of rendered. Returns the others and how many were excluded."""
        missing = self.attach(conn, run_key, recipients)
        if not missing:
            return recipients, 0
        conn.execute(
            """
            UPDATE campaign.message SET status = 'excluded', reason = 'entity_not_found', updated_at = now()
            WHERE run_key = %s AND step_id = %s AND status = 'sending'
              AND (profile_id, entity_key) IN (SELECT * FROM unnest(%s::bigint[], %s::text[]))
            """,
            (run_key, step_id, [r.profile_id for r in missing], [r.entity_key for r in missing]),
        )
        gone = {id(r) for r in missing}
        return [r for r in recipients if id(r) not in gone], len(missing)

    def attach_for_proof(self, conn: psycopg.Connection, profile_id: int, recipients: Sequence[Recipient]) -> None:
        """A proof has no audience: the profile's own entities (by the entity's link to the
        profile) stand in, the first one for ``entity``, up to ``max_entities`` for ``entities``."""
        if self.profile_column is None:
            raise EnrichmentError(
                f"a proof of this step needs {self.plan.entity} to link to the profile "
                "(links: {profile: <column>} in include/entities.yaml)"
            )
        statement = query(
            "enrich_proof_keys",
            key=sql.Identifier(self.plan.key),
            entity_table=_table(self.plan.table),
            profile_column=sql.Identifier(self.profile_column),
            order_by=self._order_sql(),
        )
        limit = 1 if self.per == "entity" else self.max_entities
        keys = [row[0] for row in conn.execute(statement, {"profile_id": profile_id, "limit": limit})]
        rows = self.fetch_by_keys(conn, keys)
        for recipient in recipients:
            if self.per == "entity":
                recipient.entity = rows.get(keys[0]) if keys else None
            else:
                recipient.entities = [rows[k] for k in keys if k in rows]

    def fetch_by_keys(self, conn: psycopg.Connection, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The enriched rows of ``keys`` (text, as in the ledger), by key."""
        if not keys:
            return {}
        rows = conn.execute(self.statement(conn, "by_key"), {"keys": list(keys)}).fetchall()
        return {row[0]: self._nest(row[1:]) for row in rows}

    def fetch_for_profiles(
        self, conn: psycopg.Connection, run_key: int, profile_ids: Sequence[int]
    ) -> dict[int, list[dict[str, Any]]]:
        """Each profile's audience entities in the run, enriched, in the step's order."""
        if not profile_ids:
            return {}
        params = {"run_key": run_key, "profile_ids": list(profile_ids), "max_entities": self.max_entities}
        lists: dict[int, list[dict[str, Any]]] = {}
        for row in conn.execute(self.statement(conn, "of_profiles"), params):
            lists.setdefault(row[0], []).append(self._nest(row[2:]))
        return lists

    def statement(self, conn: psycopg.Connection, kind: Literal["by_key", "of_profiles"]) -> sql.Composable:
        """The fetch statement; the key's type is read from the store once."""
        if kind not in self._statements:
            columns, joins = self._select()
            fragments = {
                "key": sql.Identifier(self.plan.key),
                "key_type": sql.SQL(key_type(conn, self.plan.table, self.plan.key)),  # type: ignore[arg-type]
                "entity_table": _table(self.plan.table),
                "columns": columns,
                "joins": joins,
            }
            if kind == "by_key":
                self._statements[kind] = query("enrich_by_entity_key", **fragments)
            else:
                self._statements[kind] = query("enrich_entities_of_profiles", order_by=self._order_sql(), **fragments)
        return self._statements[kind]

    def _order_sql(self) -> sql.Composable:
        terms = [
            sql.SQL("{} {} NULLS LAST").format(sql.Identifier("e0", column), sql.SQL("DESC" if desc else "ASC"))
            for column, desc in self.order_by
        ]
        return sql.SQL(", ").join([*terms, sql.Identifier("e0", self.plan.key)])

    def _select(self) -> tuple[sql.Composable, sql.Composable]:
        """The select list (``, e1.name AS c0``…) and LEFT JOINs, aliases e0 (the audience
        entity), e1… in plan order; fills the layout that nests fetched values."""
        columns: list[sql.Composable] = []
        joins: list[sql.Composable] = []
        self._layout.clear()
        aliases = {id(self.plan): "e0"}
        for node in self.plan.nodes():
            alias = aliases[id(node)]
            for join in node.joins:
                child = f"e{len(aliases)}"
                aliases[id(join.node)] = child
                joins.append(
                    sql.SQL("LEFT JOIN {} AS {} ON {} = {}").format(
                        _table(join.node.table),
                        sql.Identifier(child),
                        sql.Identifier(child, join.child_column),
                        sql.Identifier(alias, join.parent_column),
                    )
                )
            for column in node.columns:
                columns.append(
                    sql.SQL(", {} AS {}").format(
                        sql.Identifier(alias, column), sql.Identifier(f"c{len(self._layout)}")
                    )
                )
                self._layout.append((node.path, column))
        return sql.SQL("").join(columns), sql.SQL("\n").join(joins)

    def _nest(self, values: Sequence[Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for (path, column), value in zip(self._layout, values):
            target = out
            for segment in path:
                target = target.setdefault(segment, {})
            target[column] = value
        return out


def _table(table: str) -> sql.Identifier:
    schema, name = table.split(".", 1)
    return sql.Identifier(schema, name)


def key_type(conn: psycopg.Connection, table: str, key: str) -> str:
    """The SQL type of ``table.key`` as PostgreSQL writes it (``bigint``, ``uuid``…): entity
    keys travel as text in the ledger and are cast back, so the key's index is used."""
    row = conn.execute(
        """
        SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
        WHERE a.attrelid = to_regclass(%s) AND a.attname = %s AND a.attnum > 0 AND NOT a.attisdropped
        """,
        (table, key),
    ).fetchone()
    if row is None:
        raise EnrichmentError(f"{table} has no key column {key!r} in the store; fix include/entities.yaml")
    return str(row[0])


def message_per(config: CampaignConfig, step: Step) -> Literal["profile", "entity"]:
    """The step's ``message_per``, or its default: entity when the audience may carry entity
    keys (blocks with entity_key, SQL returning them, ``audience.entity``), else profile."""
    if getattr(step, "message_per", None):
        return step.message_per  # type: ignore[return-value]
    audience = config.audience
    keyed = audience.sql is not None or audience.entity is not None or bool(audience.keyed_blocks())
    return "entity" if keyed else "profile"


def enrichment_for(config: CampaignConfig, step: Step, fields: TemplateFields, catalog: Catalog) -> Enrichment | None:
    """What a send of ``step`` fetches for ``entity`` / ``entities``; None when its templates
    use neither. Raises :class:`EnrichmentError` naming the field when they cannot have it."""
    if not (fields.uses_entity or fields.uses_entities):
        return None
    index = next(i for i, s in enumerate(config.steps) if s is step or s.id == step.id)
    where = f"steps[{index}].template: {getattr(step, 'template', step.id)}"
    per = message_per(config, step)
    audience = config.audience
    entity = audience.entity_type()
    used = "entity" if fields.uses_entity else "entities"
    if entity is None and audience.sql is None and not audience.keyed_blocks():
        raise EnrichmentError(
            f"{where} uses {used}, but the audience has no entity keys; give a block entity_key "
            "(e.g. entity_key: booking) or set audience.entity"
        )
    if fields.uses_entity and per == "profile":
        raise EnrichmentError(
            f"{where} uses entity, but the step sends one message per profile; use entities "
            "({% for b in entities %}…) or give the step message_per: entity"
        )
    if fields.uses_entities and per != "profile":
        raise EnrichmentError(
            f"{where} uses entities (all of the profile's entities in one message), which only a step "
            "with message_per: profile gets; add message_per: profile to the step, or use entity"
        )
    if entity is None:
        raise EnrichmentError(
            f"audience.entity: {where} uses {used}, but the audience's entity keys come from SQL (or a "
            "saved audience) that does not say which entity they are keys of; set audience.entity, "
            f"e.g. entity: booking (entities: {', '.join(sorted(catalog.entities))})"
        )
    if entity not in catalog.entities:
        raise EnrichmentError(
            f"audience.entity: unknown entity {entity!r}; include/entities.yaml has "
            f"{', '.join(sorted(catalog.entities))}"
        )
    if per == "entity" and audience.blocks:
        union = audience.combine.union if audience.combine else list(audience.blocks)
        unkeyed = [name for name in union if name not in audience.keyed_blocks()]
        if unkeyed:
            raise EnrichmentError(
                f"audience.blocks.{unkeyed[0]}: its members carry no entity key, but {where} sends one "
                f"message per {entity} using entity; give the block entity_key: {entity} or leave it out "
                "of combine.union"
            )
    label = "entity" if per == "entity" else "entities[*]"
    try:
        plan = plan_fields(catalog, entity, fields.entity if per == "entity" else fields.entities, label)
    except EnrichmentError as exc:
        raise EnrichmentError(f"{where}: {exc}") from None
    order_by = tuple(parse_order_by(step.entities_order_by)) if getattr(step, "entities_order_by", None) else ()
    return Enrichment(
        plan,
        per,
        order_by=order_by,
        max_entities=getattr(step, "max_entities", None),
        profile_column=catalog.entities[entity].links.get(catalog.profile),
    )


def check_enrichment_in_store(
    conn: psycopg.Connection, enrichment: Enrichment, step_index: int, template: str
) -> list[str]:
    """Every column the plan selects or orders by must exist in its table."""
    where = f"steps[{step_index}].template: {template}"
    tables = sorted({node.table for node in enrichment.plan.nodes()})
    have: dict[str, set[str]] = {table: set() for table in tables}
    for schema, name, column in conn.execute(
        "SELECT table_schema, table_name, column_name FROM information_schema.columns "
        "WHERE table_schema || '.' || table_name = ANY(%s)",
        (tables,),
    ):
        have[f"{schema}.{name}"].add(column)
    label = "entity" if enrichment.per == "entity" else "entities[*]"
    problems = []
    for node in enrichment.plan.nodes():
        if not have[node.table]:
            problems.append(f"{where}: {node.table} (entity {node.entity}) does not exist in the store")
            continue
        for column in node.columns:
            if column not in have[node.table]:
                problems.append(
                    f"{where} uses {'.'.join((label, *node.path, column))}, which {node.table} does not have; "
                    f"columns: {', '.join(sorted(have[node.table]))}"
                )
    root = enrichment.plan
    for column, _ in enrichment.order_by:
        if have[root.table] and column not in have[root.table]:
            problems.append(
                f"steps[{step_index}].entities_order_by: {root.table} has no column "
                f"{column!r}; columns: {', '.join(sorted(have[root.table]))}"
            )
    return problems


def step_enrichment(
    config: CampaignConfig, step: Step, fields: TemplateFields, paths: ProjectPaths
) -> Enrichment | None:
    """:func:`enrichment_for` with the project's entity catalog (read only when needed)."""
    if not (fields.uses_entity or fields.uses_entities):
        return None
    from campaign_orchestrator.audience.catalog import load_catalog

    return enrichment_for(config, step, fields, load_catalog(paths.root / "include" / "entities.yaml"))
