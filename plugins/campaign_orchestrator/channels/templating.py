"""The sandboxed Jinja environment message templates render in, and static checks on them.

Templates are written by campaign authors, not by the engineers who run Airflow, so they
render in an :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment`: no access to Python
internals (``''.__class__.__mro__``), no mutation of the context, and an unknown name is an
error (:class:`~jinja2.StrictUndefined`) rather than an empty string in 100,000 mailboxes.

Two static checks run on the template source before anything is sent:

- :func:`undeclared_variables` rejects top-level names other than those a send provides
  (``profile``, ``campaign``, ``message``, ``entity_key``, ``unsubscribe_url``);
- :func:`referenced_fields` lists the ``profile`` columns the templates read, which is all a
  send fetches from the CRM (the "skinny profile").

Both follow ``{% extends %}``, ``{% include %}`` and ``{% import %}`` of constant names.
"""

from __future__ import annotations

import difflib
import re
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateSyntaxError, meta, nodes, select_autoescape
from jinja2.sandbox import ImmutableSandboxedEnvironment

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from jinja2 import Environment

CONTEXT_NAMES = frozenset({"profile", "campaign", "message", "entity_key", "unsubscribe_url"})
"""Top-level names a template may use, besides Jinja's own globals (``range``, ``namespace``…).
``unsubscribe_url`` is the signed one-click link of a marketing email (None elsewhere)."""

_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_DICT_ATTRIBUTES = frozenset(dir(dict))


class TemplateCheckError(ValueError):
    """A template uses something a send cannot provide; the message names file and name."""


def _none_as_empty(value: Any) -> Any:
    # Profile columns are often NULL: print nothing rather than the word "None".
    return "" if value is None else value


@lru_cache(maxsize=16)
def _environment(folder: str) -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        loader=FileSystemLoader(folder),
        undefined=StrictUndefined,
        autoescape=select_autoescape(["html", "htm", "xml"], default_for_string=False),
        finalize=_none_as_empty,
        keep_trailing_newline=False,
    )


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
    for name, ast in _closure(env, template_names):
        unknown = sorted(meta.find_undeclared_variables(ast) - known)
        if unknown:
            first = unknown[0]
            close = difflib.get_close_matches(first, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise TemplateCheckError(
                f"{name}: unknown name {first!r}{hint} Templates may only use "
                f"{', '.join(sorted(set(allowed)))}"
                + (f" (also unknown: {', '.join(unknown[1:])})" if len(unknown) > 1 else "")
            )


def referenced_fields(env: Environment, template_names: Iterable[str], root: str = "profile") -> tuple[str, ...]:
    """The ``root`` fields the templates read: ``profile.first_name``, ``profile['city']``,
    ``profile.get('tier')``, in any expression, loop, condition or filter.

    The whole ``root`` object used as a value (``{{ profile }}``, ``{% set p = profile %}``,
    ``profile[key]``) is an error: the send only fetches fields it can name in advance.
    Returns sorted, distinct names.
    """
    fields: set[str] = set()
    for name, ast in _closure(env, template_names):
        for found in _fields_in(ast, root, name):
            if not _FIELD.fullmatch(found):
                raise TemplateCheckError(f"{name}: {root}[{found!r}] is not a column name")
            fields.add(found)
    return tuple(sorted(fields))


def _fields_in(node: nodes.Node, root: str, template: str) -> Iterator[str]:
    # A field access is the only way ``root`` may appear; anything else is the bare object.
    if isinstance(node, nodes.Call) and _is_root_get(node.node, root):
        if node.args and isinstance(node.args[0], nodes.Const) and isinstance(node.args[0].value, str):
            yield node.args[0].value
            for child in [*node.args[1:], *node.kwargs]:
                yield from _fields_in(child, root, template)
            return
        raise TemplateCheckError(f"{template}:{node.lineno}: {root}.get() needs a constant field name")
    if isinstance(node, nodes.Getattr) and _is_root(node.node, root):
        if node.attr in _DICT_ATTRIBUTES:
            # profile.items is the dict method, not the column: Jinja tries attributes first.
            raise TemplateCheckError(
                f"{template}:{node.lineno}: {root}.{node.attr} is a dict method; write {root}['{node.attr}']"
            )
        yield node.attr
        return
    if isinstance(node, nodes.Getitem) and _is_root(node.node, root):
        if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            yield node.arg.value
            return
        raise TemplateCheckError(
            f"{template}:{node.lineno}: {root}[...] needs a constant field name, e.g. {root}['city']"
        )
    if _is_root(node, root):
        raise TemplateCheckError(
            f"{template}:{node.lineno}: uses {root!r} as a whole; name each field ({root}.first_name) "
            "so the send fetches only those columns"
        )
    for child in node.iter_child_nodes():
        yield from _fields_in(child, root, template)


def _is_root(node: nodes.Node, root: str) -> bool:
    return isinstance(node, nodes.Name) and node.name == root and node.ctx == "load"


def _is_root_get(node: nodes.Node, root: str) -> bool:
    return isinstance(node, nodes.Getattr) and node.attr == "get" and _is_root(node.node, root)


def check_templates(env: Environment, template_names: Iterable[str]) -> tuple[str, ...]:
    """Both checks; return the referenced profile fields. Syntax errors are re-raised as
    :class:`TemplateCheckError` naming the file and line."""
    names = list(template_names)
    try:
        undeclared_variables(env, names)
        return referenced_fields(env, names)
    except TemplateSyntaxError as exc:
        raise TemplateCheckError(f"{exc.name or exc.filename}:{exc.lineno}: {exc.message}") from exc
