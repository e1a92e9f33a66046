"""Load campaign YAML files, merge the shared defaults, validate, and report errors.

Loading never raises for a bad campaign: each file yields either a validated
:class:`CampaignConfig` or a :class:`ConfigError` naming the file, the line, the field path
and what would be valid. One broken file therefore never hides the others.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from campaign_orchestrator.config.base import IDENTIFIER

from campaign_orchestrator.config.campaign import CampaignConfig
from campaign_orchestrator.paths import ProjectPaths

DEFAULTS_FILE = "_defaults.yaml"

try:  # the C loader is ~10x faster; parse time matters with thousands of campaigns
    _SafeLoader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[attr-defined]
except AttributeError:  # pragma: no cover - libyaml missing
    _SafeLoader = yaml.SafeLoader


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong in one file."""

    field: str
    message: str
    line: int | None = None

    def render(self, path: Path) -> str:
        where = f"{path}:{self.line}" if self.line else str(path)
        return f"{where}: {self.field or '(file)'}: {self.message}"


@dataclass(frozen=True)
class ConfigError:
    """A campaign file that cannot become a DAG, with every problem found in it."""

    path: Path
    campaign_id: str
    problems: tuple[ConfigProblem, ...]

    def render(self) -> str:
        return "\n".join(p.render(self.path) for p in self.problems)


@dataclass
class LoadResult:
    configs: dict[str, tuple[Path, CampaignConfig]] = field(default_factory=dict)
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
) -> LoadResult:
    """Load every campaign in ``config_dir``; with ``only_id``, validate just that one fully.

    ``only_id`` serves Airflow's parsing context: a worker running one task needs one DAG, so
    other files are read only far enough to learn their ids.
    """
    paths = paths or ProjectPaths.discover()
    result = LoadResult()
    defaults, defaults_error = _read_defaults(config_dir)
    if defaults_error:
        result.errors.append(defaults_error)
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


def load_campaign_file(
    path: Path, defaults: dict[str, Any], paths: ProjectPaths, only_id: str | None = None
) -> CampaignConfig | ConfigError | None:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return ConfigError(path, _fallback_id(path), (ConfigProblem(
            "", f"not UTF-8 text (byte {exc.start}: {exc.object[exc.start:exc.start + 1]!r}); save the file as UTF-8"),))
    if only_id is not None and only_id not in (path.stem, _fallback_id(path)) and only_id not in text \
            and "\\" not in text:
        # A worker running one task needs one campaign: a file that cannot be that campaign
        # (the id is not its name, not in its text, and no escape could spell it) is not parsed.
        return None
    try:
        node, raw = _parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        return ConfigError(path, _fallback_id(path), (ConfigProblem("", f"not valid YAML: {exc}", line),))
    except ValueError as exc:  # an impossible date YAML reads as one (2026-02-30): not a YAMLError
        return ConfigError(path, _fallback_id(path), (_bad_timestamp(text, exc),))
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return ConfigError(path, _fallback_id(path), (ConfigProblem("", "must be a mapping of campaign fields"),))
    raw.setdefault("id", path.stem)
    # An unusable id's placeholder DAG goes by the file name (_safe_id): Airflow may ask for that.
    if only_id is not None and only_id not in (raw.get("id"), _safe_id(raw, path)):
        return None
    merged = deep_merge(defaults, raw)
    missing_files = check_references(merged, paths, node)
    try:
        config = CampaignConfig.model_validate(merged)
    except ValidationError as exc:
        unique: dict[tuple[str, int | None], ConfigProblem] = {}
        for err in exc.errors():
            # One problem per field: the members of a union each fail on the same value.
            problem = _problem_from_pydantic(err, node)
            unique.setdefault((problem.field, problem.line), problem)
        problems = list(unique.values())
        return ConfigError(path, _safe_id(raw, path), tuple(problems + missing_files))
    if missing_files:
        return ConfigError(path, config.id, tuple(missing_files))
    return config


def _bad_timestamp(text: str, exc: ValueError) -> ConfigProblem:
    """The field and line of the unquoted date or time that YAML could not build."""
    constructor = yaml.constructor.SafeConstructor()
    stack: list[tuple[tuple[Any, ...], yaml.Node]] = [((), yaml.compose(text, Loader=_SafeLoader))]
    while stack:
        loc, node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            stack.extend(((*loc, key.value), value) for key, value in node.value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(((*loc, index), item) for index, item in enumerate(node.value))
        elif node is not None and node.tag == "tag:yaml.org,2002:timestamp":
            try:
                constructor.construct_yaml_timestamp(node)
            except ValueError as bad:
                return ConfigProblem(_format_loc(loc), f"{node.value!r} is not a valid date or time: {bad}",
                                     node.start_mark.line + 1)
    return ConfigProblem("", f"not valid YAML: {exc}")


def _parse_yaml(text: str) -> tuple[yaml.Node | None, Any]:
    """The document's node tree (for line numbers in errors) and its data, from one parse."""
    loader = _SafeLoader(text)
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    finally:
        loader.dispose()


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
                    _format_loc(loc),
                    f"file not found: {paths.sql / sql}; create it or fix the path (relative to include/sql/)",
                    _line_of(node, loc),
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
        if missing:
            problems.append(
                ConfigProblem(
                    f"steps[{index}].template",
                    f"template {step['template']!r} lacks {', '.join(missing)} in {folder}",
                    _line_of(node, ("steps", index, "template")),
                )
            )
    return problems


def _read_defaults(config_dir: Path) -> tuple[dict[str, Any], ConfigError | None]:
    path = config_dir / DEFAULTS_FILE
    if not path.is_file():
        return {}, None
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_SafeLoader) or {}
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


