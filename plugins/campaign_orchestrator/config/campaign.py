"""A campaign config: a YAML file under ``dags/campaigns/`` becomes one Airflow DAG.

Every campaign YAML is validated against :class:`CampaignConfig` before a DAG is built.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from campaign_orchestrator.config.audience import Audience
from campaign_orchestrator.config.base import IDENTIFIER, Duration, StrictModel, parse_duration
from campaign_orchestrator.config.channels import MessageStep, Step
from campaign_orchestrator.config.journey import check_journey
from campaign_orchestrator.config.policies import Guardrails
from campaign_orchestrator.config.schedule import Schedule, ValidityWindow
from campaign_orchestrator.config.steps import WaitStep


class Conversion(StrictModel):
    """What counts as a conversion: a row of a store table for the profile. ``{converted: ...}``
    conditions look for one stamped at or after the run's start; the lift report counts those
    within ``window`` of each step's start, and their ``amount_column`` as revenue."""

    table: str = Field(pattern=r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$", description="schema.table, e.g. crm.booking")
    profile_column: str = Field(default="profile_id", pattern=IDENTIFIER)
    time_column: str = Field(default="created_at", pattern=IDENTIFIER, description="When the conversion happened")
    window: Duration = Field(
        default=timedelta(days=7),
        description="Lift counts conversions this long after each step's start (e.g. 7d, 48h); at most 365d",
    )
    amount_column: str | None = Field(
        default=None,
        pattern=IDENTIFIER,
        description="A numeric column of the table (e.g. amount): lift also compares revenue per recipient",
    )

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, value: Any) -> timedelta:
        window = parse_duration(value)
        if not timedelta(0) < window <= timedelta(days=365):
            raise ValueError(f"{value!r}: the conversion window must be longer than 0 and at most 365d, e.g. 7d")
        return window


class CampaignConfig(StrictModel):
    """One campaign: a YAML file under ``dags/campaigns/`` becomes one Airflow DAG."""

    id: str = Field(pattern=IDENTIFIER, description="DAG id; lower-case letters, digits and _")
    description: str = ""
    owner: str = "campaigns"
    tags: list[str] = Field(default_factory=list)
    schedule: Schedule
    timezone: str = "UTC"
    valid: ValidityWindow | None = Field(
        default=None,
        description="The dates the campaign is scheduled between; required unless schedule is manual "
        "(a manual campaign runs whenever it is triggered)",
    )
    audience: Audience
    steps: list[Step] = Field(min_length=1)
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    retries: int = Field(default=3, ge=0, le=20)
    retry_delay: Duration = timedelta(minutes=5)
    guardrails: Guardrails = Guardrails()
    conversion: Conversion | None = Field(
        default=None, description="The store table whose rows are conversions, for {converted: ...} conditions and the lift report"
    )
    send_window: Duration | None = Field(
        default=timedelta(hours=12),
        description="Messages not sent this long after the run started are excluded (send_window_expired)",
    )
    late_run_tolerance: Duration | None = Field(
        default=timedelta(hours=2),
        description="A scheduled run starting later than this after its time (e.g. the DAG was "
        "unpaused days later) is skipped instead of sending a stale campaign; null: always send",
    )
    requires_fresh: dict[str, Duration] = Field(
        default_factory=dict,
        description="Store tables and how old their data may be, e.g. {crm.booking: 2h}: a run waits (deferred) "
        "for fresher data up to late_run_tolerance (2h if none), then fails naming the stale tables",
    )
    on_uncertain: Literal["skip", "resend"] = Field(
        default="skip",
        description=(
            "What a retried batch does with messages whose send outcome was lost in a crash: "
            "skip (report as uncertain; at most once) or resend (at least once)"
        ),
    )

    @field_validator("retry_delay", "send_window", "late_run_tolerance", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta | None:
        return None if value is None else parse_duration(value)

    @field_validator("requires_fresh", mode="before")
    @classmethod
    def _freshness(cls, value: Any) -> dict[str, timedelta]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError("a mapping of store tables to the age their data may have, e.g. {crm.booking: 2h}")
        ages = {}
        for table, age in value.items():
            if not isinstance(table, str) or not re.match(r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$", table):
                raise ValueError(f"{table!r} must be schema.table, e.g. crm.booking")
            ages[table] = parse_duration(age)
            if ages[table] <= timedelta(0):
                raise ValueError(f"{table}: the age must be more than 0, e.g. 2h")
        return ages

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone, e.g. 'Europe/Paris' or 'UTC'") from None
        return value

    @model_validator(mode="after")
    def _segments_exist(self) -> CampaignConfig:
        segments = set(self.audience.split.segment_names) if self.audience.split else set()
        for index, step in enumerate(self.steps):
            if getattr(step, "segment", None) is not None and step.segment not in segments:
                raise ValueError(
                    f"steps[{index}].segment: unknown segment {step.segment!r}; audience.split has "
                    f"{', '.join(sorted(segments)) or 'no segments'}"
                )
        return self

    @model_validator(mode="after")
    def _unique_step_ids(self) -> CampaignConfig:
        seen: dict[str, int] = {}
        for index, step in enumerate(self.steps):
            if step.id in seen:
                raise ValueError(
                    f"steps[{index}].id: step id {step.id!r} is already the id of steps[{seen[step.id]}]; "
                    "step ids must be unique (they name the step's tasks and ledger rows)"
                )
            seen[step.id] = index
        return self

    @model_validator(mode="after")
    def _valid_unless_manual(self) -> CampaignConfig:
        if self.valid is None and not self.schedule.manual:
            raise ValueError(
                "valid: required for a scheduled campaign: the first day it may run (and optionally the last), "
                "e.g. valid: {start: 2026-12-01, end: 2027-03-31}"
            )
        return self

    @model_validator(mode="after")
    def _journey(self) -> CampaignConfig:
        check_journey(self)
        return self

    @property
    def message_steps(self) -> list[MessageStep]:
        """The steps that send (every step but the waits), in file order."""
        return [step for step in self.steps if not isinstance(step, WaitStep)]

    @property
    def waits(self) -> list[WaitStep]:
        return [step for step in self.steps if isinstance(step, WaitStep)]

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)
