"""Airflow plugin: the email-service feedback webhooks (``campaign_orchestrator.feedback.webhooks``).

The api-server mounts the app at ``/campaigns-feedback``: SendGrid, Mailgun and Postmark
post their events to ``/campaigns-feedback/<provider>``. Like the unsubscribe endpoint, the
routes sit beside Airflow's API without its login: each request is authenticated by its
provider's signature (SendGrid, Mailgun) or HTTP Basic credentials (Postmark), and is
refused without them. Importing this file costs nothing else.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from campaign_orchestrator.feedback.webhooks import URL_PREFIX, asgi_app


class FeedbackWebhooksPlugin(AirflowPlugin):
    name = "campaigns_feedback_webhooks"
    fastapi_apps = [{"name": "Campaigns feedback webhooks", "app": asgi_app, "url_prefix": URL_PREFIX}]
