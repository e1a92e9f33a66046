"""Event webhooks of email services (SendGrid, Mailgun, Postmark) into ``campaign.delivery_event``.

- :mod:`.settings`: the secrets, from the Airflow connection ``campaign_webhooks``;
- :mod:`.sendgrid`, :mod:`.mailgun`, :mod:`.postmark`: each provider's authentication and
  its payload mapped to :class:`~campaign_orchestrator.feedback.parse.DeliveryEvent`;
- :mod:`.app`: the FastAPI app, mounted by the api-server through
  ``plugins/feedback_webhooks_plugin.py`` at :data:`URL_PREFIX`, or served alone
  (``python -m campaign_orchestrator.feedback.webhooks.app``).

Importing this package loads neither FastAPI nor the store: :data:`asgi_app` builds the app
on its first request (Airflow imports plugins in every process).
"""

from __future__ import annotations

from campaign_orchestrator.lazy_asgi import LazyApp

URL_PREFIX = "/campaigns-feedback"
PROVIDERS = ("sendgrid", "mailgun", "postmark")

asgi_app = LazyApp("campaign_orchestrator.feedback.webhooks.app:create_app")

__all__ = ["PROVIDERS", "URL_PREFIX", "asgi_app"]
