"""The email-service webhook endpoint: ``POST /campaigns-feedback/{sendgrid|mailgun|postmark}``.

Each request is authenticated first (:mod:`.sendgrid`, :mod:`.mailgun`, :mod:`.postmark`):
without credentials or a signature it is refused with 401, with wrong, stale or replayed
ones 403, and the store is not touched. An authenticated payload that is not what the
provider sends is 400 (logged, nothing stored). The events then go through
:func:`~campaign_orchestrator.feedback.ingest.ingest_events` in one transaction (idempotent:
providers retry), and the response is 200 with the counts. A store failure is 503, so the
provider retries later. A provider whose secret is not configured is 404.

Served inside the Airflow api-server (``plugins/feedback_webhooks_plugin.py``) or alone::

    python -m campaign_orchestrator.feedback.webhooks.app --host 0.0.0.0 --port 8092

Alone, it reads the ``campaign_webhooks`` and ``campaign_store`` connections the way Airflow
does and serves the same URLs under ``/campaigns-feedback``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from campaign_orchestrator.feedback.ingest import ingest_events
from campaign_orchestrator.feedback.webhooks import PROVIDERS, URL_PREFIX, mailgun, postmark, sendgrid
from campaign_orchestrator.feedback.webhooks.common import Malformed, Refused, load_json
from campaign_orchestrator.feedback.webhooks.settings import WebhooksNotConfigured, WebhookSettings, load_settings
from campaign_orchestrator.sqlfiles import query
from campaign_orchestrator.serving import serve, standalone_root
from campaign_orchestrator.store.reuse import IdleConnections
from campaign_orchestrator.unsubscribe.tokens import CachedSettings

if TYPE_CHECKING:
    from collections.abc import Callable

    import psycopg

    from campaign_orchestrator.feedback.parse import DeliveryEvent
    from campaign_orchestrator.config.policies import SoftBounces

log = logging.getLogger(__name__)

MAX_BODY = 10 * 1024 * 1024
"""SendGrid batches events; a body past this is refused (413) rather than read."""
HEADERS = {"Cache-Control": "no-store"}


class Replayed(Exception):
    """The request's one-time token was used before."""


def _soft_bounces() -> SoftBounces:
    from campaign_orchestrator.paths import ProjectPaths
    from campaign_orchestrator.run.policies import load_policies

    return load_policies(ProjectPaths.discover().campaigns).soft_bounces


def create_app(
    settings: Callable[[], WebhookSettings] | None = None,
    connect: Callable[[], psycopg.Connection] | None = None,
    soft_bounces: Callable[[], SoftBounces] | None = None,
) -> FastAPI:
    """The webhook app.

    :param settings: returns the secrets; defaults to the ``campaign_webhooks`` connection,
        re-read at most once a minute.
    :param connect: opens a store connection; defaults to the ``campaign_store`` connection.
        A few are kept open between requests (:class:`~campaign_orchestrator.store.reuse.IdleConnections`).
    :param soft_bounces: returns the soft-bounce threshold; defaults to ``_policies.yaml``'s.
    """
    settings = settings or CachedSettings(load_settings)
    soft_bounces = soft_bounces or CachedSettings(_soft_bounces, ttl=300.0)
    if connect is None:
        from campaign_orchestrator.store.connect import store_connection

        connect = store_connection
    connections = IdleConnections(connect)
    app = FastAPI(title="Campaigns feedback webhooks", docs_url=None, redoc_url=None, openapi_url=None)

    def store(provider: str, events: list[DeliveryEvent], token: str | None, max_age: int) -> dict[str, int]:
        with connections.connection() as conn, conn.transaction():
            if token is not None:
                claimed = conn.execute(query("feedback/claim_webhook_token"),
                                       {"provider": provider, "token": token, "max_age": max_age}).fetchone()
                if claimed is None:
                    raise Replayed(token)
            return ingest_events(conn, events, source=f"{provider}_webhook", soft_bounces=soft_bounces())

    @app.post("/{provider}")
    async def receive(provider: str, request: Request) -> JSONResponse:
        if provider not in PROVIDERS:
            return _answer(404, f"unknown provider {provider!r}; use one of {', '.join(PROVIDERS)}")
        try:
            current = settings()
        except WebhooksNotConfigured:
            log.exception("feedback webhooks are not configured")
            return _answer(503, "not configured")
        if not current.configured(provider):
            log.warning("%s webhook called but connection campaign_webhooks has no secret for it", provider)
            return _answer(404, f"{provider} webhooks are not configured")
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            return _answer(413, "body too large")
        body = await request.body()
        token = None
        try:
            if provider == "sendgrid":
                sendgrid.verify(current, body, request.headers)
                events, acknowledged = sendgrid.parse(body)
            elif provider == "mailgun":
                document = load_json(body)
                token = mailgun.verify(current, document)
                events, acknowledged = mailgun.parse(document)
            else:
                postmark.verify(current, request.headers.get("authorization"),
                                request.client.host if request.client else None)
                events, acknowledged = postmark.parse(load_json(body))
        except Refused as exc:
            log.warning("%s webhook refused (%d): %s", provider, exc.status, exc.reason)
            extra = {"WWW-Authenticate": 'Basic realm="campaigns-feedback"'} if exc.status == 401 else {}
            return _answer(exc.status, exc.reason, extra)
        except (Malformed, AttributeError, KeyError, TypeError, ValueError) as exc:
            log.warning("%s webhook: malformed payload (%s: %s); body starts %r", provider, type(exc).__name__, exc,
                        body[:300])
            return _answer(400, f"malformed payload: {exc}")
        try:
            counts = await run_in_threadpool(store, provider, events, token, current.max_age)
        except Replayed:
            log.warning("%s webhook refused (403): token replayed", provider)
            return _answer(403, "this request was received before (replayed token)")
        except Exception:
            log.exception("%s webhook: storing %d events failed", provider, len(events))
            return _answer(503, "temporarily unavailable", {"Retry-After": "60"})
        return JSONResponse({"events": len(events), "acknowledged": acknowledged, "stored": counts["inserted"],
                             "duplicates": counts["duplicates"]}, headers=HEADERS)

    return app


def _answer(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={**HEADERS, **(headers or {})})


def standalone_app(app: Any = None) -> FastAPI:
    """A server root with the webhook app at :data:`URL_PREFIX` and ``GET /healthz``."""
    return standalone_root("Campaigns feedback webhooks", URL_PREFIX, app or create_app())


def main(argv: list[str] | None = None) -> None:
    serve(argv, "Serve the email-service feedback webhooks alone.",
          "campaign_orchestrator.feedback.webhooks.app:standalone_app", 8092)


if __name__ == "__main__":
    main()
