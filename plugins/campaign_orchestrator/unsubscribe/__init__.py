"""One-click unsubscribe (RFC 8058): signed links in marketing emails and the endpoint behind them.

- :mod:`.tokens`: signed, expiring tokens and the ``List-Unsubscribe`` headers;
- :mod:`.service`: the consent change;
- :mod:`.app`: the FastAPI app, mounted by the api-server through
  ``plugins/unsubscribe_plugin.py`` at :data:`URL_PREFIX`, or served alone
  (``python -m campaign_orchestrator.unsubscribe.app``).

Airflow imports plugins in every process, so importing this package loads neither FastAPI
nor the store: :data:`asgi_app` builds the app on its first request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from campaign_orchestrator.unsubscribe.tokens import URL_PREFIX

if TYPE_CHECKING:
    from fastapi import FastAPI


class LazyUnsubscribeApp:
    """An ASGI app that builds the real FastAPI app on its first request."""

    def __init__(self) -> None:
        self._app: FastAPI | None = None

    @property
    def app(self) -> FastAPI:
        if self._app is None:
            from campaign_orchestrator.unsubscribe.app import create_app

            self._app = create_app()
        return self._app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    def __repr__(self) -> str:
        return "campaign_orchestrator.unsubscribe:asgi_app"


asgi_app = LazyUnsubscribeApp()

__all__ = ["URL_PREFIX", "LazyUnsubscribeApp", "asgi_app"]
