"""The Campaigns page of the Airflow UI: a FastAPI app mounted by the api-server.

``plugins/campaigns_ui_plugin.py`` registers :data:`asgi_app` under :data:`URL_PREFIX` and a
navigation entry that shows it inside the Airflow UI. Airflow imports plugins in every
process (scheduler, workers, DAG processor), so nothing here touches FastAPI, the store or
Airflow's API modules until the api-server sends the first request.
"""

from __future__ import annotations

from campaign_orchestrator.lazy_asgi import LazyApp

URL_PREFIX = "/campaigns"
"""Where the api-server mounts the app; the Airflow UI frames it from ``/plugin/campaigns``."""


asgi_app = LazyApp("campaign_orchestrator.ui.app:create_app")

__all__ = ["URL_PREFIX", "asgi_app"]
