"""The sandboxed Jinja environment message templates render in, and static checks on them.

Templates are written by campaign authors, not by the engineers who run Airflow, so they
render in an :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment`: no access to Python
internals (``''.__class__.__mro__``), no mutation of the context, and an unknown name is an
error (:class:`~jinja2.StrictUndefined`) rather than an empty string in 100,000 mailboxes.

Two static checks run on the template source before anything is sent:

- :func:`undeclared_variables` rejects top-level names other than those a send provides
  (``profile``, ``campaign``, ``message``, ``entity_key``, ``unsubscribe_url``);
- :func:`referenced_fields` lists the ``profile`` columns the templates read, which is all a
  send fetches from the CRM (the "skinny profile"); :func:`referenced_entity_paths` lists
  the ``entity`` / ``entities`` paths they read (``entity.product.name``), which is all a
  send fetches of the audience's entities.

Both follow ``{% extends %}``, ``{% include %}`` and ``{% import %}`` of constant names.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateSyntaxError, meta, nodes, select_autoescape
from jinja2.filters import do_urlencode
from jinja2.sandbox import ImmutableSandboxedEnvironment

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, MutableMapping

    from jinja2 import Environment

CONTEXT_NAMES = frozenset({"profile", "campaign", "message", "entity_key", "unsubscribe_url", "entity", "entities"})
"""Top-level names a template may use, besides Jinja's own globals (``range``, ``namespace``…).
``unsubscribe_url`` is the signed one-click link of a marketing email (None elsewhere).
``entity`` is the message's audience entity (one message per entity) and ``entities`` the
profile's audience entities (one message per profile), each holding only the fields the
templates name, with linked entities nested (``entity.product.name``)."""

ENTITY = "entity"
ENTITIES = "entities"

_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_DICT_ATTRIBUTES = frozenset(dir(dict))


class TemplateCheckError(ValueError):
    """Templates use something a send cannot provide: ``problems`` lists every one found,
    each naming its file (and line) and name; ``str()`` joins them."""

    def __init__(self, problems: str | Iterable[str], partial: TemplateFields | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.partial = partial
        """What the parts without problems read, so later checks can go on with them."""
        super().__init__("\n".join(self.problems))


def _none_as_empty(value: Any) -> Any:
    # Profile columns are often NULL: print nothing rather than the word "None".
    return "" if value is None else value


_URL_QUOTED = {code: do_urlencode(chr(code)) for code in range(128)}
"""Jinja's ``urlencode`` of each ASCII character; percent-encoding maps character by character."""


def _urlencode(value: Any) -> str:
    # Jinja's filter quotes byte by byte in Python, some 8 µs for a Message-ID (twice in the
    # demo email); an ASCII str is translated in C to the very same text.
    if type(value) is str and value.isascii():
        return value.translate(_URL_QUOTED)
    return do_urlencode(value)


class _MessageEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with each template's globals in one plain dict."""

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        # Every render copies the template's globals into its context, twice: out of Jinja's
        # default ChainMap (template globals over the environment's) that takes Python-level
        # lookups, a few microseconds per render, three renders per email. Nothing adds
        # environment globals after it is built, so a snapshot holds the same objects
        # (the sandbox's own range() among them); the template's still take precedence.
        return {**self.globals, **(d or {})}


@lru_cache(maxsize=16)
def _environment(folder: str) -> ImmutableSandboxedEnvironment:
    env = _MessageEnvironment(
        loader=FileSystemLoader(folder),
        undefined=StrictUndefined,
        autoescape=select_autoescape(["html", "htm", "xml"], default_for_string=False),
        finalize=_none_as_empty,
        keep_trailing_newline=False,
    )
    env.filters["urlencode"] = _urlencode
    return env


def require_template_parts(folder: Path, template: str, parts: Iterable[str]) -> None:
    """Fail at renderer construction, naming the folder, when a template file is missing."""
    missing = [part for part in parts if not (folder / part).is_file()]
    if missing:
        raise FileNotFoundError(f"template {template!r} lacks {', '.join(missing)} in {folder}")


def template_environment(templates: Path | str) -> ImmutableSandboxedEnvironment:
    """The sandboxed environment for the message templates under ``templates``.

    One environment per folder and process, so compiled templates are cached across the
    renderers of a process (Jinja's cache recompiles a file only when it changed). Renderers
    keep the :class:`~jinja2.Template` objects they got, so sending costs no lookup or stat().
    """
    return _environment(str(Path(templates).resolve()))


def _parse(env: Environment, name: str) -> nodes.Template:
    if env.loader is None:
        raise TypeError("the environment has no loader")
    source, filename, _ = env.loader.get_source(env, name)
    # Parse errors carry the file name and line from here.
    return env.parse(source, name, filename)


