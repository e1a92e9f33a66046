"""Serve one of the public endpoints (unsubscribe, tracking) alone, outside the api-server.

Deployments that expose only these endpoints to the internet run them this way; they read
their connections the way Airflow does (``AIRFLOW_CONN_*`` variables, a secrets backend or
the metadata database) and serve the same URLs under the same prefix as the api-server
mount, so links do not depend on which server answers them.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI


def standalone_root(title: str, prefix: str, app: FastAPI) -> FastAPI:
    """A server root with ``app`` at ``prefix`` and ``GET /healthz``."""
    from fastapi import FastAPI

    root = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)

    @root.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    root.mount(prefix, app)
    return root


def serve(argv: list[str] | None, description: str, factory: str, default_port: int) -> None:
    """Parse ``--host --port --workers --proxy-headers`` and run uvicorn on ``factory``
    (``"package.module:function"`` returning the root app)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=default_port, help=f"port (default {default_port})")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--proxy-headers", action="store_true", help="trust X-Forwarded-* from a reverse proxy")
    args = parser.parse_args(argv)
    import uvicorn

    uvicorn.run(
        factory,
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        proxy_headers=args.proxy_headers,
    )


__all__ = ["serve", "standalone_root"]
