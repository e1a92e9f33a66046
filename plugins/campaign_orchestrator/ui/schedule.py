"""When a campaign runs next: the DAG's own timetable, asked the way the scheduler asks it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from campaign_orchestrator.config.campaign import CampaignConfig


@dataclass(frozen=True)
class Plan:
    """What the schedule says: ``kind`` is ``cron``, ``once`` or ``manual``."""

    kind: str
    summary: str
    """The schedule as written: a cron expression, a preset, ``once …`` or ``manual``."""
    description: str = ""
    """In words, e.g. "At 09:00, only on Monday" (cron only)."""
    next_runs: list[datetime] = field(default_factory=list)
    """Upcoming run times, aware, in the campaign's time zone."""
    ended: bool = False
    """The validity window is over: no run will ever be scheduled again."""


def plan(config: CampaignConfig, now: datetime | None = None, count: int = 3) -> Plan:
    """The next ``count`` times the scheduler would start this campaign after ``now``.

    Built from the same timetable, start and end dates as the DAG (so time zones and DST
    changes match), without a database: pausing is Airflow's business and shown apart.
    """
    from zoneinfo import ZoneInfo

    from airflow.timetables.base import TimeRestriction
    from airflow.timetables.trigger import CronTriggerTimetable

    from campaign_orchestrator.dag_factory import schedule_of

    now = now or datetime.now(timezone.utc)
    tz = ZoneInfo(config.timezone)
    timetable, start, end = schedule_of(config)
    if config.schedule.manual:
        return Plan("manual", "manual", "Runs only when triggered", ended=end is not None and end < now)
    if config.schedule.after or config.schedule.on_data:
        triggers = [f"campaign {c} ends" for c in config.schedule.after] + [
            f"new data in {t}" for t in config.schedule.on_data
        ]
        return Plan("assets", "on assets", "Runs when " + " and ".join(triggers), ended=end is not None and end < now)
    if config.schedule.once is not None:
        upcoming = [start.astimezone(tz)] if start > now else []
        return Plan("once", f"once {start.astimezone(tz):%Y-%m-%d %H:%M %Z}", next_runs=upcoming, ended=not upcoming)
    core = CronTriggerTimetable(timetable.expression, timezone=timetable.timezone)
    restriction = TimeRestriction(earliest=max(start, now), latest=end, catchup=True)
    runs: list[datetime] = []
    last = None
    for _ in range(count):
        info = core.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        if info is None or info.run_after is None:
            break
        runs.append(datetime.fromtimestamp(info.run_after.timestamp(), tz))
        last = info.data_interval
    return Plan("cron", config.schedule.cron or "", core.description, runs, ended=not runs and end is not None)


__all__ = ["Plan", "plan"]