def _closure(env: Environment, names: Iterable[str]) -> Iterator[tuple[str, nodes.Template]]:
    """Each template of ``names`` and of what they extend, include or import, once."""
    pending = list(names)
    seen: set[str] = set()
    while pending:
        name = pending.pop(0)
        if name in seen:
            continue
        seen.add(name)
        ast = _parse(env, name)
        for ref in meta.find_referenced_templates(ast):
            if ref is None:
                raise TemplateCheckError(
                    f"{name}: extends, includes or imports a template whose name is computed; "
                    "use a constant name so the template can be checked before sending"
                )
            pending.append(ref)
        yield name, ast


def undeclared_variables(
    env: Environment, template_names: Iterable[str], allowed: Iterable[str] = CONTEXT_NAMES
) -> None:
    """Raise :class:`TemplateCheckError` if a template uses a name a send does not provide.

    ``allowed`` are the context names; Jinja's globals (``range``, ``namespace``…) are
    always allowed.
    """
    known = set(allowed) | set(env.globals)
    problems = []
    for name, ast in _closure(env, template_names):
        for unknown in sorted(meta.find_undeclared_variables(ast) - known):
            line = next((n.lineno for n in ast.find_all(nodes.Name) if n.name == unknown), None)
            close = difflib.get_close_matches(unknown, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            problems.append(
                f"{name}{f':{line}' if line else ''}: unknown name {unknown!r}{hint} Templates may only use "
                f"{', '.join(sorted(set(allowed)))}"
            )
    if problems:
        raise TemplateCheckError(problems)


def referenced_fields(env: Environment, template_names: Iterable[str], root: str = "profile") -> tuple[str, ...]:
    """The ``root`` fields the templates read: ``profile.first_name``, ``profile['city']``,
    ``profile.get('tier')``, in any expression, loop, condition or filter.

    The whole ``root`` object used as a value (``{{ profile }}``, ``{% set p = profile %}``,
    ``profile[key]``) is an error: the send only fetches fields it can name in advance.
    Returns sorted, distinct names.
    """
    fields: set[str] = set()
    problems: list[str] = []
    for name, ast in _closure(env, template_names):
        for found in _fields_in(ast, root, name, problems):
            if not _FIELD.fullmatch(found):
                problems.append(f"{name}: {root}[{found!r}] is not a column name")
            fields.add(found)
    if problems:
        raise TemplateCheckError(problems)
    return tuple(sorted(fields))


def _fields_in(node: nodes.Node, root: str, template: str, problems: list[str]) -> Iterator[str]:
    # A field access is the only way ``root`` may appear; anything else is the bare object.
    if isinstance(node, nodes.Call) and _is_root_get(node.node, root):
        if node.args and isinstance(node.args[0], nodes.Const) and isinstance(node.args[0].value, str):
            yield node.args[0].value
            for child in [*node.args[1:], *node.kwargs]:
                yield from _fields_in(child, root, template, problems)
            return
        problems.append(f"{template}:{node.lineno}: {root}.get() needs a constant field name")
        return
    if isinstance(node, nodes.Getattr) and _is_root(node.node, root):
        if node.attr in _DICT_ATTRIBUTES:
            # profile.items is the dict method, not the column: Jinja tries attributes first.
            problems.append(
                f"{template}:{node.lineno}: {root}.{node.attr} is a dict method; write {root}['{node.attr}']"
            )
            return
        yield node.attr
        return
    if isinstance(node, nodes.Getitem) and _is_root(node.node, root):
        if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            yield node.arg.value
            return
        problems.append(
            f"{template}:{node.lineno}: {root}[...] needs a constant field name, e.g. {root}['city']"
        )
        return
    if _is_root(node, root):
        problems.append(
            f"{template}:{node.lineno}: uses {root!r} as a whole; name each field ({root}.first_name) "
            "so the send fetches only those columns"
        )
        return
    for child in node.iter_child_nodes():
        yield from _fields_in(child, root, template, problems)


def _is_root(node: nodes.Node, root: str) -> bool:
    return isinstance(node, nodes.Name) and node.name == root and node.ctx == "load"


def _is_root_get(node: nodes.Node, root: str) -> bool:
    return isinstance(node, nodes.Getattr) and node.attr == "get" and _is_root(node.node, root)


EntityPath = tuple[str, ...]


@dataclass(frozen=True)
class TemplateFields:
    """What a step's templates read: profile columns, and paths into its audience entities."""

    profile: tuple[str, ...] = ()
    entity: tuple[EntityPath, ...] = ()
    """Paths under ``entity``: ``("starts_on",)``, ``("product", "name")``…"""
    entities: tuple[EntityPath, ...] = ()
    """Paths under each item of ``entities``."""
    uses_entities: bool = False
    """``entities`` appears, if only as ``entities|length``: the list must be fetched."""

    @property
    def uses_entity(self) -> bool:
        return bool(self.entity)


def referenced_entity_paths(env: Environment, template_names: Iterable[str]) -> TemplateFields:
    """The paths the templates read under ``entity`` and under each item of ``entities``.

    ``entity.start_date``, ``entity.product.name``, ``entity['status']``, ``entity.get('x')``;
    ``{% for b in entities %}{{ b.product.name }}{% endfor %}``, ``entities[0].starts_on``,
    ``entities|length``, ``{% if entities %}``. A path may go on past the field
    (``entity.starts_on.year``): which segments are linked entities and which is the column
    is decided against the entity catalog when the send is planned. Using ``entity``, an
    item of ``entities`` or the list itself as a whole value is an error, as for profile.
    """
    collector = _EntityPathCollector()
    for name, ast in _closure(env, template_names):
        collector.template = name
        collector.visit(ast, frozenset())
    if collector.problems:
        raise TemplateCheckError(collector.problems)
    return TemplateFields(
        entity=tuple(sorted(collector.entity)),
        entities=tuple(sorted(collector.entities)),
        uses_entities=collector.uses_entities or bool(collector.entities),
    )


class _EntityPathCollector:
    def __init__(self) -> None:
        self.template = ""
        self.entity: set[EntityPath] = set()
        self.entities: set[EntityPath] = set()
        self.uses_entities = False
        self.problems: list[str] = []

    def visit(self, node: nodes.Node, items: frozenset[str]) -> None:
        """``items`` are the loop variables standing for one item of ``entities``."""
        if isinstance(node, nodes.For):
            self._for(node, items)
            return
        if isinstance(node, nodes.Filter) and _is_root(node.node, ENTITIES) and node.name in ("length", "count"):
            self.uses_entities = True
            for child in [*node.args, *node.kwargs]:
                self.visit(child, items)
            return
        if isinstance(node, (nodes.If, nodes.CondExpr, nodes.Not)):
            # Truthiness of the list (``{% if entities %}``) exposes no item.
            test = node.node if isinstance(node, nodes.Not) else node.test
            if _is_root(test, ENTITIES):
                self.uses_entities = True
                for child in node.iter_child_nodes():
                    if child is not test:
                        self.visit(child, items)
                return
        chain = _access_chain(node)
        if chain is not None and (chain[0] in (ENTITY, ENTITIES) or chain[0] in items):
            root, segments, rest = chain
            self._record(root, segments, node.lineno)
            for child in rest:
                self.visit(child, items)
            return
        if isinstance(node, nodes.Name) and node.ctx == "load" and (node.name in (ENTITY, ENTITIES, *items)):
            what = "an item of entities" if node.name in items else repr(node.name)
            example = "entity.start_date, entity.product.name" if node.name == ENTITY else "b.start_date, b.product.name"
            self.problems.append(
                f"{self.template}:{node.lineno}: uses {what} as a whole; name each field ({example}), "
                "with constant names, so the send fetches only those columns"
                + ("; loop over entities ({% for b in entities %}), count it (entities|length) or index it "
                   "(entities[0].start_date); the step's entities_order_by orders it" if node.name == ENTITIES else "")
            )
            return
        for child in node.iter_child_nodes():
            self.visit(child, items)

    def _for(self, node: nodes.For, items: frozenset[str]) -> None:
        iterable = node.iter
        sliced = isinstance(iterable, nodes.Getitem) and isinstance(iterable.arg, nodes.Slice)
        if sliced and _is_root(iterable.node, ENTITIES):  # type: ignore[attr-defined]
            self.visit(iterable.arg, items)  # entities[:3]
            iterable = iterable.node
        if _is_root(iterable, ENTITIES):
            if not isinstance(node.target, nodes.Name):
                self.problems.append(
                    f"{self.template}:{node.lineno}: loop over entities with one name, e.g. {{% for b in entities %}}"
                )
                return
            self.uses_entities = True
            inner = items | {node.target.name}
        else:
            self.visit(node.iter, items)
            targets = [node.target, *node.target.find_all(nodes.Name)]
            inner = items - {n.name for n in targets if isinstance(n, nodes.Name)}
        for child in node.body:
            self.visit(child, inner)
        if node.test is not None:
            self.visit(node.test, inner)
        for child in node.else_:
            self.visit(child, items)

    def _record(self, root: str, segments: list[tuple[str | int, bool]], lineno: int) -> None:
        if root == ENTITIES:
            if not segments or not isinstance(segments[0][0], int):
                self.problems.append(
                    f"{self.template}:{lineno}: entities is a list: loop over it ({{% for b in entities %}}"
                    "{{ b.start_date }}{% endfor %}) or index it (entities[0].start_date)"
                )
                return
            segments = segments[1:]
        path: list[str] = []
        for value, _ in segments:
            if not isinstance(value, str):
                break  # an index into a column's value (entity.tags[0]): the path ends before it
            path.append(value)
        label = ENTITY if root == ENTITY else "an item of entities"
        if not path:
            self.problems.append(
                f"{self.template}:{lineno}: uses {label} as a whole; name each field (e.g. .start_date)"
            )
            return
        first, by_attribute = segments[0]
        if by_attribute and first in _DICT_ATTRIBUTES:
            self.problems.append(
                f"{self.template}:{lineno}: {label}.{first} is a dict method; write [{first!r}] instead"
            )
            return
        if not _FIELD.fullmatch(path[0]):
            self.problems.append(f"{self.template}:{lineno}: {label}[{path[0]!r}] is not a column name")
            return
        (self.entity if root == ENTITY else self.entities).add(tuple(path))


def _access_chain(node: nodes.Node) -> tuple[str, list[tuple[str | int, bool]], list[nodes.Node]] | None:
    """``a.b['c'].get('d', x)`` -> ("a", [("b", True), ("c", False), ("d", False)], [x]): the
    name a chain of constant accesses starts from, its segments (value, by attribute), and the
    other expressions in it (``.get`` defaults). None if the chain does not start at a name."""
    segments: list[tuple[str | int, bool]] = []
    rest: list[nodes.Node] = []
    current = node
    while True:
        if isinstance(current, nodes.Getattr):
            segments.append((current.attr, True))
            current = current.node
        elif (
            isinstance(current, nodes.Getitem)
            and isinstance(current.arg, nodes.Const)
            and isinstance(current.arg.value, (str, int))
            and not isinstance(current.arg.value, bool)
        ):
            segments.append((current.arg.value, False))
            current = current.node
        elif (
            isinstance(current, nodes.Call)
            and isinstance(current.node, nodes.Getattr)
            and current.node.attr == "get"
            and current.args
            and isinstance(current.args[0], nodes.Const)
            and isinstance(current.args[0].value, str)
        ):
            segments.append((current.args[0].value, False))
            rest += [*current.args[1:], *current.kwargs]
            current = current.node.node
        elif isinstance(current, nodes.Name) and current.ctx == "load" and segments:
            return current.name, segments[::-1], rest
        else:
            return None


def check_template_fields(env: Environment, template_names: Iterable[str]) -> TemplateFields:
    """All checks; return what the templates read. Syntax errors are re-raised as
    :class:`TemplateCheckError` naming the file and line."""
    names = list(template_names)
    problems: list[str] = []
    clean = []
    for name in names:  # each part on its own: one broken file hides nothing in the others
        found = len(problems)
        for check in (undeclared_variables, referenced_entity_paths, referenced_fields):
            try:
                check(env, [name])
            except TemplateSyntaxError as exc:
                message = f"{exc.name or exc.filename}:{exc.lineno}: {exc.message}"
                if message not in problems:
                    problems.append(message)
                break
            except TemplateCheckError as exc:
                problems += [p for p in exc.problems if p not in problems]
        if len(problems) == found:
            clean.append(name)
    if problems:
        raise TemplateCheckError(problems, _read_by(env, clean) if clean else None)
    return _read_by(env, names)


def _read_by(env: Environment, names: list[str]) -> TemplateFields:
    entity_fields = referenced_entity_paths(env, names)
    return replace(entity_fields, profile=referenced_fields(env, names))


def used_variables(env: Environment, template_names: Iterable[str]) -> frozenset[str]:
    """Every variable the templates use, as comparable names: the context names
    (``unsubscribe_url``, ``campaign``…), ``profile.<field>``, ``entity.<path>`` and
    ``entities.<path>``. Locale variants of one folder must use the same ones."""
    names = list(template_names)
    fields = _read_by(env, names)
    top = {name for _, ast in _closure(env, names) for name in meta.find_undeclared_variables(ast)}
    return frozenset(
        {n for n in top if n not in ("profile", ENTITY, ENTITIES)}
        | {f"profile.{f}" for f in fields.profile}
        | {f"entity.{'.'.join(p)}" for p in fields.entity}
        | {f"entities.{'.'.join(p)}" for p in fields.entities}
    )


def check_templates(env: Environment, template_names: Iterable[str]) -> tuple[str, ...]:
    """All checks; return the referenced profile fields (see :func:`check_template_fields`)."""
    return check_template_fields(env, template_names).profile
