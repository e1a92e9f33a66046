"""Entities declared by ingestion sources (``target.entity``), for the entity catalog.

A source that creates a table can make it an entity at once: audience blocks may then start
from it (``from: <name>``) or link through it. ``audience/catalog.py`` merges these into
``include/entities.yaml``'s; a declaration that would break the catalog (a name already
taken, a link to an unknown entity) is left out and reported by ``campaigns ingest validate``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def source_entities(folder: Path, known: set[str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``{name: {table, key, links}}`` of the valid sources in ``folder``, and the problems of
    the declarations left out. ``known``: the entities the catalog file has."""
    from campaign_orchestrator.config.ingestion_loader import load_sources

    declared: dict[str, tuple[Path, dict[str, Any]]] = {}
    problems = []
    for path, config in load_sources(folder).configs.values():
        entity = config.target.entity
        if entity is None:
            continue
        if entity.name in known:
            problems.append(f"{path}: target.entity.name: {entity.name!r} is already an entity of "
                            "include/entities.yaml; choose another name")
            continue
        declared[entity.name] = (path, {"table": config.target.table, "key": entity.key or config.target.key[0],
                                        "links": dict(entity.links), "declared_by": config.id})
    names = known | set(declared)
    entities = {}
    for name, (path, entity) in declared.items():
        unknown = [target for target in entity["links"] if target not in names]
        if unknown:
            problems.append(f"{path}: target.entity.links: unknown entity {unknown[0]!r}; known: "
                            f"{', '.join(sorted(names))}")
            continue
        entities[name] = entity
    return entities, problems


def folder_state(folder: Path) -> tuple[tuple[str, int], ...]:
    """The source files and their modification times: what a cached catalog depends on."""
    if not folder.is_dir():
        return ()
    return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in folder.glob("*.y*ml")))
