"""Who enters each step of a multi-step campaign, as SQL composed from the step graph.

A step with no ``after`` takes the run's frozen audience (its split segment, if it names
one). A step after others takes everyone who came *through* them: every recipient of a
message step (sent or not: someone without email consent still goes on to the SMS branch)
except those its own conditions turned away (``condition_not_met``), and, through a wait,
whoever came through the steps before the wait. Joins are unions, one row per
(profile, entity). Held-out members flow too and stay held out, so lift can be measured at
every step.

Conditions (``when``) are evaluated in the same INSERT…SELECT that writes the step's ledger,
against the ledger and the delivery events as they are at that moment, i.e. after the wait
before the step: "not opened" means not opened within the wait.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from psycopg import sql

from campaign_orchestrator.config.steps import MACHINE_OUTCOMES

if TYPE_CHECKING:
    import psycopg

    from campaign_orchestrator.config.campaign import CampaignConfig

    from campaign_orchestrator.config.channels import Step

    from campaign_orchestrator.config.steps import Condition, WaitStep

CONDITION_NOT_MET = "condition_not_met"

# Statuses and feedback events behind each outcome. A click counts as an open: image
# blocking and privacy proxies hide many opens, never a click.
_LEDGER_OUTCOMES = {
    "sent": ("sent", "rendered"),  # rendered: a dry run, so a journey can be rehearsed
    "failed": ("failed",),
    "excluded": ("excluded", "held_out"),
}
_EVENT_OUTCOMES = {
    "delivered": ("delivered",),
    "opened": ("opened", "clicked"),
    "clicked": ("clicked",),
    "bounced": ("bounced",),
    "complained": ("complained",),
}


def members_sql(config: CampaignConfig, step: Step) -> sql.Composable:
    """A SELECT of ``profile_id, entity_key, held_out``: who enters ``step`` in run ``%(run_key)s``."""
    if not step.after:
        return sql.SQL(
            "SELECT profile_id, entity_key, held_out FROM campaign.audience_member "
            "WHERE run_key = %(run_key)s "
            # A step routed to a split segment targets that segment (and records the holdout).
            "AND (%(segment)s::text IS NULL OR segment = %(segment)s OR held_out)"
        )
    sources = sql.SQL(" UNION ALL ").join(_exits(config, ref) for ref in sorted(set(step.after)))
    return sql.SQL(
        "SELECT profile_id, entity_key, bool_or(held_out) AS held_out FROM ({sources}) AS came_through "
        "GROUP BY profile_id, entity_key"
    ).format(sources=sources)


def _exits(config: CampaignConfig, step_id: str) -> sql.Composable:
    """Who came through ``step_id``: its ledger minus those its conditions turned away; a
    wait passes on whoever came through the steps before it."""
    step = config.step(step_id)
    if step.channel == "wait":
        return sql.SQL(" UNION ALL ").join(_exits(config, ref) for ref in sorted(set(step.after)))
    # After one message per profile, all of the profile's entities go on, so a later step may
    # again send one message per entity.
    per_profile = getattr(step, "message_per", None) == "profile"
    entities = sql.SQL(
        "JOIN campaign.audience_member e ON e.run_key = m.run_key AND e.profile_id = m.profile_id"
        if per_profile else ""
    )
    return sql.SQL(
        "SELECT m.profile_id, {entity_key} AS entity_key, m.status = 'held_out' AS held_out "
        "FROM campaign.message m {entities} "
        "WHERE m.run_key = %(run_key)s AND m.step_id = {step} AND m.reason IS DISTINCT FROM {turned_away}"
    ).format(
        entity_key=sql.SQL("e.entity_key" if per_profile else "m.entity_key"),
        entities=entities,
        step=sql.Literal(step_id),
        turned_away=sql.Literal(CONDITION_NOT_MET),
    )


def condition_sql(config: CampaignConfig, step: Step, member: str = "member") -> sql.Composable:
    """A boolean over ``{member}.profile_id``: every condition of ``step`` holds (TRUE if none)."""
    conditions = getattr(step, "when", ())
    if not conditions:
        return sql.SQL("TRUE")
    return sql.SQL("(") + sql.SQL(" AND ").join(_one(config, c, member) for c in conditions) + sql.SQL(")")


def _one(config: CampaignConfig, condition: Condition, member: str) -> sql.Composable:
    profile = sql.Identifier(member, "profile_id")
    if condition.converted is not None:
        conversion = config.conversion
        assert conversion is not None  # check_journey requires it
        schema, table = conversion.table.split(".", 1)
        found = sql.SQL(
            "EXISTS (SELECT 1 FROM {table} AS conversion WHERE conversion.{who} = {profile} "
            "AND conversion.{when} >= (SELECT started_at FROM campaign.run WHERE run_key = %(run_key)s))"
        ).format(
            table=sql.Identifier(schema, table),
            who=sql.Identifier(conversion.profile_column),
            when=sql.Identifier(conversion.time_column),
            profile=profile,
        )
        return found if condition.converted else sql.SQL("NOT ") + found
    outcome = condition.outcome or ""
    negated = outcome.startswith("not_")
    name = outcome.removeprefix("not_")
    if name in _LEDGER_OUTCOMES:
        found = sql.SQL(
            "EXISTS (SELECT 1 FROM campaign.message AS earlier WHERE earlier.run_key = %(run_key)s "
            "AND earlier.step_id = {step} AND earlier.profile_id = {profile} AND earlier.status = ANY({statuses}))"
        ).format(step=sql.Literal(condition.step), profile=profile, statuses=sql.Literal(list(_LEDGER_OUTCOMES[name])))
    else:
        # Opens and clicks no person made (event.machine says why) count only when asked.
        human = sql.SQL("" if condition.include_machine or name not in MACHINE_OUTCOMES else " AND event.machine IS NULL")
        found = sql.SQL(
            "EXISTS (SELECT 1 FROM campaign.delivery_event AS event WHERE event.run_key = %(run_key)s "
            "AND event.step_id = {step} AND event.profile_id = {profile} AND event.event_type = ANY({events}){human})"
        ).format(
            step=sql.Literal(condition.step), profile=profile, events=sql.Literal(list(_EVENT_OUTCOMES[name])),
            human=human,
        )
    return sql.SQL("NOT ") + found if negated else found


def timing_wait(config: CampaignConfig, step: Step) -> WaitStep | None:
    """The wait until a time of day that times ``step``'s messages, if one comes right before it."""
    from campaign_orchestrator.config.steps import WaitStep, WaitUntil

    for ref in step.after:
        before = config.step(ref)
        if isinstance(before, WaitStep) and isinstance(before.wait, WaitUntil):
            return before
    return None


