"""The entity catalog (include/entities.yaml): tables, keys and the links between them.

A link ``booking.links.profile: profile_id`` says the column ``crm.booking.profile_id`` holds
a profile key. Links are walked both ways: from a booking to its profile (many to one) or
from a product to its bookings (one to many), which is how an audience built on one entity
changes dimension to another.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_NAME = r"^[a-z_][a-z0-9_]{0,62}$"
_TABLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}\.[a-z_][a-z0-9_]{0,62}$")


class Entity(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str = Field(description="schema.table")
    key: str = Field(pattern=_NAME, description="Primary key column")
    links: dict[str, str] = Field(default_factory=dict, description="other entity -> column of this table")
    declared_by: str | None = Field(
        default=None, description="The ingestion source that declares (and creates) this entity's table"
    )

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        if not _TABLE.match(value):
            raise ValueError(f"{value!r} must be schema.table in lower case, e.g. crm.booking")
        return value

    @field_validator("links")
    @classmethod
    def _links(cls, value: dict[str, str]) -> dict[str, str]:
        for target, column in value.items():
            if not re.match(_NAME, target) or not re.match(_NAME, column):
                raise ValueError(f"link {target}: {column} must name an entity and a column")
        return value

    @property
    def schema(self) -> str:
        return self.table.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.table.split(".", 1)[1]


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: str = "profile"
    entities: dict[str, Entity]

    @model_validator(mode="after")
    def _references(self) -> Catalog:
        if self.profile not in self.entities:
            raise ValueError(f"profile entity {self.profile!r} is not in entities")
        for name, entity in self.entities.items():
            for target in entity.links:
                if target not in self.entities:
                    raise ValueError(f"entities.{name}.links: unknown entity {target!r}; known: {', '.join(self.entities)}")
        return self

    def entity(self, name: str) -> Entity:
        try:
            return self.entities[name]
        except KeyError:
            import difflib

            close = difflib.get_close_matches(name, sorted(self.entities), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise KeyError(
                f"unknown entity {name!r}{hint} The catalog (include/entities.yaml) has "
                f"{', '.join(sorted(self.entities))}"
            ) from None

    def path(self, start: str, goal: str, via: list[str] | None = None) -> list[Hop]:
        """Hops from ``start`` to ``goal``: through ``via`` in order when given, else the
        shortest path over links walked in either direction."""
        waypoints = [start, *(via or []), goal]
        hops: list[Hop] = []
        for a, b in zip(waypoints, waypoints[1:]):
            hops += self._shortest(a, b)
        return hops

    def _shortest(self, start: str, goal: str) -> list[Hop]:
        self.entity(start), self.entity(goal)
        previous: dict[str, Hop | None] = {start: None}
        queue = deque([start])
        while queue:
            current = queue.popleft()
            if current == goal:
                break
            for hop in self._neighbours(current):
                if hop.target not in previous:
                    previous[hop.target] = hop
                    queue.append(hop.target)
        if goal not in previous:
            raise ValueError(f"no link path from {start!r} to {goal!r} in the entity catalog")
        hops: list[Hop] = []
        node = goal
        while previous[node] is not None:
            hop = previous[node]
            hops.append(hop)
            node = hop.source
        return list(reversed(hops))

    def _neighbours(self, name: str) -> list[Hop]:
        entity = self.entities[name]
        hops = [Hop(name, target, entity.links[target], self.entities[target].key) for target in sorted(entity.links)]
        for other_name, other in sorted(self.entities.items()):
            if name in other.links and other_name != name:
                hops.append(Hop(name, other_name, entity.key, other.links[name]))
        return hops


@dataclass(frozen=True)
class Hop:
    """One join: ``source.source_column = target.target_column``."""

    source: str
    target: str
    source_column: str
    target_column: str


def load_catalog(path: Path) -> Catalog:
    """The catalog file, with the entities the project's ingestion sources declare merged in
    (``target.entity`` in ``dags/ingestion/*.yaml``; see ``ingestion/catalog.py``)."""
    from campaign_orchestrator.ingestion.catalog import folder_state
    from campaign_orchestrator.paths import ProjectPaths

    sources = ProjectPaths(path.resolve().parent.parent).ingestion
    return _load(str(path), path.stat().st_mtime_ns if path.exists() else 0, str(sources), folder_state(sources))


@lru_cache(maxsize=4)
def _load(path: str, _mtime: int, sources: str, source_state: tuple[tuple[str, int], ...]) -> Catalog:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if source_state and isinstance(data.get("entities"), dict):
        from campaign_orchestrator.ingestion.catalog import source_entities

        declared, _problems = source_entities(Path(sources), set(data["entities"]))
        data["entities"] = {**data["entities"], **declared}
    return Catalog.model_validate(data)


def check_catalog_in_store(conn, catalog: Catalog) -> list[str]:
    """Every catalog entity's table, key and link columns must exist in the live store."""
    columns: dict[str, set[str]] = {}
    for schema, table, column in conn.execute(
        "SELECT table_schema, table_name, column_name FROM information_schema.columns "
        "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
    ):
        columns.setdefault(f"{schema}.{table}", set()).add(column)
    problems = []
    for name, entity in sorted(catalog.entities.items()):
        have = columns.get(entity.table)
        if have is None:
            if entity.declared_by is None:  # a source's table exists from its first load on
                problems.append(f"entities.{name}.table: {entity.table} does not exist in the store")
            continue
        for field_name, column in [("key", entity.key), *((f"links.{t}", c) for t, c in entity.links.items())]:
            if column not in have:
                problems.append(
                    f"entities.{name}.{field_name}: {entity.table} has no column {column!r}; "
                    f"columns: {', '.join(sorted(have))}"
                )
    return problems
