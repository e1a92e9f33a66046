"""Evaluate a campaign's audience inside PostgreSQL into the run's frozen snapshot."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from campaign_orchestrator.audience.compile import AudienceQuery, read_sql

from campaign_orchestrator.sqlfiles import query

if TYPE_CHECKING:
    from campaign_orchestrator.audience.catalog import Catalog
    from campaign_orchestrator.audience.split import SegmentRule
    from campaign_orchestrator.config.audience import Holdout, Split

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


read_audience_sql = read_sql


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
    source: Path | AudienceQuery,
    params: dict[str, Any] | None,
    max_audience: int | None,
    holdout: Holdout | None = None,
    split: Split | None = None,
    catalog: Catalog | None = None,
) -> AudienceResult:
    """Insert the audience into ``campaign.audience_member`` once per run.

    ``source`` is a SQL file (with ``params``) or a compiled :class:`AudienceQuery`. A run
    whose audience was already evaluated (a retried or cleared task) keeps its snapshot:
    the members a run started with are the members it finishes with. A split by rules is
    drawn from a temporary draft of the audience before the snapshot is frozen, in the same
    transaction (``catalog`` resolves its linked-entity conditions; the project's
    include/entities.yaml by default).
    """
    row = conn.execute(
        "SELECT evaluated_at, audience_size FROM campaign.run WHERE run_key = %s", (run_key,)
    ).fetchone()
    if row and row[0] is not None:
        log.info("Audience of run %s was frozen at %s with %s members; reusing it", run_key, row[0], row[1])
        return AudienceResult(int(row[1]), frozen_earlier=True)

    if isinstance(source, AudienceQuery):
        audience_query = source
    else:
        audience_query = AudienceQuery(read_audience_sql(source), dict(params or {}), str(source), False, source)
    label = audience_query.label
    check_params(audience_query.text, audience_query.params, label)
    audience = sql.SQL("\n" + audience_query.text + "\n")  # type: ignore[arg-type]  # the campaign's own SQL
    draw_params, held_out, segment = _draw(holdout, split)
    rules = split_rules(split, catalog, audience_query.timezone)
    try:
        with conn.transaction():
            # One evaluation of a run at a time (a retry beside a zombie attempt): the second
            # waits here, then finds the snapshot frozen. The lock also holds off deleting the
            # run until the snapshot is committed (the snapshot has no foreign key to check
            # run_key, see migration 0012). NO KEY: other tables' foreign-key checks on this
            # row are not blocked.
            frozen = conn.execute(
                "SELECT evaluated_at, audience_size FROM campaign.run WHERE run_key = %s FOR NO KEY UPDATE",
                (run_key,),
            ).fetchone()
            if frozen is None:
                raise AudienceError(f"{label}: run {run_key} does not exist (deleted?); its audience cannot be frozen")
            if frozen[0] is not None:
                return AudienceResult(int(frozen[1]), frozen_earlier=True)
            columns = probe_audience_columns(conn, audience_query.text, audience_query.params, audience_query)
            if "profile_id" not in columns:
                raise AudienceError(
                    f"{label}: the audience SELECT must return a profile_id column; it returns {', '.join(columns)}"
                )
            entity_key = (
                sql.SQL("coalesce(audience.entity_key::text, '')") if "entity_key" in columns else sql.Literal("")
            )
            # The size is the count of rows inserted: the run's snapshot was empty (never frozen).
            if rules:
                draft = query("split_draft", audience=audience, entity_key=entity_key, held_out=held_out)
                conn.execute(draft, {**audience_query.params, **draw_params})
                size = _split_by_rules(conn, run_key, rules)
            else:
                statement = query(
                    "evaluate_audience", audience=audience, entity_key=entity_key, held_out=held_out, segment=segment,
                    distinct=sql.SQL("" if audience_query.unique else "DISTINCT"),
                )
                size = conn.execute(statement, {**audience_query.params, **draw_params, "run_key": run_key}).rowcount
            if max_audience is not None and size > max_audience:
                where = Path(label).name if audience_query.source_file else label
                raise GuardrailExceeded(
                    f"audience of {size:,} members exceeds guardrails.max_audience = {max_audience:,}. "
                    f"Narrow the audience ({where}), raise the guardrail in the campaign file, "
                    f"or trigger the run with the parameter override_max_audience = true"
                )
            # Fresh statistics: targeting reads the members by a run_key the old ones never
            # saw (no B-tree on run_key to correct the estimate) and joins them to profiles.
            conn.execute("ANALYZE campaign.audience_member")
            # The snapshot's BRIN index finds a run's pages only once they are summarized:
            # now, rather than whenever autovacuum comes by (never, where it is off), so reading
            # this run does not read every unsummarized page of the runs before it.
            conn.execute("SELECT brin_summarize_new_values('campaign.audience_member_run_idx')")
            conn.execute(
                "UPDATE campaign.run SET evaluated_at = now(), audience_size = %s WHERE run_key = %s",
                (size, run_key),
            )
    except psycopg.Error as exc:
        raise rejected(label, exc) from exc
    return AudienceResult(int(size), frozen_earlier=False)


def rejected(label: str, exc: psycopg.Error) -> AudienceError:
    """The error for audience SQL PostgreSQL refused, with its message and hint."""
    diag = exc.diag
    return AudienceError(
        f"{label}: PostgreSQL rejected the audience SQL: {diag.message_primary or exc}"
        + (f" (hint: {diag.message_hint})" if diag.message_hint else "")
    )


def _bucket(expression: str, seed_param: str) -> str:
    """0..9999 from a hash of the profile id: deterministic for a seed, independent across seeds."""
    return f"mod(mod(hashtextextended(({expression})::text, %({seed_param})s), 10000) + 10000, 10000)"


def _draw(holdout: Holdout | None, split: Split | None) -> tuple[dict[str, Any], sql.Composable, sql.Composable]:
    from campaign_orchestrator.audience.compile import seed_of

    params: dict[str, Any] = {}
    held_out: sql.Composable = sql.SQL("false")
    segment: sql.Composable = sql.SQL("NULL::text")
    if holdout is not None:
        params |= {"holdout_seed": seed_of(holdout.salt), "holdout_bp": round(holdout.percent * 100)}
        held_out = sql.SQL(_bucket("audience.profile_id", "holdout_seed") + " < %(holdout_bp)s")  # type: ignore[arg-type]
    if split is not None and split.segments is not None:
        params["split_seed"] = seed_of(split.salt)
        bucket = _bucket("member.profile_id", "split_seed")
        cases, bound = [], 0.0
        names = list(split.segments)
        for name in names[:-1]:
            bound += split.segments[name]
            cases.append(sql.SQL("WHEN {} < {} THEN {}").format(
                sql.SQL(bucket), sql.Literal(round(bound * 100)), sql.Literal(name)))  # type: ignore[arg-type]
        segment = sql.SQL("CASE {} ELSE {} END").format(sql.SQL(" ").join(cases), sql.Literal(names[-1]))
    return params, held_out, segment


def split_rules(split: Split | None, catalog: Catalog | None = None, timezone: str = "UTC") -> list[SegmentRule]:
    """The compiled rules of a split by rules (none for percentages or no split)."""
    if split is None or not split.rules:
        return []
    from campaign_orchestrator.audience.split import compile_split_rules

    if catalog is None:
        from campaign_orchestrator.audience.catalog import load_catalog
        from campaign_orchestrator.paths import ProjectPaths

        catalog = load_catalog(ProjectPaths.discover().root / "include" / "entities.yaml")
    return compile_split_rules(split, catalog, timezone)


def _split_by_rules(conn: psycopg.Connection, run_key: int, rules: list[SegmentRule]) -> int:
    """From the draft (split_draft.sql): one statement per rule, in order, then the snapshot;
    returns the members frozen."""
    conn.execute(query("split_prepare"))
    # A last catch-all rule takes whoever is left: the freeze gives it to them directly.
    otherwise = rules[-1].segment if rules[-1].catch_all else None
    for index, rule in enumerate(rules[:-1] if otherwise else rules):
        try:
            with conn.transaction():
                chosen = sql.SQL(rule.chosen)  # type: ignore[arg-type]  # compiled by audience/split.py
                conn.execute(query("split_rule", chosen=chosen), {**rule.params, "segment": rule.segment})
        except psycopg.Error as exc:
            raise AudienceError(
                f"audience.split.rules[{index}] (segment {rule.segment}): PostgreSQL rejected the rule: "
                f"{exc.diag.message_primary or exc}"
            ) from exc
    frozen = conn.execute(query("split_freeze"), {"run_key": run_key, "otherwise": otherwise}).rowcount
    counts = dict(conn.execute("SELECT segment, count(*) FROM split_segment GROUP BY segment").fetchall())
    left = conn.execute("SELECT count(*) FROM split_candidate").fetchone()[0] - sum(counts.values())
    conn.execute("DROP TABLE audience_draft, split_candidate, split_segment")
    if otherwise:
        counts[otherwise] = left
    log.info(
        "Split by rules (profiles): %s",
        ", ".join(f"{rule.segment} {counts.get(rule.segment, 0):,}" for rule in rules)
        + ("" if otherwise else f", no segment {left:,} (no rule took them; only steps without a segment reach them)"),
    )
    return frozen


def probe_split_rules(conn: psycopg.Connection, rules: list[SegmentRule]) -> None:
    """Plan each rule against empty stand-ins of the draft (no rows read, nothing kept), so
    an unknown column or a type mismatch is reported with the rule that has it."""
    with conn.transaction(force_rollback=True):
        conn.execute(
            "CREATE TEMPORARY TABLE split_candidate (profile_id bigint) ON COMMIT DROP;"
            "CREATE TEMPORARY TABLE split_segment (profile_id bigint, segment text) ON COMMIT DROP"
        )
        for index, rule in enumerate(rules):
            probe = sql.SQL("SELECT * FROM ({}) AS probe LIMIT 0").format(sql.SQL(rule.chosen))  # type: ignore[arg-type]
            try:
                with conn.transaction():
                    conn.execute(probe, rule.params)
            except psycopg.Error as exc:
                raise AudienceError(
                    f"audience.split.rules[{index}] (segment {rule.segment}): PostgreSQL rejected the rule: "
                    f"{exc.diag.message_primary or exc}"
                ) from exc


_PROBE_PREFIX = "SELECT * FROM ("


def probe_audience_columns(
    conn: psycopg.Connection, text: str, params: dict[str, Any], source: Path | AudienceQuery
) -> list[str]:
    """Plan the SELECT without running it: syntax and unknown names fail here, with the file's
    line and column when the SELECT is one file."""
    source_file = source.source_file if isinstance(source, AudienceQuery) else source
    label = source.label if isinstance(source, AudienceQuery) else str(source)
    try:
        return _probe(conn, text, params)
    except psycopg.Error as exc:
        if isinstance(source, AudienceQuery) and source.block_files is not None:
            # Blocks are spliced into one statement: find the block PostgreSQL refuses, and
            # its position in the block's own file.
            _locate_block_error(conn, source)
        raise AudienceError(_rejected(exc, label, source_file, text)) from exc


def _probe(conn: psycopg.Connection, text: str, params: dict[str, Any]) -> list[str]:
    with conn.transaction():
        probe = sql.SQL(_PROBE_PREFIX + "\n{}\n) AS audience LIMIT 0").format(sql.SQL(text))  # type: ignore[arg-type]
        cur = conn.execute(probe, params)
    return [col.name for col in cur.description or ()]


def _rejected(
    exc: psycopg.Error, label: str, source_file: Path | None, text: str, what: str = "the audience SQL"
) -> str:
    """``file:line:column: PostgreSQL rejected …`` (the file's own line and column, through
    psycopg's placeholder numbering), or the label when the text is not one file."""
    from campaign_orchestrator.audience.sql_syntax import line_column, text_offset

    diag = exc.diag
    where = label
    if diag.statement_position and source_file is not None:
        offset = text_offset(_PROBE_PREFIX + "\n" + text, int(diag.statement_position)) - len(_PROBE_PREFIX) - 1
        if 0 <= offset <= len(text):
            where = f"{source_file}:{line_column(text, offset)}"
    return (
        f"{where}: PostgreSQL rejected {what}: {diag.message_primary or exc}"
        + (f" (hint: {diag.message_hint})" if diag.message_hint else "")
    )


def _locate_block_error(conn: psycopg.Connection, source: AudienceQuery) -> None:
    """Raise AudienceError for the first block PostgreSQL rejects on its own; return when
    each block plans alone (the combination is what fails)."""
    for name, text in source.blocks.items():
        prefix = f"{name}__"
        path = (source.block_files or {}).get(name)
        if path is not None:  # an SQL block: its own file, with its own parameter names
            own_text = read_audience_sql(path)
            own_params = {k.removeprefix(prefix): v for k, v in source.params.items() if k.startswith(prefix)}
        else:
            own_text, own_params = text, {k: v for k, v in source.params.items() if k.startswith(prefix)}
        try:
            _probe(conn, own_text, own_params)
        except psycopg.Error as exc:
            raise AudienceError(
                _rejected(exc, f"audience.blocks.{name}", path, own_text, f"block {name}")
            ) from exc
