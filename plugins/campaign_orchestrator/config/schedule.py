"""When a campaign runs: its schedule (cron, preset, once, manual, after other campaigns or
when data arrives) and the window of dates it is valid in."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from pydantic import Field, field_validator, model_validator

from campaign_orchestrator.config.base import IDENTIFIER, StrictModel

CRON_PRESETS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 */3 *",
    "@yearly": "0 0 1 1 *",
}
"""The presets a schedule may name, and the cron expression each stands for."""
SCHEDULE_PRESETS = tuple(CRON_PRESETS)
_CRON_FIELDS = (
    ("minute", "0-59"), ("hour", "0-23"), ("day", "1-31"), ("month", "1-12 or JAN-DEC"), ("weekday", "0-6 or SUN-SAT"),
)
_CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z?LW#]+$")


class OnceSchedule(StrictModel):
    """Run a single time, at ``once`` (in the campaign's time zone unless it carries an offset)."""

    once: datetime


class Schedule(StrictModel):
    """When the Airflow scheduler fires the campaign.

    ``cron`` takes a five-field cron expression or a preset (``@daily``…); ``manual`` means
    only operators (or another campaign) trigger it.
    """

    cron: str | None = None
    once: datetime | None = None
    manual: bool = False
    after: list[str] = Field(
        default_factory=list,
        description="Run when these campaigns' runs have succeeded (their end signals an Airflow Asset)",
    )
    on_data: list[str] = Field(
        default_factory=list,
        description="Run when these store tables (schema.table) have new data: the ingestion that loads "
        "them updates the Asset campaign-store://<schema>/<table>",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"manual": True} if value.strip() == "manual" else {"cron": value}
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Schedule:
        chosen = [name for name in ("cron", "once") if getattr(self, name) is not None]
        if self.manual:
            chosen.append("manual")
        if self.after or self.on_data:
            chosen.append("after/on_data")
        if len(chosen) != 1:
            raise ValueError(
                "give exactly one of: a cron expression ('0 9 * * 1'), a preset "
                f"({', '.join(SCHEDULE_PRESETS)}), 'manual', {{once: 2026-12-01T09:00}}, "
                "or assets: {after: [campaign_id]} and/or {on_data: [schema.table]}"
            )
        for campaign_id in self.after:
            if not re.match(IDENTIFIER, campaign_id):
                raise ValueError(f"after: {campaign_id!r} is not a campaign id")
        for table in self.on_data:
            if not re.match(r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$", table):
                raise ValueError(f"on_data: {table!r} must be schema.table, e.g. crm.booking")
        return self

    @field_validator("cron")
    @classmethod
    def _cron_shape(cls, value: str | None) -> str | None:
        return None if value is None else check_cron(value)


def check_cron(value: str) -> str:
    """A five-field cron expression or a preset, stripped; ValueError saying what is valid.
    Shared by campaign and ingestion schedules."""
    value = value.strip()
    if value.startswith("@"):
        if value not in SCHEDULE_PRESETS:
            raise ValueError(f"unknown preset {value!r}; valid presets: {', '.join(SCHEDULE_PRESETS)}")
        return value
    fields = value.split()
    if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
        raise ValueError(
            f"{value!r} is not a five-field cron expression (minute hour day month weekday), e.g. '0 9 * * 1'"
        )
    from croniter import croniter  # Airflow's own cron parser: what it refuses, it refuses later

    if not croniter.is_valid(value):
        # Each field alone (the others '*'): say which is wrong and what it takes.
        for index, (name, allowed) in enumerate(_CRON_FIELDS):
            alone = " ".join(f if i == index else "*" for i, f in enumerate(fields))
            if not croniter.is_valid(alone):
                raise ValueError(
                    f"{value!r}: the {name} field {fields[index]!r} is out of range; {name} takes {allowed}, "
                    "e.g. '0 9 * * 1' (minute hour day month weekday)"
                )
        raise ValueError(
            f"{value!r} is not a valid cron expression: minute 0-59, hour 0-23, day 1-31, month 1-12 "
            "(or JAN-DEC), weekday 0-6 (or SUN-SAT), e.g. '0 9 * * 1'"
        )
    return value


class ValidityWindow(StrictModel):
    """The campaign is scheduled only between ``start`` and ``end`` (inclusive dates or datetimes)."""

    start: datetime | date
    end: datetime | date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> ValidityWindow:
        if self.end is not None and _as_datetime(self.end) < _as_datetime(self.start):
            raise ValueError("valid.end is before valid.start")
        return self


def _as_datetime(value: datetime | date) -> datetime:
    return value if isinstance(value, datetime) else datetime(value.year, value.month, value.day)
