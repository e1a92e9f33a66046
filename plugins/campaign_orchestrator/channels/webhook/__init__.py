"""The webhook channel: a JSON payload per message, POSTed signed to an HTTP endpoint.

The sender module imports the http provider; it is imported only when a send builds its
channel, never while DAG files are parsed.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from campaign_orchestrator.channels.base import Sender
    from campaign_orchestrator.channels.messages import CampaignInfo
    from campaign_orchestrator.channels.webhook.render import WebhookRenderer
    from campaign_orchestrator.config.channels import WebhookStep
    from campaign_orchestrator.paths import ProjectPaths


def build_webhook_channel(
    step: WebhookStep, campaign: CampaignInfo, run_key: int, paths: ProjectPaths
) -> tuple[WebhookRenderer, Callable[[], Sender]]:
    """The step's renderer, and a factory of senders (one HTTP session per batch) posting to
    ``step.endpoint`` of ``step.connection_id`` or ``webhook_default``, in ``step.mode``."""
    from campaign_orchestrator.channels.webhook.http import WebhookHook, WebhookSender
    from campaign_orchestrator.channels.webhook.render import WebhookRenderer

    renderer = WebhookRenderer(step, campaign, run_key, paths)
    conn_id = step.connection_id or WebhookHook.default_conn_name
    return renderer, partial(WebhookSender, conn_id, step.endpoint, campaign.id, step.mode)
