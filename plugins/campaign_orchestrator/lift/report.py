"""The lift section of a run's report, as ``campaigns report`` prints it and the finalize task
logs it: the table, a pointer to what is missing, or nothing for a campaign without holdout."""

from __future__ import annotations

from typing import TYPE_CHECKING

from campaign_orchestrator.lift.compute import LiftError, compute_lift
from campaign_orchestrator.lift.format import format_lift

if TYPE_CHECKING:
    import psycopg

    from campaign_orchestrator.config.campaign import CampaignConfig


def lift_section(conn: psycopg.Connection, run_key: int, config: CampaignConfig) -> str | None:
    """The lift table of run ``run_key``; None when the campaign neither has a holdout nor
    held anyone out in this run."""
    if config.conversion is None:
        if config.audience.holdout is None:
            return None
        return (
            "Lift: the campaign holds members out but names no conversion table; add e.g.\n"
            "  conversion: {table: crm.booking, profile_column: profile_id, time_column: booked_at, window: 7d}"
        )
    try:
        lift = compute_lift(conn, run_key, config)
    except LiftError as exc:
        return f"Lift cannot be computed: {exc}"
    if lift is None or (not lift.measured and config.audience.holdout is None):
        return None
    return format_lift(lift)


__all__ = ["lift_section"]
