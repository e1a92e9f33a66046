"""The SMS channel: a Jinja ``sms.txt`` rendered to text, counted in segments, sent over Amazon SNS.

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
    from campaign_orchestrator.channels.sms.render import SmsRenderer
    from campaign_orchestrator.config.channels import SmsStep
    from campaign_orchestrator.paths import ProjectPaths


def build_sms_channel(
    step: SmsStep, campaign: CampaignInfo, run_key: int, paths: ProjectPaths
) -> tuple[SmsRenderer, Callable[[], Sender]]:
    """The step's renderer, and a factory of senders (one per batch) for ``step.provider``
    on ``step.connection_id`` or the provider's default connection."""
    from campaign_orchestrator.channels.sms.render import SmsRenderer

    renderer = SmsRenderer(step, campaign, run_key, paths)
    if step.provider == "sns":
        from campaign_orchestrator.channels.sms.sns import SnsSmsSender, sms_type
        from campaign_orchestrator.channels.sns import CampaignSnsHook

        conn_id = step.connection_id or CampaignSnsHook.default_conn_name
        return renderer, partial(
            SnsSmsSender,
            conn_id,
            sms_type=sms_type(step),
            sender_id=step.sender_id,
            origination_number=step.origination_number,
        )
    raise ValueError(f"unknown sms provider {step.provider!r}; use 'sns'")
