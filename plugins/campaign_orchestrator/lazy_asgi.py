"""An ASGI app that builds the real FastAPI app on its first request.

Airflow imports plugins in every process (scheduler, workers, DAG processor); only the
api-server serves them. Deferring the import keeps FastAPI and the app's modules out of the
others, and keeps any work out of import time.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI


class LazyApp:
    """``factory`` names the app builder as ``"package.module:function"``."""

    def __init__(self, factory: str) -> None:
        self.factory = factory
        self._app: FastAPI | None = None

    @property
    def app(self) -> FastAPI:
        if self._app is None:
            module, _, function = self.factory.partition(":")
            self._app = getattr(import_module(module), function)()
        return self._app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    def __repr__(self) -> str:
        return f"LazyApp({self.factory!r})"