def _zone_sql(wait: WaitStep, profile_zone: sql.Composable) -> sql.Composable:
    if wait.wait.timezone == "recipient":  # type: ignore[union-attr]
        return profile_zone
    return sql.Literal(wait.wait.timezone)  # type: ignore[union-attr]


def _next_local_sql(moment: sql.Composable, zone: sql.Composable, at: str) -> sql.Composable:
    """The first ``at`` (HH:MM) local time in ``zone`` strictly after ``moment``."""
    return sql.SQL(
        "((date_trunc('day', {m} AT TIME ZONE {z}) + {at}::interval"
        " + CASE WHEN date_trunc('day', {m} AT TIME ZONE {z}) + {at}::interval <= ({m} AT TIME ZONE {z})"
        " THEN interval '1 day' ELSE interval '0' END) AT TIME ZONE {z})"
    ).format(m=moment, z=zone, at=sql.Literal(at))


def time_messages(conn: psycopg.Connection, run_key: int, config: CampaignConfig, step: Step) -> int:
    """Give each pending message of ``step`` its recipient's own send time (``not_before``),
    when a wait until a local time of day comes right before it. Returns the rows timed."""
    wait = timing_wait(config, step)
    if wait is None:
        return 0
    zone = _zone_sql(wait, sql.SQL("coalesce(tz.name, 'UTC')"))
    due = _next_local_sql(sql.SQL("w.entered_at"), zone, wait.wait.until)  # type: ignore[union-attr]
    return conn.execute(
        sql.SQL(
            """
            UPDATE campaign.message m
            SET not_before = w.entered_at + ({due} - w.entered_at) * w.time_scale
            FROM campaign.run_wait w, crm.profile p
            LEFT JOIN (SELECT name FROM pg_timezone_names) tz ON tz.name = p.time_zone
            WHERE m.run_key = %(run_key)s AND m.step_id = %(step_id)s AND m.status = 'pending'
              AND w.run_key = %(run_key)s AND w.step_id = %(wait_id)s AND p.profile_id = m.profile_id
            """
        ).format(due=due),
        {"run_key": run_key, "step_id": step.id, "wait_id": wait.id},
    ).rowcount


def enter_wait(
    conn: psycopg.Connection, run_key: int, wait: WaitStep, time_scale: float, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """Record the wait once per run and return (entered_at, due_at); a retry gets the same.

    A duration is counted from the first time the wait task ran, i.e. when every step before
    it was done. A time of day is each recipient's own; the wait is due at the earliest of
    them (among the audience's time zones) and the messages after it are timed one by one.
    """
    from campaign_orchestrator.config.steps import WaitUntil

    now = now or datetime.now(timezone.utc)
    with conn.transaction():
        row = conn.execute(
            "SELECT entered_at, due_at FROM campaign.run_wait WHERE run_key = %s AND step_id = %s FOR UPDATE",
            (run_key, wait.id),
        ).fetchone()
        if row is not None:
            return row[0], row[1]
        if isinstance(wait.wait, WaitUntil):
            zone = _zone_sql(wait, sql.SQL("zone"))
            earliest = conn.execute(
                sql.SQL(
                    """
                    SELECT min({due}) FROM (
                        SELECT DISTINCT coalesce(tz.name, 'UTC') AS zone
                        FROM campaign.audience_member am
                        JOIN crm.profile p ON p.profile_id = am.profile_id
                        LEFT JOIN (SELECT name FROM pg_timezone_names) tz ON tz.name = p.time_zone
                        WHERE am.run_key = %(run_key)s
                    ) zones
                    """
                ).format(due=_next_local_sql(sql.SQL("%(now)s::timestamptz"), zone, wait.wait.until)),
                {"run_key": run_key, "now": now},
            ).fetchone()[0]
            span = (earliest - now) if earliest is not None else timedelta(0)
        else:
            span = wait.wait
        due = now + span * time_scale
        conn.execute(
            "INSERT INTO campaign.run_wait (run_key, step_id, entered_at, due_at, time_scale) "
            "VALUES (%s, %s, %s, %s, %s)",
            (run_key, wait.id, now, due, time_scale),
        )
        return now, due


__all__ = ["CONDITION_NOT_MET", "condition_sql", "enter_wait", "members_sql", "time_messages", "timing_wait"]
