"""The email channel: Jinja templates rendered to MIME, sent over SMTP (your server, or the
relay of SendGrid, Mailgun or Postmark) or Amazon SES.

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
    from campaign_orchestrator.channels.email.render import EmailRenderer
    from campaign_orchestrator.config.channels import EmailStep
    from campaign_orchestrator.paths import ProjectPaths


def build_email_channel(
    step: EmailStep, campaign: CampaignInfo, run_key: int, paths: ProjectPaths
) -> tuple[EmailRenderer, Callable[[], Sender]]:
    """The step's renderer, and a factory of senders (one per batch) for ``step.provider``
    on ``step.connection_id`` or the provider's default connection."""
    from campaign_orchestrator.channels.email.render import EmailRenderer

    renderer = EmailRenderer(step, campaign, run_key, paths)
    if step.provider == "smtp":
        from campaign_orchestrator.channels.email.smtp import CampaignSmtpHook, SmtpSender
        from campaign_orchestrator.feedback.verp import load_settings

        conn_id = step.connection_id or CampaignSmtpHook.default_conn_name
        return renderer, partial(SmtpSender, renderer.envelope_from, conn_id, return_path=load_settings())
    if step.provider in ("sendgrid", "mailgun", "postmark"):
        from campaign_orchestrator.channels.email.relay import RELAYS
        from campaign_orchestrator.channels.email.smtp import SmtpSender

        relay = RELAYS[step.provider]
        conn_id = step.connection_id or relay.default_conn_id
        return renderer, partial(SmtpSender, renderer.envelope_from, conn_id, relay=relay)
    if step.provider == "ses":
        from campaign_orchestrator.channels.email.ses import CampaignSesHook, SesSender

        conn_id = step.connection_id or CampaignSesHook.default_conn_name
        return renderer, partial(SesSender, renderer.envelope_from, conn_id)
    raise ValueError(f"unknown email provider {step.provider!r}; use 'smtp', 'ses', 'sendgrid', 'mailgun' or 'postmark'")
