"""Config files' errors, located: ``file:line: field.path: message``.

Shared by every kind of config (campaigns, ingestion sources): reading a YAML file into both
its data and its node tree (for line numbers), and turning pydantic's validation errors into
:class:`ConfigProblem` rows that name the field as the user wrote it, its line, and the valid
choices where there are any. Loading never raises for a bad file: the caller gets a
:class:`ConfigError` with every problem found, so one broken file never hides the others.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

try:  # the C loader is ~10x faster; parse time matters with thousands of campaigns
    SafeLoader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[attr-defined]
except AttributeError:  # pragma: no cover - libyaml missing
    SafeLoader = yaml.SafeLoader


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


class ConfigFileError(ValueError):
    """A config file that does not validate, raised where one file is needed (a task, a
    command); ``str()`` lists every problem, ``error`` has them."""

    def __init__(self, error: ConfigError) -> None:
        super().__init__(error.render())
        self.error = error


def fallback_id(path: Path) -> str:
    """The file name made a valid identifier (lower-case letters, digits, _): a placeholder
    for a file whose own id is unusable (Airflow refuses ``Hello World`` as a DAG id)."""
    name = re.sub(r"[^a-z0-9_]", "_", path.stem.lower())
    return (name if name[:1].isalpha() else f"campaign_{name}")[:63]


def read_yaml_file(path: Path, what: str = "campaign fields") -> tuple[yaml.Node | None, dict[str, Any]] | ConfigError:
    """The mapping in ``path`` and its node tree, or a ConfigError saying why there is none:
    not UTF-8, not YAML (with the line), an impossible date, empty, or not a mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return ConfigError(path, fallback_id(path), (ConfigProblem(
            "", f"not UTF-8 text (byte {exc.start}: {exc.object[exc.start:exc.start + 1]!r}); save the file as UTF-8"),))
    return parse_yaml_text(path, text, what)


def parse_yaml_text(path: Path, text: str, what: str = "campaign fields") -> tuple[yaml.Node | None, dict[str, Any]] | ConfigError:
    try:
        node, raw = _parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        return ConfigError(path, fallback_id(path), (ConfigProblem("", f"not valid YAML: {exc}", line),))
    except ValueError as exc:  # an impossible date YAML reads as one (2026-02-30): not a YAMLError
        return ConfigError(path, fallback_id(path), (_bad_timestamp(text, exc),))
    if raw is None:
        return ConfigError(path, fallback_id(path), (ConfigProblem("", f"file is empty; it must be a mapping of {what}"),))
    if not isinstance(raw, dict):
        return ConfigError(path, fallback_id(path), (ConfigProblem(
            "", f"must be a mapping of {what} (found {type(raw).__name__})"),))
    return node, raw


def validation_problems(
    exc: ValidationError,
    node: yaml.Node | None,
    root: type[BaseModel],
    *,
    strip_loc: Callable[[tuple[Any, ...]], tuple[Any, ...]] = lambda loc: loc,
    allowed_keys: Callable[[tuple[Any, ...]], list[str]] | None = None,
    describe_tag: Callable[[dict[str, Any], tuple[Any, ...]], tuple[tuple[Any, ...], str] | None] = lambda err, loc: None,
) -> list[ConfigProblem]:
    """One :class:`ConfigProblem` per field (the members of a union each fail on the same
    value), located in the file.

    :param root: the model validated, for the valid field names of 'did you mean'.
    :param strip_loc: removes what pydantic adds to a path that the file does not have
        (discriminator tags of tagged unions).
    :param allowed_keys: valid field names at pydantic's raw path, where ``root``'s field
        annotations alone cannot tell (a tagged union); default: follow ``root``'s fields.
    :param describe_tag: a config's own wording for a missing or unknown union tag:
        ``(loc, message)`` or None for the generic one.
    """
    unique: dict[tuple[str, int | None], ConfigProblem] = {}
    for err in exc.errors():
        problem = problem_from_pydantic(err, node, root, strip_loc, allowed_keys, describe_tag)
        unique.setdefault((problem.field, problem.line), problem)
    return list(unique.values())


def problem_from_pydantic(
    err: dict[str, Any],
    node: yaml.Node | None,
    root: type[BaseModel],
    strip_loc: Callable[[tuple[Any, ...]], tuple[Any, ...]] = lambda loc: loc,
    allowed_keys: Callable[[tuple[Any, ...]], list[str]] | None = None,
    describe_tag: Callable[[dict[str, Any], tuple[Any, ...]], tuple[tuple[Any, ...], str] | None] = lambda err, loc: None,
) -> ConfigProblem:
    raw_loc = tuple(err["loc"])
    loc = _within_file(strip_loc(raw_loc), node)
    field_path = format_loc(loc)
    message = err["msg"].removeprefix("Value error, ")
    special = describe_tag(err, loc) if err["type"] in ("union_tag_invalid", "union_tag_not_found") else None
    if special is not None:
        loc, message = special
        field_path = format_loc(loc)
    elif err["type"] == "extra_forbidden":
        allowed = (allowed_keys or (lambda raw: model_fields_at(root, raw)))(raw_loc[:-1])
        hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        message = f"unknown field {loc[-1]!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
        if allowed:
            message += f" Valid fields here: {', '.join(sorted(allowed))}"
    elif err["type"] == "union_tag_invalid":
        ctx = err.get("ctx", {})
        discriminator = str(ctx.get("discriminator", "tag")).strip("'")
        loc = (*loc, discriminator)
        field_path = format_loc(loc)
        message = f"unknown {discriminator} {ctx.get('tag')!r}; valid: {ctx.get('expected_tags')}"
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
    return ConfigProblem(field_path, message, line_of(node, loc))


_NAMED_FIELD = re.compile(r"^([a-z_][a-z0-9_]*(?:\[\d+\])?(?:\.[a-z_][a-z0-9_]*(?:\[\d+\])?)*): ")


def model_fields_at(root: type[BaseModel], raw_loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model at pydantic's ``raw_loc``, following plain model fields."""
    model: type[BaseModel] | None = root
    for part in raw_loc:
        if isinstance(part, int) or model is None:
            continue
        info = model.model_fields.get(part)
        annotation = getattr(info, "annotation", None) if info else None
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        if model is None:
            return []
    return list(model.model_fields) if model else []


def _bad_timestamp(text: str, exc: ValueError) -> ConfigProblem:
    """The field and line of the unquoted date or time that YAML could not build."""
    constructor = yaml.constructor.SafeConstructor()
    stack: list[tuple[tuple[Any, ...], yaml.Node]] = [((), yaml.compose(text, Loader=SafeLoader))]
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
                return ConfigProblem(format_loc(loc), f"{node.value!r} is not a valid date or time: {bad}",
                                     node.start_mark.line + 1)
    return ConfigProblem("", f"not valid YAML: {exc}")


def _parse_yaml(text: str) -> tuple[yaml.Node | None, Any]:
    """The document's node tree (for line numbers in errors) and its data, from one parse."""
    loader = SafeLoader(text)
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    finally:
        loader.dispose()


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


def format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
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
