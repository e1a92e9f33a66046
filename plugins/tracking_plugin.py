"""Airflow plugin: the open and click tracking endpoint (``campaign_orchestrator.tracking``).

The api-server mounts the app at ``/campaigns-track``. Like the unsubscribe endpoint, plugin
apps are mounted beside Airflow's API without its authentication dependency: the signed
token in each URL is the authentication (a mail client loading the pixel has no login), and
the app exposes nothing but the two token routes. Importing this file costs nothing else.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from campaign_orchestrator.tracking import URL_PREFIX, asgi_app


class TrackingPlugin(AirflowPlugin):
    name = "campaigns_tracking"
    fastapi_apps = [{"name": "Campaigns tracking", "app": asgi_app, "url_prefix": URL_PREFIX}]
