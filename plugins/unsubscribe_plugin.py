"""Airflow plugin: the one-click unsubscribe endpoint (``campaign_orchestrator.unsubscribe``).

The api-server mounts the app at ``/campaigns-unsubscribe``. Airflow 3 mounts plugin apps
with ``app.mount`` beside its own API: they get the root middlewares (GZip, CORS, the JWT
cookie refresh, which rejects nothing) but no authentication dependency, so these routes are
reachable without an Airflow login. That is intended: the signed token in the path is the
authentication, and a mailbox provider posting RFC 8058 one-click requests has no login.
The app exposes nothing but the two token routes. Importing this file costs nothing else.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from campaign_orchestrator.unsubscribe import URL_PREFIX, asgi_app


class UnsubscribePlugin(AirflowPlugin):
    name = "campaigns_unsubscribe"
    fastapi_apps = [{"name": "Campaigns unsubscribe", "app": asgi_app, "url_prefix": URL_PREFIX}]
