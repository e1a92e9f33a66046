"""The per-step funnel of a run: who entered each step, who its conditions turned away, who was
excluded, sent, and what the delivery feedback and conversions say since.

Computed live from the ledger, the delivery events and the conversion table, so running it
again after feedback has arrived (``campaigns report``) shows the opens and clicks that came
in after the run finished.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from psycopg import sql

from campaign_orchestrator.run.journey import CONDITION_NOT_MET

if TYPE_CHECKING:
    import psycopg

    from campaign_orchestrator.config.campaign import CampaignConfig

EVENT_COLUMNS = ("delivered", "opened", "clicked", "bounced", "complained")


@dataclass
class FunnelStep:
    step_id: str
    channel: str
    after: str
    condition: str
    entered: int = 0
    condition_not_met: int = 0
    held_out: int = 0
    excluded: int = 0
    sent: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    bounced: int = 0
    complained: int = 0
    converted: int | None = None
    """Sent recipients with a conversion since the run started (None: no conversion table)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compute_funnel(conn: psycopg.Connection, run_key: int, config: CampaignConfig) -> list[FunnelStep]:
    steps = {
        s.id: FunnelStep(
            s.id, s.channel, ", ".join(s.after) or "audience", " and ".join(c.describe() for c in s.when) or "-"
        )
        for s in config.message_steps
    }
    for step_id, status, reason, count in conn.execute(
        """
        SELECT step_id, status, reason, count(*) FROM campaign.message WHERE run_key = %s
        GROUP BY step_id, status, reason
        """,
        (run_key,),
    ):
        step = steps.get(step_id)
        if step is None:
            continue
        step.entered += count
        if reason == CONDITION_NOT_MET:
            step.condition_not_met += count
        elif status == "held_out":
            step.held_out += count
        elif status == "excluded":
            step.excluded += count
        elif status in ("sent", "rendered"):
            step.sent += count
    # One recipient counts once per outcome, however many events the provider sent; a click
    # is an open, and opens and clicks no person made do not count, as in the conditions
    # (run/journey.py).
    for row in conn.execute(
        """
        SELECT step_id,
               count(DISTINCT (profile_id, entity_key)) FILTER (WHERE event_type = 'delivered'),
               count(DISTINCT (profile_id, entity_key))
                   FILTER (WHERE event_type IN ('opened', 'clicked') AND machine IS NULL),
               count(DISTINCT (profile_id, entity_key)) FILTER (WHERE event_type = 'clicked' AND machine IS NULL),
               count(DISTINCT (profile_id, entity_key)) FILTER (WHERE event_type = 'bounced'),
               count(DISTINCT (profile_id, entity_key)) FILTER (WHERE event_type = 'complained')
        FROM campaign.delivery_event WHERE run_key = %s GROUP BY step_id
        """,
        (run_key,),
    ):
        step = steps.get(row[0])
        if step is not None:
            for column, count in zip(EVENT_COLUMNS, row[1:]):
                setattr(step, column, count)
    if config.conversion is not None:
        schema, table = config.conversion.table.split(".", 1)
        rows = conn.execute(
            sql.SQL(
                """
                SELECT m.step_id, count(DISTINCT m.profile_id) FROM campaign.message m
                JOIN campaign.run r ON r.run_key = m.run_key
                WHERE m.run_key = %s AND m.status IN ('sent', 'rendered')
                  AND EXISTS (SELECT 1 FROM {table} c WHERE c.{who} = m.profile_id AND c.{when} >= r.started_at)
                GROUP BY m.step_id
                """
            ).format(
                table=sql.Identifier(schema, table),
                who=sql.Identifier(config.conversion.profile_column),
                when=sql.Identifier(config.conversion.time_column),
            ),
            (run_key,),
        ).fetchall()
        converted = dict(rows)
        for step in steps.values():
            step.converted = int(converted.get(step.step_id, 0))
    return list(steps.values())


def format_funnel(funnel: list[FunnelStep]) -> str:
    conversions = any(s.converted is not None for s in funnel)
    columns = ["entered", "condition_not_met", "held_out", "excluded", "sent", *EVENT_COLUMNS]
    labels = ["entered", "cond. not met", "held out", "excluded", "sent", *EVENT_COLUMNS]
    if conversions:
        columns.append("converted")
        labels.append("converted")
    header = f"{'step':<22} {'after':<20}" + "".join(f"{label:>14}" for label in labels)
    lines = [header, "-" * len(header)]
    for step in funnel:
        lines.append(
            f"{step.step_id:<22} {step.after[:20]:<20}"
            + "".join(f"{getattr(step, column) or 0:>14,}" for column in columns)
        )
        if step.condition != "-":
            lines.append(f"{'':<22}   when {step.condition}")
    return "\n".join(lines)


__all__ = ["FunnelStep", "compute_funnel", "format_funnel"]
