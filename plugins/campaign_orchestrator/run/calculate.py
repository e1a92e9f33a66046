"""Counts after each stage of a campaign, without recording anything: ``campaigns calculate``.

For each audience block, the combined audience, the deduplicated snapshot, the holdout, each
split segment and, per step, the members excluded by reason and the sendable ones.

Everything happens in one transaction that is rolled back. Each block is evaluated once into
a temporary table and counted there; the blocks are combined from those tables by the run's
own combine SQL, and the audience is evaluated from the combination into
``campaign.audience_member`` by the run's own code (holdout and split included). The steps
are counted with a ``GROUP BY`` over the reasoning SQL a run's targeting inserts into the
ledger (include/sql/orchestrator/target_reasoning.sql): no ledger row is written, and the
counts are those a run would record now. ``campaigns preview`` writes (and rolls back) the
ledger rows themselves, which costs seconds per hundred thousand members.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from campaign_orchestrator.audience.compile import AudienceQuery, combine_sql, compile_audience
from campaign_orchestrator.run.audience import check_params, evaluate_audience, probe_audience_columns, rejected
from campaign_orchestrator.run.runs import register_run
from campaign_orchestrator.run.targeting import count_targets, plan_batches
from campaign_orchestrator.sqlfiles import query

if TYPE_CHECKING:
    from campaign_orchestrator.config.campaign import CampaignConfig
    from campaign_orchestrator.paths import ProjectPaths

WORK_MEM = "64MB"
"""Memory per sort or hash for the calculation's own transaction (PostgreSQL's default is 4MB)."""


@dataclass(frozen=True)
class Count:
    """Members (profile, entity) rows and the distinct profiles among them."""

    members: int
    profiles: int
    seconds: float = 0.0


@dataclass(frozen=True)
class StepCount:
    step_id: str
    channel: str
    segment: str | None
    targeted: int
    """Members the step considers: its segment (or the whole audience) and the holdout."""
    excluded: dict[str, int]
    """Messages not sent, by reason; ``holdout`` is the control group."""
    sendable: int
    batches: int
    seconds: float


@dataclass
class StageCounts:
    """What ``calculate_campaign`` found, stage by stage; ``as_dict`` is JSON (and XCom) ready."""

    campaign_id: str
    blocks: dict[str, Count]
    """Each audience block on its own (empty for a single-SQL audience)."""
    combined: Count
    """Rows of the audience SELECT: blocks after union, intersect and exclude."""
    audience: Count
    """The deduplicated snapshot a run would freeze (after an operator's limit, if any)."""
    held_out: Count
    segments: dict[str, Count]
    """Split segments (non-held-out members); empty without a split."""
    guardrail: int | None
    limit: int | None = None
    steps: list[StepCount] = field(default_factory=list)
    later_steps: dict[str, list[str]] = field(default_factory=dict)
    """Sending steps after others, by id, with the steps they follow: who enters them depends
    on how the earlier messages turn out, so they are not counted in advance."""
    seconds: float = 0.0

    @property
    def exceeds_guardrail(self) -> bool:
        return self.guardrail is not None and self.audience.members > self.guardrail

    def as_dict(self) -> dict[str, Any]:
        def count(c: Count) -> dict[str, Any]:
            return {"members": c.members, "profiles": c.profiles, "seconds": round(c.seconds, 3)}

        return {
            "campaign": self.campaign_id,
            "blocks": {name: count(c) for name, c in self.blocks.items()},
            "combined": count(self.combined),
            "audience": count(self.audience),
            "held_out": count(self.held_out),
            "segments": {name: count(c) for name, c in self.segments.items()},
            "guardrail_max_audience": self.guardrail,
            "exceeds_guardrail": self.exceeds_guardrail,
            "limit": self.limit,
            "steps": [asdict(s) | {"seconds": round(s.seconds, 3)} for s in self.steps],
            "later_steps": self.later_steps,
            "seconds": round(self.seconds, 3),
        }

    def format(self) -> str:
        def line(label: str, c: Count, timed: bool = True) -> str:
            seconds = f"{c.seconds:8.2f}s" if timed else ""
            return f"  {label:<34} {c.members:>12,} {c.profiles:>12,} {seconds}"

        lines = [
            f"Campaign {self.campaign_id}: counts per stage (nothing recorded)",
            f"  {'stage':<34} {'members':>12} {'profiles':>12}      time",
        ]
        for name, c in self.blocks.items():
            lines.append(line(f"block {name}", c))
        lines.append(line("combined (union/intersect/exclude)" if self.blocks else "audience SQL", self.combined))
        limited = f", limit {self.limit:,}" if self.limit is not None else ""
        lines.append(line(f"deduplicated{limited} (the audience)", self.audience))
        if self.exceeds_guardrail:
            assert self.guardrail is not None
            lines.append(f"    EXCEEDS guardrails.max_audience {self.guardrail:,}: a run would fail")
        if self.held_out.members:
            lines.append(line("  held out (control group)", self.held_out, timed=False))
        for name, c in self.segments.items():
            lines.append(line(f"  segment {name}", c, timed=False))
        for s in self.steps:
            routed = f", segment {s.segment}" if s.segment else ""
            label = f"step {s.step_id} ({s.channel}{routed})"
            lines.append(f"  {label:<34} {s.targeted:>12,} {'':>12} {s.seconds:8.2f}s")
            for reason, n in sorted(s.excluded.items(), key=lambda kv: -kv[1]):
                lines.append(f"    excluded {reason:<25} {n:>12,}")
            lines.append(f"    sendable {'':<25} {s.sendable:>12,}   in {s.batches:,} batch(es)")
        for step_id, after in self.later_steps.items():
            lines.append(f"  step {step_id}: after {', '.join(after)}; counted when they have run")
        lines.append(f"  total {self.seconds:.2f}s")
        return "\n".join(lines)


def calculate_campaign(
    conn: psycopg.Connection,
    config: CampaignConfig,
    paths: ProjectPaths,
    params: dict[str, Any] | None = None,
    *,
    limit: int | None = None,
) -> StageCounts:
    """Count every stage of ``config``'s audience and steps as a run would now; record nothing.

    Each block is evaluated once, into a temporary table; the blocks are combined from those
    tables by the run's own combine SQL, and the audience is evaluated from the combination.

    :param params: audience parameter overrides, as the trigger form's ``audience_params``.
    :param limit: an operator's cap on the audience, as the trigger form's ``limit``.
    """
    started = time.perf_counter()
    compiled = compile_audience(config, paths, params)
    check_params(compiled.text, compiled.params, compiled.label)
    with conn.transaction(force_rollback=True):
        # Big one-off scans and sorts: JIT compiling them costs more than it saves, and the
        # window sorts of the targeting SQL spill to disk at the default work_mem.
        conn.execute("SET LOCAL jit = off")
        conn.execute(sql.SQL("SET LOCAL work_mem = {}").format(sql.Literal(WORK_MEM)))
        if not compiled.blocks:
            # A mistake in the one SQL file is reported at its line and column.
            probe_audience_columns(conn, compiled.text, compiled.params, compiled)
        blocks: dict[str, Count] = {}
        sources: dict[str, str] = {}
        for index, (name, text) in enumerate(compiled.blocks.items(), start=1):
            table = f"calculate_block_{index}"
            blocks[name] = _materialize(conn, table, text, compiled.params, f"audience.blocks.{name}")
            sources[name] = f"SELECT profile_id, entity_key FROM pg_temp.{table}"
        combined_text = combine_sql(config.audience, sources) if sources else compiled.text
        combined = _materialize(conn, "calculate_combined", combined_text, compiled.params, compiled.label)
        run_key = register_run(conn, config.id, f"calculate__{uuid.uuid4().hex}", None, {})
        t = time.perf_counter()
        frozen = AudienceQuery("SELECT * FROM pg_temp.calculate_combined", {}, compiled.label, compiled.has_entity_key)
        evaluate_audience(
            conn, run_key, frozen.limited(limit) if limit else frozen, None, None,
            config.audience.holdout, config.audience.split,
        )
        audience, held_out, segments = _count_members(conn, run_key, time.perf_counter() - t)
        counts = StageCounts(
            config.id, blocks, combined, audience, held_out, segments, config.guardrails.max_audience, limit
        )
        for step in config.message_steps:
            if step.after:
                counts.later_steps[step.id] = list(step.after)
                continue
            t = time.perf_counter()
            result = count_targets(conn, run_key, config, step)
            counts.steps.append(
                StepCount(
                    step.id,
                    step.channel,
                    step.segment,
                    result.sendable + sum(result.excluded.values()),
                    result.excluded,
                    result.sendable,
                    len(plan_batches(result.sendable, config.batch_size)),
                    time.perf_counter() - t,
                )
            )
    counts.seconds = time.perf_counter() - started
    return counts


def _materialize(conn: psycopg.Connection, table: str, text: str, params: dict[str, Any], label: str) -> Count:
    """Evaluate ``text`` into the temporary ``table`` and count its members and profiles."""
    started = time.perf_counter()
    audience = sql.SQL("\n" + text + "\n")  # type: ignore[arg-type]  # the campaign's own SQL, as a run splices it
    name = sql.Identifier(table)
    try:
        with conn.transaction():
            conn.execute(query("materialize_audience", table=name, audience=audience), params)
    except psycopg.Error as exc:
        raise rejected(label, exc) from exc
    # Statistics, so that combining and evaluating from the table plan on its real size.
    conn.execute(sql.SQL("ANALYZE pg_temp.{}").format(name))
    row = conn.execute(
        query("count_audience", audience=sql.SQL("SELECT profile_id FROM pg_temp.{}").format(name))
    ).fetchone()
    assert row is not None
    return Count(int(row[0]), int(row[1]), time.perf_counter() - started)


def _count_members(
    conn: psycopg.Connection, run_key: int, evaluate_seconds: float
) -> tuple[Count, Count, dict[str, Count]]:
    """The frozen audience in all, its held-out part and each segment, from one grouping query."""
    started = time.perf_counter()
    rows = conn.execute(query("count_audience_members"), {"run_key": run_key}).fetchall()
    seconds = evaluate_seconds + time.perf_counter() - started
    audience, held_out, segments = Count(0, 0, seconds), Count(0, 0), {}
    for grouped, is_held_out, segment, members, profiles in rows:
        if grouped:
            audience = Count(int(members), int(profiles), seconds)
        elif is_held_out:
            held_out = Count(held_out.members + int(members), held_out.profiles + int(profiles))
        elif segment is not None:
            segments[segment] = Count(int(members), int(profiles))
    return audience, held_out, dict(sorted(segments.items()))