def _fallback_id(path: Path) -> str:
    """The file name made a valid DAG id: the invalid-config placeholder DAG needs one
    (Airflow refuses ``Hello World``, and raising here would hide every campaign)."""
    name = re.sub(r"[^a-z0-9_]", "_", path.stem.lower())
    return (name if name[:1].isalpha() else f"campaign_{name}")[:63]


def _safe_id(raw: dict[str, Any], path: Path) -> str:
    value = raw.get("id")
    return value if isinstance(value, str) and re.match(IDENTIFIER, value) else _fallback_id(path)


def _problem_from_pydantic(err: dict[str, Any], node: yaml.Node | None) -> ConfigProblem:
    raw_loc = tuple(err["loc"])
    loc = _within_file(_strip_union_tags(raw_loc), node)
    field_path = _format_loc(loc)
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        allowed = _allowed_keys(raw_loc[:-1])
        hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        message = f"unknown field {loc[-1]!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
        if allowed:
            message += f" Valid fields here: {', '.join(sorted(allowed))}"
    elif err["type"] == "union_tag_invalid":
        ctx = err.get("ctx", {})
        discriminator = str(ctx.get("discriminator", "tag")).strip("'")
        if discriminator == "_step_kind()":  # steps are told apart by channel (or a wait key)
            discriminator = "channel"
        loc = (*loc, discriminator)
        field_path = _format_loc(loc)
        message = f"unknown {discriminator} {ctx.get('tag')!r}; valid: {ctx.get('expected_tags')}"
    elif err["type"] == "union_tag_not_found" and "_step_kind" in str(err.get("ctx", {}).get("discriminator")):
        loc = (*loc, "channel")
        field_path = _format_loc(loc)
        message = (
            "a step needs a channel (email, sms, push, direct_mail, webhook), or is a wait: "
            "{id: ..., wait: 2d, after: ...}"
        )
    elif err["type"] == "missing":
        message = "required field is missing"
    elif "input" in err and err["type"] not in ("value_error",) and not isinstance(err["input"], (dict, list)):
        message += f" (got {err['input']!r})"
    elif err["type"] == "value_error" and not loc:
        # A check across fields names its field first ("steps[2].after: unknown step ..."):
        # report it at that field, and at its line.
        named = _NAMED_FIELD.match(message)
        if named:
            loc = tuple(int(p) if p.isdigit() else p for p in re.findall(r"[a-z_][a-z0-9_]*|\d+", named.group(1)))
            field_path, message = named.group(1), message[named.end():]
    return ConfigProblem(field_path, message, _line_of(node, loc))


_NAMED_FIELD = re.compile(r"^([a-z_][a-z0-9_]*(?:\[\d+\])?(?:\.[a-z_][a-z0-9_]*(?:\[\d+\])?)*): ")


def _within_file(loc: tuple[Any, ...], node: yaml.Node | None) -> tuple[Any, ...]:
    """Cut the path where the file has a plain value (or a list, and the path goes on with a
    name): what pydantic adds past it names the union members it tried
    (``valid.start.datetime``, ``valid.start.date``), not fields."""
    current = node
    for index, part in enumerate(loc):
        if isinstance(current, yaml.ScalarNode) or (isinstance(current, yaml.SequenceNode) and isinstance(part, str)):
            return loc[:index] if index else loc  # an empty document (``~``) is no mapping to cut
        if isinstance(current, yaml.MappingNode):
            current = next((value for key, value in current.value if key.value == part), None)
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(current.value):
            current = current.value[part]
        else:
            break
    return loc


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


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _allowed_keys(raw_loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model at pydantic's ``raw_loc`` (tags included), for 'did you mean'."""
    from campaign_orchestrator.config.channels import STEP_MODELS

    model: type[BaseModel] | None = CampaignConfig
    parts = list(raw_loc)
    while parts:
        part = parts.pop(0)
        if model is CampaignConfig and part == "steps":
            if len(parts) >= 2 and isinstance(parts[0], int) and parts[1] in STEP_MODELS:
                model = STEP_MODELS[parts[1]]
                parts = parts[2:]
                continue
            return []
        if isinstance(part, int) or model is None:
            continue
        info = model.model_fields.get(part)
        annotation = getattr(info, "annotation", None) if info else None
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        if model is None:
            return []
    return list(model.model_fields) if model else []


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest YAML node on ``loc`` that exists in the file."""
    line = None
    current = node
    for part in loc:
        if isinstance(current, yaml.MappingNode):
            nxt = None
            for key_node, value_node in current.value:
                if key_node.value == part:
                    line = key_node.start_mark.line + 1
                    nxt = value_node
                    break
            current = nxt
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int) and part < len(current.value):
            current = current.value[part]
            line = current.start_mark.line + 1
        else:
            break
    return line
