"""Audience SQL files checked without a database, and PostgreSQL's error positions mapped
back to the user's own file.

:func:`syntax_problems` parses a file with PostgreSQL's own parser (pglast, libpg_query):
a syntax error gets the file's line and column, and a file that is not one SELECT says so.
:func:`text_offset` turns a position PostgreSQL reports in a statement psycopg sent back
into an offset in the text we gave psycopg: psycopg sends ``%(name)s`` as ``$1``, ``$2``…
(and ``%%`` as ``%``), so every placeholder before the error shifts it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")


def syntax_problems(path: Path, text: str) -> list[str]:
    """``file:line:column: …`` for a syntax error, or a file that is not a single SELECT."""
    from pglast import ast, parse_sql
    from pglast.parser import ParseError

    # Placeholders become parameters of the same length, so positions stay the file's own.
    padded = _PLACEHOLDER.sub(lambda m: "$1".ljust(len(m.group(0))) if m.group(1) else "% ", text)
    try:
        statements = parse_sql(padded)
    except ParseError as exc:
        message, position = exc.args[0], exc.args[1] if len(exc.args) > 1 else None
        if position is None:
            return [f"{path}: PostgreSQL's parser rejected it: {message}"]
        # libpg_query reports a byte offset into the UTF-8 text.
        offset = len(padded.encode("utf-8")[: int(position)].decode("utf-8", errors="ignore"))
        return [f"{path}:{line_column(text, offset)}: PostgreSQL's parser rejected it: {message}"]
    if len(statements) != 1 or not isinstance(statements[0].stmt, ast.SelectStmt):
        kinds = ", ".join(type(s.stmt).__name__.removesuffix("Stmt").upper() for s in statements) or "nothing"
        return [f"{path}: must be one SELECT statement (found {kinds}); the run inserts its rows into the snapshot"]
    return []


def line_column(text: str, offset: int) -> str:
    """``line:column`` (both from 1) of a character offset."""
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"{line}:{column}"


def text_offset(text: str, sent_position: int) -> int:
    """The offset in ``text`` (as given to psycopg) of the 1-based character position
    PostgreSQL reported in the statement psycopg sent for it."""
    numbers: dict[str, int] = {}
    shift = 0  # characters the sent statement lost so far
    target = sent_position - 1
    for match in _PLACEHOLDER.finditer(text):
        if match.group(1):
            number = numbers.setdefault(match.group(1), len(numbers) + 1)
            sent = f"${number}"
        else:
            sent = "%"
        if match.start() - shift > target:
            break
        shift += len(match.group(0)) - len(sent)
    return target + shift


__all__ = ["line_column", "syntax_problems", "text_offset"]
