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

    from campaign_orchestrator.config.models import CampaignConfig, Step

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


@dataclass(frozen=True)
class TargetingResult:
    sendable: int
    excluded: dict[str, int]
    filtered_earlier: bool


def target_step(conn: psycopg.Connection, run_key: int, config: CampaignConfig, step: Step) -> TargetingResult:
    """Write one ledger row per audience member for ``step``, once per run and step."""
    spec = CHANNELS[step.channel]
    with conn.transaction():
        done = conn.execute(
            "SELECT sendable FROM campaign.run_step WHERE run_key = %s AND step_id = %s FOR UPDATE",
            (run_key, step.id),
        ).fetchone()
        if done is None:
            conn.execute(
                query(
                    "target_step",
                    address=sql.SQL(spec.address_sql),  # type: ignore[arg-type]  # registry's own SQL
                    normalized=sql.SQL(spec.normalized_sql),  # type: ignore[arg-type]
                    check_reason=check_reason_sql(spec),
                ),
                {
                    "run_key": run_key,
                    "step_id": step.id,
                    "campaign_id": config.id,
                    "channel": step.channel,
                    "purpose": step.purpose,
                    "segment": step.segment,
                    "max_per_profile": config.guardrails.max_messages_per_profile,
                    **channel_params(step),
                },
            )
            sendable = conn.execute(
                "SELECT count(*) FROM campaign.message WHERE run_key = %s AND step_id = %s AND seq IS NOT NULL",
                (run_key, step.id),
            ).fetchone()[0]
            # Fresh statistics after a bulk insert: the claims and updates that follow plan
            # on them (a table that looks empty gets nested loops over every row).
            conn.execute("ANALYZE campaign.message")
            conn.execute(
                "INSERT INTO campaign.run_step (run_key, step_id, channel, sendable) VALUES (%s, %s, %s, %s)",
                (run_key, step.id, step.channel, sendable),
            )
        else:
            sendable = done[0]
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


def plan_batches(sendable: int, batch_size: int) -> list[dict[str, int]]:
    """Batch bounds over the dense seq; this is all that travels through XCom."""
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
