"""Load campaign YAML files, merge the shared defaults, validate, and report errors.

Loading never raises for a bad campaign: each file yields either a validated
:class:`CampaignConfig` or a :class:`ConfigError` naming the file, the line, the field path
and what would be valid. One broken file therefore never hides the others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml
from pydantic import ValidationError

from campaign_orchestrator.config.base import IDENTIFIER
from campaign_orchestrator.config.campaign import CampaignConfig
from campaign_orchestrator.config.errors import (
    ConfigError,
    ConfigFileError,
    ConfigProblem,
    SafeLoader,
    fallback_id,
    format_loc,
    line_of,
    model_fields_at,
    parse_yaml_text,
    validation_problems,
)
from campaign_orchestrator.paths import ProjectPaths

__all__ = ["ConfigError", "ConfigProblem", "LoadResult", "load_campaign", "load_campaign_file", "load_campaigns"]

DEFAULTS_FILE = "_defaults.yaml"


ConfigT = TypeVar("ConfigT")


@dataclass
class LoadResult(Generic[ConfigT]):
    """Every config of a folder that validated (by id, with its file), and every file that did not."""

    configs: dict[str, tuple[Path, ConfigT]] = field(default_factory=dict)
    errors: list[ConfigError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def campaign_files(config_dir: Path) -> list[Path]:
    """Campaign files: every YAML file not starting with ``_`` (``_defaults.yaml``,
    ``_rate_limits.yaml`` and other shared settings live beside them)."""
    files = [*config_dir.glob("*.yaml"), *config_dir.glob("*.yml")]
    return sorted(p for p in files if not p.name.startswith("_"))


def load_campaigns(
    config_dir: Path, paths: ProjectPaths | None = None, only_id: str | None = None
) -> LoadResult[CampaignConfig]:
    """Load every campaign in ``config_dir``; with ``only_id``, validate just that one fully.

    ``only_id`` serves Airflow's parsing context: a worker running one task needs one DAG, so
    other files are read only far enough to learn their ids.
    """
    paths = paths or ProjectPaths.discover()
    result: LoadResult[CampaignConfig] = LoadResult()
    defaults, defaults_error = read_defaults(config_dir)
    if defaults_error:
        result.errors.append(defaults_error)
    if only_id is None:
        result.errors += shared_file_errors(config_dir)
    seen_in: dict[str, Path] = {}
    for path in campaign_files(config_dir):
        loaded = load_campaign_file(path, defaults, paths, only_id=only_id)
        if loaded is None:
            continue
        if isinstance(loaded, ConfigError):
            result.errors.append(loaded)
            continue
        if loaded.id in seen_in:
            result.errors.append(
                ConfigError(
                    path,
                    f"{loaded.id}__duplicate",
                    (ConfigProblem("id", f"{loaded.id!r} is already used by {seen_in[loaded.id]}; ids must be unique"),),
                )
            )
            continue
        seen_in[loaded.id] = path
        result.configs[loaded.id] = (path, loaded)
    if only_id is None:
        _check_campaign_links(result)
    return result


def shared_file_errors(config_dir: Path) -> list[ConfigError]:
    """Problems of the shared settings beside the campaigns (``_policies.yaml``,
    ``_rate_limits.yaml``): reported when the configs are loaded (``campaigns validate``, the
    DAG files' parse, the Campaigns page), not first when a batch sends."""
    from campaign_orchestrator.config.policies import policies_error
    from campaign_orchestrator.run.throttle import RATE_LIMITS_FILE, RateConfigError, read_rate_limits_file

    errors = [error for error in (policies_error(config_dir),) if error is not None]
    path = config_dir / RATE_LIMITS_FILE
    try:
        read_rate_limits_file(path)
    except RateConfigError as exc:
        errors.append(ConfigError(path, "_rate_limits", (ConfigProblem("", str(exc).removeprefix(f"{path}: ")),)))
    return errors


def _check_campaign_links(result: LoadResult) -> None:
    """``schedule.after`` must name existing campaigns and must not loop back."""
    after = {cid: list(config.schedule.after) for cid, (_, config) in result.configs.items()}
    broken: dict[str, str] = {}
    for cid, targets in after.items():
        unknown = [t for t in targets if t not in after]
        if unknown:
            broken[cid] = f"unknown campaign {unknown[0]!r}; campaigns: {', '.join(sorted(after))}"
    for cid in after:
        path, node = [cid], cid
        seen = {cid}
        stack = [(cid, iter(after.get(cid, [])))]
        while stack:  # depth-first search for a cycle through cid
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                continue
            if child == cid:
                broken.setdefault(cid, "a cycle: " + " -> ".join([*path, cid]))
                break
            if child in after and child not in seen:
                seen.add(child)
                path.append(child)
                stack.append((child, iter(after[child])))
    for cid, message in sorted(broken.items()):
        path, _ = result.configs.pop(cid)
        result.errors.append(ConfigError(path, cid, (ConfigProblem("schedule.after", message),)))


def load_campaign(path: Path, paths: ProjectPaths | None = None) -> CampaignConfig:
    """The validated campaign in ``path``, with its folder's ``_defaults.yaml`` merged under it.

    Raises :class:`CampaignFileError` (its ``error`` says every problem) for a broken file or
    defaults: what a task runs on, where the loader's never-raise reporting is for listings.
    """
    defaults, defaults_error = read_defaults(path.parent)
    if defaults_error:
        raise CampaignFileError(defaults_error)
    loaded = load_campaign_file(path, defaults, paths or ProjectPaths.discover())
    if isinstance(loaded, ConfigError):
        raise CampaignFileError(loaded)
    assert loaded is not None
    return loaded


class CampaignFileError(ConfigFileError):
    """A campaign file (or its defaults) that does not validate; ``str()`` lists every problem."""


def load_campaign_file(
    path: Path, defaults: dict[str, Any], paths: ProjectPaths, only_id: str | None = None
) -> CampaignConfig | ConfigError | None:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return ConfigError(path, fallback_id(path), (ConfigProblem(
            "", f"not UTF-8 text (byte {exc.start}: {exc.object[exc.start:exc.start + 1]!r}); save the file as UTF-8"),))
    if only_id is not None and only_id not in (path.stem, fallback_id(path)) and only_id not in text \
            and "\\" not in text:
        # A worker running one task needs one campaign: a file that cannot be that campaign
        # (the id is not its name, not in its text, and no escape could spell it) is not parsed.
        return None
    parsed = parse_yaml_text(path, text)
    if isinstance(parsed, ConfigError):
        return parsed
    node, raw = parsed
    raw.setdefault("id", path.stem)
    # An unusable id's placeholder DAG goes by the file name (_safe_id): Airflow may ask for that.
    if only_id is not None and only_id not in (raw.get("id"), _safe_id(raw, path)):
        return None
    merged = deep_merge(defaults, raw)
    missing_files = check_references(merged, paths, node)
    try:
        config = CampaignConfig.model_validate(merged)
    except ValidationError as exc:
        problems = validation_problems(
            exc, node, CampaignConfig,
            strip_loc=_strip_union_tags, allowed_keys=_allowed_keys, describe_tag=_describe_step_tag,
        )
        return ConfigError(path, _safe_id(raw, path), tuple(problems + missing_files))
    if missing_files:
        return ConfigError(path, config.id, tuple(missing_files))
    return config


def check_references(raw: dict[str, Any], paths: ProjectPaths, node: yaml.Node | None = None) -> list[ConfigProblem]:
    """Files a config names must exist: cheap filesystem checks, safe at parse time.

    Works on the raw mapping so that a file with a model error still gets its missing
    files reported in the same pass.
    """
    from campaign_orchestrator.channels.registry import CHANNELS

    problems = []
    audience = raw.get("audience") if isinstance(raw.get("audience"), dict) else {}
    sql_refs = [(("audience", "sql"), audience.get("sql"))]
    blocks = audience.get("blocks")
    for name, block in (blocks.items() if isinstance(blocks, dict) else []):
        if isinstance(block, dict):
            sql_refs.append((("audience", "blocks", name, "sql"), block.get("sql")))
    for loc, sql in sql_refs:
        if isinstance(sql, str) and sql.endswith(".sql") and not (paths.sql / sql).is_file():
            problems.append(
                ConfigProblem(
                    format_loc(loc),
                    f"file not found: {paths.sql / sql}; create it or fix the path (relative to include/sql/)",
                    line_of(node, loc),
                )
            )
    steps = raw.get("steps")
    for index, step in enumerate(steps if isinstance(steps, list) else []):
        channel = step.get("channel") if isinstance(step, dict) else None
        # Any YAML value can be here (a list is unhashable): the model reports wrong types.
        if not isinstance(channel, str) or channel not in CHANNELS or not isinstance(step.get("template"), str):
            continue
        folder = paths.templates / step["template"]
        missing = [part for part in CHANNELS[step["channel"]].template_parts if not (folder / part).is_file()]
        # A folder of locale variants only (its default named by locales.default) is checked
        # variant by variant (channels/locales.py), not here.
        if missing and not _has_locale_variants(folder):
            problems.append(
                ConfigProblem(
                    f"steps[{index}].template",
                    f"template {step['template']!r} lacks {', '.join(missing)} in {folder}",
                    line_of(node, ("steps", index, "template")),
                )
            )
    return problems


def _has_locale_variants(folder: Path) -> bool:
    from campaign_orchestrator.channels.locales import looks_like_locale

    return folder.is_dir() and any(child.is_dir() and looks_like_locale(child.name) for child in folder.iterdir())


def read_defaults(config_dir: Path) -> tuple[dict[str, Any], ConfigError | None]:
    path = config_dir / DEFAULTS_FILE
    if not path.is_file():
        return {}, None
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=SafeLoader) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        return {}, ConfigError(path, "_defaults", (ConfigProblem("", f"not valid YAML: {exc}"),))
    if not isinstance(data, dict):
        return {}, ConfigError(path, "_defaults", (ConfigProblem("", "must be a mapping of campaign fields"),))
    if "id" in data or "steps" in data:
        return {}, ConfigError(
            path, "_defaults", (ConfigProblem("id" if "id" in data else "steps", "defaults cannot set this field"),)
        )
    return data, None


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; anything else in ``override`` replaces ``base``."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _safe_id(raw: dict[str, Any], path: Path) -> str:
    value = raw.get("id")
    return value if isinstance(value, str) and re.match(IDENTIFIER, value) else fallback_id(path)


