"""Pick the renderer and sender of a step by its channel."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from campaign_orchestrator.channels.base import Renderer, Sender
    from campaign_orchestrator.config.campaign import CampaignConfig
    from campaign_orchestrator.config.channels import Step
    from campaign_orchestrator.paths import ProjectPaths


def build_channel(
    step: Step, campaign: CampaignConfig, run_key: int, paths: ProjectPaths
) -> tuple[Renderer, Callable[[], Sender]]:
    if step.channel == "email":
        from campaign_orchestrator.channels.email import build_email_channel

        return build_email_channel(step, campaign, run_key, paths)
    if step.channel == "sms":
        from campaign_orchestrator.channels.sms import build_sms_channel

        return build_sms_channel(step, campaign, run_key, paths)
    if step.channel == "push":
        from campaign_orchestrator.channels.push import build_push_channel

        return build_push_channel(step, campaign, run_key, paths)
    if step.channel == "webhook":
        from campaign_orchestrator.channels.webhook import build_webhook_channel

        return build_webhook_channel(step, campaign, run_key, paths)
    raise ValueError(f"no sender for channel {step.channel!r}")
