"""Limits of one campaign's run (guardrails)."""

from __future__ import annotations

from pydantic import Field

from campaign_orchestrator.config.base import StrictModel


class Guardrails(StrictModel):
    """Limits that stop a run before it sends, unless an operator overrides them."""

    max_audience: int | None = Field(
        default=None, ge=1, description="A run whose audience is larger fails before sending"
    )
    max_error_rate: float = Field(
        default=0.2,
        gt=0,
        le=1,
        description="Circuit breaker: a batch whose failed share exceeds this stops the run",
    )
    error_rate_min_messages: int = Field(
        default=50, ge=1, description="Messages a batch must have attempted before the breaker may trip"
    )
    max_messages_per_profile: int | None = Field(
        default=None,
        ge=1,
        description="With one message per entity: a profile gets at most this many per step and run; "
        "the rest are excluded (max_messages_per_profile)",
    )