def _describe_step_tag(err: dict[str, Any], loc: tuple[Any, ...]) -> tuple[tuple[Any, ...], str] | None:
    """Steps are told apart by channel (or a wait key): say so, not '_step_kind()'."""
    ctx = err.get("ctx", {})
    if "_step_kind" not in str(ctx.get("discriminator")):
        return None
    if err["type"] == "union_tag_invalid":
        return (*loc, "channel"), f"unknown channel {ctx.get('tag')!r}; valid: {ctx.get('expected_tags')}"
    return (*loc, "channel"), (
        "a step needs a channel (email, sms, push, direct_mail, webhook), or is a wait: "
        "{id: ..., wait: 2d, after: ...}"
    )


def _strip_union_tags(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Pydantic puts the discriminator value in the path (steps.0.email.template); users wrote steps[0].template."""
    from campaign_orchestrator.channels.registry import CHANNELS

    out: list[Any] = []
    for i, part in enumerate(loc):
        before = loc[i - 1] if i else None
        if isinstance(before, int) and (part in CHANNELS or part == "wait"):
            continue  # the kind of a step
        if before == "wait" and part in ("duration", "until") and i >= 2 and loc[i - 2] == "wait":
            continue  # the kind of a wait (steps.1.wait.wait.until.until is steps[1].wait.until)
        out.append(part)
    return tuple(out)


def _allowed_keys(raw_loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model at pydantic's ``raw_loc`` (tags included), for 'did you mean'."""
    from campaign_orchestrator.config.channels import STEP_MODELS

    if len(raw_loc) >= 3 and raw_loc[0] == "steps" and isinstance(raw_loc[1], int):
        # A step's fields are those of its channel's model (the tag pydantic put in the path).
        model = STEP_MODELS.get(raw_loc[2])
        return model_fields_at(model, raw_loc[3:]) if model is not None else []
    if raw_loc[:1] == ("steps",):
        return []
    return model_fields_at(CampaignConfig, raw_loc)


