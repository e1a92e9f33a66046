"""Airflow plugin: the Campaigns page (``campaign_orchestrator.ui``) in the Airflow 3 UI.

The api-server mounts the app at ``/campaigns``; the navigation entry frames it in the UI at
``/plugin/campaigns``. Importing this file costs nothing else: Airflow loads plugins in every
process, and the app is built on the api-server's first request to it.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from campaign_orchestrator.ui import URL_PREFIX, asgi_app


class CampaignsUIPlugin(AirflowPlugin):
    name = "campaigns_ui"
    fastapi_apps = [{"name": "Campaigns", "app": asgi_app, "url_prefix": URL_PREFIX}]
    external_views = [
        {
            "name": "Campaigns",
            # Relative to the UI's base URL, so it follows [api] base_url.
            "href": URL_PREFIX.lstrip("/") + "/",
            "url_route": "campaigns",
            "destination": "nav",
            "nav_top_level": True,
        }
    ]
