"""Per-step targeting: consent, suppression and address rules turn the audience into ledger rows."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from psycopg import sql

from campaign_orchestrator.channels.registry import CHANNELS, ChannelSpec, consent_channel
from campaign_orchestrator.sqlfiles import query

if TYPE_CHECKING:
    import psycopg

    from campaign_orchestrator.config.campaign import CampaignConfig

    from campaign_orchestrator.config.channels import Step

log = logging.getLogger(__name__)


def check_reason_sql(spec: ChannelSpec) -> sql.Composable:
    """CASE expression naming the first address check that fails, or NULL."""
    if not spec.checks:
        return sql.SQL("NULL::text")
    whens = sql.SQL(" ").join(
        sql.SQL("WHEN {} THEN {}").format(sql.SQL(condition), sql.Literal(reason))  # type: ignore[arg-type]
        for condition, reason in spec.checks
    )
    return sql.SQL("CASE {} END").format(whens)


def channel_params(step: Step) -> dict[str, object]:
    """Bound values shared by targeting and the send-time re-check."""
    rules = ConsentRules.for_step(step)
    consent = consent_channel(step)
    return {
        "consent_channel": consent,
        # Suppression is by address; a webhook's "address" is a profile id, never suppressed.
        "suppression_channel": step.channel if step.channel != "webhook" else None,
        "needs_consent": rules.needs_consent,
        "needs_opt_in": rules.needs_opt_in,
    }


@dataclass(frozen=True)
class ConsentRules:
    needs_consent: bool
    needs_opt_in: bool

    @classmethod
    def for_step(cls, step: Step) -> ConsentRules:
        marketing = step.purpose == "marketing"
        return cls(needs_consent=marketing, needs_opt_in=marketing and step.consent == "opt_in")


class TargetingError(RuntimeError):
    """A step cannot be targeted; the message says why."""


@dataclass(frozen=True)
class TargetingResult:
    sendable: int
    excluded: dict[str, int]
    filtered_earlier: bool


def one_row_per_message(members: sql.Composable, step: Step) -> sql.Composable:
    """With ``message_per: profile`` a profile's audience entities make one message (entity
    key ''; the template lists them as ``entities``), else each member row is one message."""
    if getattr(step, "message_per", None) != "profile":
        return members
    return sql.SQL(
        "SELECT profile_id, ''::text AS entity_key, bool_or(held_out) AS held_out FROM ({}) AS per_entity "
        "GROUP BY profile_id"
    ).format(members)


def reasoning_sql(config: CampaignConfig, step: Step) -> sql.Composable:
    """target_reasoning.sql for the step: who enters it (the audience, or who came through the
    steps before it), its conditions, and the channel's address rules; each member with its
    address and reason."""
    from campaign_orchestrator.run.journey import condition_sql, members_sql

    spec = CHANNELS[step.channel]
    return query(
        "target_reasoning",
        address=sql.SQL(spec.address_sql),  # type: ignore[arg-type]  # registry's own SQL
        normalized=sql.SQL(spec.normalized_sql),  # type: ignore[arg-type]
        check_reason=check_reason_sql(spec),
        members=one_row_per_message(members_sql(config, step), step),
        condition=condition_sql(config, step, member="m"),
    )


def reasoning_params(run_key: int, config: CampaignConfig, step: Step) -> dict[str, object]:
    return {
        "run_key": run_key,
        "step_id": step.id,
        "campaign_id": config.id,
        "channel": step.channel,
        "purpose": step.purpose,
        "segment": step.segment,
        "max_per_profile": config.guardrails.max_messages_per_profile,
        **channel_params(step),
    }


def count_targets(conn: psycopg.Connection, run_key: int, config: CampaignConfig, step: Step) -> TargetingResult:
    """What :func:`target_step` would write for ``step``, counted by reason; writes nothing.

    The same reasoning SQL as the ledger insert, so the counts are those a run would record.
    """
    rows = conn.execute(
        query("count_targets", reasoning=reasoning_sql(config, step)), reasoning_params(run_key, config, step)
    ).fetchall()
    counts = {reason: int(count) for reason, count in rows}
    sendable = counts.pop(None, 0)
    return TargetingResult(sendable, dict(sorted(counts.items())), filtered_earlier=False)


def target_step(conn: psycopg.Connection, run_key: int, config: CampaignConfig, step: Step) -> TargetingResult:
    """Write one ledger row per audience member for ``step``, once per run and step."""
    from campaign_orchestrator.run.journey import time_messages

    with conn.transaction():
        # One targeting of a step at a time (a retry beside a zombie attempt): the second
        # waits here, then finds the step targeted. The ledger insert needs no ON CONFLICT.
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"target_step:{run_key}:{step.id}",))
        done = conn.execute(
            "SELECT sendable FROM campaign.run_step WHERE run_key = %s AND step_id = %s FOR UPDATE",
            (run_key, step.id),
        ).fetchone()
        if done is None:
            # The ledger has no foreign key to the run (migration 0012): this is the check it
            # made and the lock it took (no deleting the run under its targeting), once, not
            # once per row.
            if conn.execute(
                "SELECT FROM campaign.run WHERE run_key = %s FOR KEY SHARE", (run_key,)
            ).fetchone() is None:
                raise TargetingError(f"run {run_key} does not exist (deleted?); step {step.id} cannot be targeted")
            # JIT compiling the ledger insert's expressions took longer (a second at a million
            # members) than evaluating them; the statements after it are no better candidates.
            conn.execute("SET LOCAL jit = off")
            conn.execute(
                query("target_step", reasoning=reasoning_sql(config, step)), reasoning_params(run_key, config, step)
            )
            # After a wait until a local time of day: each recipient's own send time.
            time_messages(conn, run_key, config, step)
            # The rows just written by reason, in one scan: NULL is the sendable (numbered by
            # seq), the others what was excluded and why.
            excluded = dict(
                conn.execute(
                    "SELECT reason, count(*) FROM campaign.message WHERE run_key = %s AND step_id = %s "
                    "GROUP BY reason ORDER BY reason NULLS FIRST",
                    (run_key, step.id),
                ).fetchall()
            )
            sendable = excluded.pop(None, 0)
            # Fresh statistics after a bulk insert: the claims and updates that follow plan
            # on them (a table that looks empty gets nested loops over every row).
            conn.execute("ANALYZE campaign.message")
            conn.execute(
                "INSERT INTO campaign.run_step (run_key, step_id, channel, sendable) VALUES (%s, %s, %s, %s)",
                (run_key, step.id, step.channel, sendable),
            )
        else:
            sendable = done[0]
    if done is not None:
        # Targeted earlier: the exclusions as the ledger has them now.
        excluded = dict(
            conn.execute(
                """
                SELECT reason, count(*) FROM campaign.message
                WHERE run_key = %s AND step_id = %s AND status IN ('excluded', 'held_out')
                GROUP BY reason ORDER BY reason
                """,
                (run_key, step.id),
            ).fetchall()
        )
    return TargetingResult(int(sendable), {k: int(v) for k, v in excluded.items()}, filtered_earlier=done is not None)


def plan_batches(sendable: int, batch_size: int, max_batches: int | None = None) -> list[dict[str, int]]:
    """Batch bounds over the dense seq; this is all that travels through XCom.

    ``max_batches`` (Airflow's ``core.max_map_length``) caps the number of mapped send tasks:
    a larger audience gets larger batches rather than a plan Airflow refuses to expand.
    """
    if max_batches is not None and sendable > max_batches * batch_size:
        batch_size = -(-sendable // max_batches)
    total = -(-sendable // batch_size)
    return [
        {
            "index": i + 1,
            "of": total,
            "lo": i * batch_size + 1,
            "hi": min((i + 1) * batch_size, sendable),
            "size": min((i + 1) * batch_size, sendable) - i * batch_size,
        }
        for i in range(total)
    ]
