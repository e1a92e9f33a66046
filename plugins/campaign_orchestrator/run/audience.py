"""Evaluate a campaign's audience inside PostgreSQL into the run's frozen snapshot."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from campaign_orchestrator.sqlfiles import query

if TYPE_CHECKING:
    from pathlib import Path

log = logging.getLogger(__name__)

_PARAM = re.compile(r"%\((\w+)\)s")


class AudienceError(RuntimeError):
    """The audience SQL cannot be evaluated; the message names the file and the cause."""


class GuardrailExceeded(RuntimeError):
    pass


@dataclass(frozen=True)
class AudienceResult:
    size: int
    frozen_earlier: bool


def read_audience_sql(path: Path) -> str:
    text = path.read_text(encoding="utf-8").strip()
    # The SELECT is spliced in as a subquery, where a trailing semicolon is a syntax error.
    return text.rstrip(";").rstrip()


def referenced_params(sql_text: str) -> set[str]:
    return set(_PARAM.findall(sql_text))


def check_params(sql_text: str, params: dict[str, Any], where: str) -> None:
    missing = referenced_params(sql_text) - set(params)
    if missing:
        raise AudienceError(
            f"{where}: the SQL uses {', '.join(f'%({m})s' for m in sorted(missing))} "
            f"but audience.params gives no value for it; add it to the campaign's audience.params"
        )


def evaluate_audience(
    conn: psycopg.Connection,
    run_key: int,
    sql_path: Path,
    params: dict[str, Any],
    max_audience: int | None,
) -> AudienceResult:
    """Insert the audience into ``campaign.audience_member`` once per run.

    A run whose audience was already evaluated (a retried or cleared task) keeps its snapshot:
    the members a run started with are the members it finishes with.
    """
    row = conn.execute(
        "SELECT evaluated_at, audience_size FROM campaign.run WHERE run_key = %s", (run_key,)
    ).fetchone()
    if row and row[0] is not None:
        log.info("Audience of run %s was frozen at %s with %s members; reusing it", run_key, row[0], row[1])
        return AudienceResult(int(row[1]), frozen_earlier=True)

    sql_text = read_audience_sql(sql_path)
    check_params(sql_text, params, str(sql_path))
    audience = sql.SQL(sql_text)  # type: ignore[arg-type]  # the campaign author's own SQL file
    try:
        with conn.transaction():
            columns = probe_audience_columns(conn, sql_text, params, sql_path)
            if "profile_id" not in columns:
                raise AudienceError(
                    f"{sql_path}: the audience SELECT must return a profile_id column; it returns {', '.join(columns)}"
                )
            entity_key = (
                sql.SQL("coalesce(audience.entity_key::text, '')") if "entity_key" in columns else sql.Literal("")
            )
            statement = query("evaluate_audience", audience=audience, entity_key=entity_key)
            conn.execute(statement, {**params, "run_key": run_key})
            size = conn.execute(
                "SELECT count(*) FROM campaign.audience_member WHERE run_key = %s", (run_key,)
            ).fetchone()[0]
            if max_audience is not None and size > max_audience:
                raise GuardrailExceeded(
                    f"audience of {size:,} members exceeds guardrails.max_audience = {max_audience:,}. "
                    f"Narrow the audience SQL ({sql_path.name}), raise the guardrail in the campaign file, "
                    f"or trigger the run with the parameter override_max_audience = true"
                )
            conn.execute("ANALYZE campaign.audience_member")
            conn.execute(
                "UPDATE campaign.run SET evaluated_at = now(), audience_size = %s WHERE run_key = %s",
                (size, run_key),
            )
    except psycopg.Error as exc:
        diag = exc.diag
        position = f" at character {diag.statement_position}" if diag.statement_position else ""
        raise AudienceError(
            f"{sql_path}: PostgreSQL rejected the audience SQL{position}: {diag.message_primary or exc}"
            + (f" (hint: {diag.message_hint})" if diag.message_hint else "")
        ) from exc
    return AudienceResult(int(size), frozen_earlier=False)


_PROBE_PREFIX = "SELECT * FROM ("


def probe_audience_columns(conn: psycopg.Connection, text: str, params: dict[str, Any], sql_path: Path) -> list[str]:
    """Plan the SELECT without running it: syntax and unknown names fail here, with a line number."""
    try:
        with conn.transaction():
            probe = sql.SQL(_PROBE_PREFIX + "{}) AS audience LIMIT 0").format(sql.SQL(text))  # type: ignore[arg-type]
            cur = conn.execute(probe, params)
    except psycopg.Error as exc:
        diag = exc.diag
        where = str(sql_path)
        if diag.statement_position:
            offset = int(diag.statement_position) - len(_PROBE_PREFIX) - 1
            if 0 <= offset <= len(text):
                line = text.count("\n", 0, offset) + 1
                column = offset - (text.rfind("\n", 0, offset) + 1) + 1
                where = f"{sql_path}:{line}:{column}"
        raise AudienceError(
            f"{where}: PostgreSQL rejected the audience SQL: {diag.message_primary or exc}"
            + (f" (hint: {diag.message_hint})" if diag.message_hint else "")
        ) from exc
    return [col.name for col in cur.description or ()]
