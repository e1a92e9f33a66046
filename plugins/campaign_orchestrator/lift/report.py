"""What a run's report says about lift, as ``campaigns report`` prints it, the finalize task
logs it and the Campaigns page draws it: the lift, what is missing for one, or nothing for a
campaign without a holdout."""

from __future__ import annotations

from typing import TYPE_CHECKING

from campaign_orchestrator.lift.compute import LiftError, compute_lift
from campaign_orchestrator.lift.format import format_lift

if TYPE_CHECKING:
    import psycopg

    from campaign_orchestrator.config.campaign import CampaignConfig
    from campaign_orchestrator.lift.compute import RunLift

NO_CONVERSION_TABLE = (
    "the campaign holds members out but names no conversion table; add e.g. "
    "conversion: {table: crm.booking, profile_column: profile_id, time_column: booked_at, window: 7d}"
)


def lift_to_show(conn: psycopg.Connection, run_key: int, config: CampaignConfig) -> tuple[RunLift | None, str | None]:
    """``(lift, None)`` to show; ``(None, problem)`` when it cannot be computed; ``(None, None)``
    when the campaign neither has a holdout nor held anyone out in this run."""
    if config.conversion is None:
        return None, (NO_CONVERSION_TABLE if config.audience.holdout is not None else None)
    try:
        lift = compute_lift(conn, run_key, config)
    except LiftError as exc:
        return None, str(exc)
    if lift is None or (not lift.measured and config.audience.holdout is None):
        return None, None
    return lift, None


def lift_section(conn: psycopg.Connection, run_key: int, config: CampaignConfig) -> str | None:
    """The lift table of run ``run_key`` as text, the problem in its way, or None."""
    lift, problem = lift_to_show(conn, run_key, config)
    if problem:
        return f"Lift: {problem}"
    return format_lift(lift) if lift else None


__all__ = ["NO_CONVERSION_TABLE", "lift_section", "lift_to_show"]
