"""Load ingestion sources (``dags/ingestion/*.yaml``), merge their shared settings, validate.

Like campaign files (``config/loader.py``, whose error reporting this shares through
``config/errors.py``): loading never raises for a bad file; each file yields a validated
:class:`IngestionConfig` or a :class:`ConfigError` naming the file, line and field, so one
broken source never hides the others. A ConfigError's id is the source's DAG id
(``ingest_<id>``), the placeholder DAG that shows it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from campaign_orchestrator.config.base import IDENTIFIER
from campaign_orchestrator.config.errors import (
    ConfigError,
    ConfigFileError,
    ConfigProblem,
    fallback_id,
    line_of,
    model_fields_at,
    read_yaml_file,
    validation_problems,
)
from campaign_orchestrator.config.ingestion import SOURCE_KINDS, IngestionConfig, dag_id_of
from campaign_orchestrator.config.loader import LoadResult, campaign_files, deep_merge
from campaign_orchestrator.paths import ProjectPaths

DEFAULTS_FILE = "_defaults.yaml"
WHAT = "ingestion source fields"


SourceLoadResult = LoadResult[IngestionConfig]
"""Sources by id, with their files, and the files that did not validate."""


class SourceFileError(ConfigFileError):
    """A source file (or its defaults) that does not validate; ``str()`` lists every problem."""


def load_sources(folder: Path, paths: ProjectPaths | None = None, only_dag_id: str | None = None) -> SourceLoadResult:
    """Every source in ``folder``; with ``only_dag_id`` (Airflow's parsing context), just that one."""
    paths = paths or ProjectPaths.discover()
    result: SourceLoadResult = LoadResult()
    if not folder.is_dir():
        return result
    defaults, defaults_error = read_defaults(folder)
    if defaults_error is not None:
        result.errors.append(defaults_error)
    seen_in: dict[str, Path] = {}
    entities: dict[str, str] = {}
    for path in campaign_files(folder):  # every YAML file not starting with _
        loaded = load_source_file(path, defaults, paths, only_dag_id=only_dag_id)
        if loaded is None:
            continue
        if isinstance(loaded, ConfigError):
            result.errors.append(loaded)
            continue
        problem = None
        if loaded.id in seen_in:
            problem = ConfigProblem("id", f"{loaded.id!r} is already used by {seen_in[loaded.id]}; ids must be unique")
        elif loaded.target.entity is not None and loaded.target.entity.name in entities:
            problem = ConfigProblem("target.entity.name", f"entity {loaded.target.entity.name!r} is already declared "
                                    f"by source {entities[loaded.target.entity.name]!r}")
        if problem is not None:
            result.errors.append(ConfigError(path, f"{loaded.dag_id}__duplicate", (problem,)))
            continue
        seen_in[loaded.id] = path
        if loaded.target.entity is not None:
            entities[loaded.target.entity.name] = loaded.id
        result.configs[loaded.id] = (path, loaded)
    return result


def load_source(path: Path, paths: ProjectPaths | None = None) -> IngestionConfig:
    """The validated source in ``path`` with its folder's defaults; raises :class:`SourceFileError`."""
    defaults, defaults_error = read_defaults(path.parent)
    if defaults_error is not None:
        raise SourceFileError(defaults_error)
    loaded = load_source_file(path, defaults, paths or ProjectPaths.discover())
    if isinstance(loaded, ConfigError):
        raise SourceFileError(loaded)
    assert loaded is not None
    return loaded


def load_source_file(
    path: Path, defaults: dict[str, Any], paths: ProjectPaths, only_dag_id: str | None = None
) -> IngestionConfig | ConfigError | None:
    if only_dag_id is not None:
        wanted = only_dag_id.removeprefix("ingest_")
        if not only_dag_id.startswith("ingest_") or (wanted not in (path.stem, fallback_id(path))
                                                     and wanted not in path.read_text(errors="replace")):
            return None  # cannot be the DAG Airflow asks for: not parsed
    parsed = read_yaml_file(path, WHAT)
    if isinstance(parsed, ConfigError):
        return ConfigError(path, dag_id_of(parsed.campaign_id), parsed.problems)
    node, raw = parsed
    raw.setdefault("id", path.stem)
    dag_id = dag_id_of(_safe_id(raw, path))
    if only_dag_id is not None and only_dag_id != dag_id:
        return None
    merged = deep_merge(defaults, raw)
    missing = check_source_references(merged, paths, node)
    try:
        config = IngestionConfig.model_validate(merged)
    except ValidationError as exc:
        problems = validation_problems(
            exc, node, IngestionConfig, strip_loc=_strip_kind, allowed_keys=_allowed_keys, describe_tag=_describe_kind
        )
        return ConfigError(path, dag_id, tuple(problems + missing))
    if missing:
        return ConfigError(path, dag_id, tuple(missing))
    return config


def check_source_references(raw: dict[str, Any], paths: ProjectPaths, node: yaml.Node | None) -> list[ConfigProblem]:
    """A SQL source's query file must exist, and bind ``%(watermark)s`` when it has a watermark."""
    source = raw.get("source")
    if not isinstance(source, dict) or source.get("kind") != "sql" or not isinstance(source.get("query"), str):
        return []
    loc = ("source", "query")
    file = paths.sql / source["query"]
    if not file.is_file():
        return [ConfigProblem("source.query", f"file not found: {file}; create it or fix the path (relative to "
                              "include/sql/)", line_of(node, loc))]
    if isinstance(source.get("watermark"), dict) and "%(watermark)s" not in file.read_text(encoding="utf-8"):
        return [ConfigProblem("source.watermark", f"{file} must filter on %(watermark)s, e.g. WHERE updated_at > "
                              "%(watermark)s::timestamptz, so that each run reads only newer rows",
                              line_of(node, ("source", "watermark")))]
    return []


def read_defaults(folder: Path) -> tuple[dict[str, Any], ConfigError | None]:
    path = folder / DEFAULTS_FILE
    if not path.is_file():
        return {}, None
    parsed = read_yaml_file(path, WHAT)
    if isinstance(parsed, ConfigError):
        return {}, ConfigError(path, "ingest__defaults", parsed.problems)
    node, data = parsed
    for name in ("id", "source", "target"):
        if name in data:
            return {}, ConfigError(path, "ingest__defaults", (ConfigProblem(name, "defaults cannot set this field",
                                                                     line_of(node, (name,))),))
    return data, None


def _safe_id(raw: dict[str, Any], path: Path) -> str:
    value = raw.get("id")
    return value if isinstance(value, str) and re.match(IDENTIFIER, value) else fallback_id(path)


def _strip_kind(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Pydantic names the union member in the path (source.csv.path); the file says source.path."""
    return tuple(p for i, p in enumerate(loc) if not (i == 1 and loc[0] == "source" and p in SOURCE_KINDS))


def _allowed_keys(raw_loc: tuple[Any, ...]) -> list[str]:
    if len(raw_loc) >= 2 and raw_loc[0] == "source" and raw_loc[1] in SOURCE_KINDS:
        return model_fields_at(SOURCE_KINDS[raw_loc[1]], raw_loc[2:])
    return model_fields_at(IngestionConfig, raw_loc)


def _describe_kind(err: dict[str, Any], loc: tuple[Any, ...]) -> tuple[tuple[Any, ...], str] | None:
    if "_source_kind" not in str(err.get("ctx", {}).get("discriminator")):
        return None
    kinds = ", ".join(SOURCE_KINDS)
    if err["type"] == "union_tag_not_found":
        return (*loc, "kind"), f"a source needs its kind: {kinds}"
    return (*loc, "kind"), f"unknown kind {err.get('ctx', {}).get('tag')!r}; valid: {kinds}"


__all__ = ["SourceFileError", "SourceLoadResult", "load_source", "load_sources"]
