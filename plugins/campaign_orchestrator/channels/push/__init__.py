"""The push channel: Jinja title, body, link and data rendered to a payload, sent through
Amazon SNS platform endpoints (APNs and FCM).

Provider modules import their Airflow provider; they are imported only when a send builds
its channel, never while DAG files are parsed.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from campaign_orchestrator.channels.base import Sender
    from campaign_orchestrator.channels.messages import CampaignInfo
    from campaign_orchestrator.channels.push.render import PushRenderer
    from campaign_orchestrator.config.channels import PushStep
    from campaign_orchestrator.paths import ProjectPaths


def build_push_channel(
    step: PushStep, campaign: CampaignInfo, run_key: int, paths: ProjectPaths
) -> tuple[PushRenderer, Callable[[], Sender]]:
    """The step's renderer, and a factory of senders (one per batch) for ``step.provider``
    on ``step.connection_id`` or the provider's default connection."""
    from campaign_orchestrator.channels.push.render import PushRenderer

    renderer = PushRenderer(step, campaign, run_key, paths)
    if step.provider == "sns":
        from campaign_orchestrator.channels.push.sns import SnsPushSender
        from campaign_orchestrator.channels.sns import CampaignSnsHook

        conn_id = step.connection_id or CampaignSnsHook.default_conn_name
        return renderer, partial(SnsPushSender, conn_id)
    raise ValueError(f"unknown push provider {step.provider!r}; use 'sns'")
