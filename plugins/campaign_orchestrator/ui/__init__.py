"""The Campaigns page of the Airflow UI: a FastAPI app mounted by the api-server.

``plugins/campaigns_ui_plugin.py`` registers :data:`asgi_app` under :data:`URL_PREFIX` and a
navigation entry that shows it inside the Airflow UI. Airflow imports plugins in every
process (scheduler, workers, DAG processor), so nothing here touches FastAPI, the store or
Airflow's API modules until the api-server sends the first request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

URL_PREFIX = "/campaigns"
"""Where the api-server mounts the app; the Airflow UI frames it from ``/plugin/campaigns``."""


class LazyCampaignsApp:
    """An ASGI app that builds the real FastAPI app on its first request."""

    def __init__(self) -> None:
        self._app: FastAPI | None = None

    @property
    def app(self) -> FastAPI:
        if self._app is None:
            from campaign_orchestrator.ui.app import create_app

            self._app = create_app()
        return self._app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    def __repr__(self) -> str:
        return "campaign_orchestrator.ui:asgi_app"


asgi_app = LazyCampaignsApp()

__all__ = ["URL_PREFIX", "LazyCampaignsApp", "asgi_app"]
