"""The tracking endpoint: the open pixel and the click redirect.

- ``GET /o/{token}``: a 1x1 transparent GIF, never cached, and the message's ``opened``.
- ``GET /c/{token}?u={url}``: the link's ``clicked``, then ``302`` to ``url``, only if the
  token was signed for exactly that URL: no open redirect.

A malformed token (or a click without its URL) is 400, a forged one (or one of the other
kind) 404, an expired one 410; none of them redirects or touches the store. ``HEAD`` is
answered like ``GET`` and recorded as a machine's (no browser sends it for a link or an
image). A genuine token is honoured even when its run was deleted: the click still
redirects, and nothing is recorded. When the store is unreachable, the pixel and the
redirect are still served and the hit is logged and lost: a reader must reach the page.

Recording is one short transaction through the feedback ingestion (:mod:`.record`) on a
pooled connection with ``synchronous_commit = off``: a crash of the store may lose the last
fraction of a second of opens and clicks, never corrupt anything, and a request does not
wait for a WAL flush.

Served inside the Airflow api-server (``plugins/tracking_plugin.py``) at ``/campaigns-track``,
or alone::

    python -m campaign_orchestrator.tracking.app --host 0.0.0.0 --port 8091 [--proxy-headers]

The client address (Apple's proxy ranges, scanner networks) is the connection's peer; behind
a reverse proxy pass ``--proxy-headers`` (standalone) or configure the api-server's.
"""

from __future__ import annotations

import base64
import logging
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from campaign_orchestrator.serving import serve, standalone_root
from campaign_orchestrator.signing import CachedSettings, ExpiredToken, ForgedToken, MalformedToken
from campaign_orchestrator.tracking.machine import classify
from campaign_orchestrator.tracking.record import hit_event, record_hit
from campaign_orchestrator.tracking.settings import URL_PREFIX, TrackingNotConfigured, load_settings
from campaign_orchestrator.tracking.tokens import verify

if TYPE_CHECKING:
    from collections.abc import Callable

    import psycopg

    from campaign_orchestrator.store.pool import ConnectionPool
    from campaign_orchestrator.tracking.settings import TrackingSettings
    from campaign_orchestrator.tracking.tokens import TrackingToken

log = logging.getLogger(__name__)

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
"""A 1x1 transparent GIF (43 bytes)."""
NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
}
_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex">'
    "<title>{title}</title></head><body style=\"font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto\">"
    "<h1>{title}</h1><p>{message}</p></body></html>"
)
_REFUSALS = {
    MalformedToken: (400, "Invalid link", "This link is incomplete or damaged."),
    ForgedToken: (404, "Invalid link", "This link is not valid."),
    ExpiredToken: (410, "Link expired", "This link has expired. Please use a more recent message from us."),
}
POOL_SIZE = 4


def tracking_connection() -> psycopg.Connection:
    """A store connection for recording hits: autocommit, without waiting for WAL flushes, and
    planning the ingestion statement once: its custom plans (the default for the first
    executions, then whenever the planner thinks them cheaper, which it does for arrays of
    unknown length) cost more to make, for a one-event batch, than the statement to run."""
    from campaign_orchestrator.store.connect import store_connection

    conn = store_connection()
    conn.execute("SET synchronous_commit = off")
    conn.execute("SET plan_cache_mode = force_generic_plan")
    return conn


def create_app(
    settings: Callable[[], TrackingSettings] | None = None,
    connect: Callable[[], psycopg.Connection] | None = None,
    pool_size: int = POOL_SIZE,
) -> FastAPI:
    """The tracking app.

    :param settings: returns the signing settings; defaults to the ``campaign_tracking``
        connection (or ``campaign_unsubscribe``'s), re-read at most once a minute so a rotated
        secret is picked up.
    :param connect: opens a store connection; defaults to :func:`tracking_connection`.
    :param pool_size: store connections kept open for the request threads.
    """
    from campaign_orchestrator.store.pool import ConnectionPool

    if connect is None:
        # Airflow's postgres provider takes seconds to import: now, not in the first reader's request.
        import campaign_orchestrator.store.hook  # noqa: F401
    settings = settings or CachedSettings(load_settings)
    pool = ConnectionPool(connect or tracking_connection, size=pool_size)
    app = FastAPI(title="Campaigns tracking", docs_url=None, redoc_url=None, openapi_url=None)
    app.router.on_shutdown.append(pool.close)

    @app.api_route("/o/{token}", methods=["GET", "HEAD"])
    def open_pixel(token: str, request: Request) -> Response:
        found = _check(settings, token, "open")
        if isinstance(found, Response):
            return found
        found_settings, genuine = found
        _record(pool, found_settings, genuine, request)
        return Response(PIXEL, media_type="image/gif", headers=NO_CACHE)

    @app.api_route("/c/{token}", methods=["GET", "HEAD"])
    def click(token: str, request: Request) -> Response:
        url = _destination(request.scope.get("query_string", b""))
        if url is None:
            return _refusal(MalformedToken)
        found = _check(settings, token, "click", url)
        if isinstance(found, Response):
            return found
        found_settings, genuine = found
        _record(pool, found_settings, genuine, request, url)
        return Response(status_code=302, headers={"Location": location(url), **NO_CACHE})

    return app


def _check(
    settings: Callable[[], TrackingSettings], token: str, kind: str, url: str | None = None
) -> tuple[TrackingSettings, TrackingToken] | Response:
    """The settings and the verified token, or the response refusing it."""
    try:
        current = settings()
        genuine = verify(token, current.secrets, url=url)
    except TrackingNotConfigured:
        log.exception("the tracking endpoint is not configured")
        return HTMLResponse(_PAGE.format(title="Unavailable", message="Please try again later."),
                            status_code=503, headers=NO_CACHE)
    except (MalformedToken, ForgedToken, ExpiredToken) as exc:
        return _refusal(type(exc))
    if genuine.kind != kind:
        return _refusal(ForgedToken)
    return current, genuine


def _refusal(kind: type[Exception]) -> Response:
    status, title, message = _REFUSALS[kind]  # type: ignore[index]
    return HTMLResponse(_PAGE.format(title=title, message=message), status_code=status, headers=NO_CACHE)


def _record(
    pool: ConnectionPool, settings: TrackingSettings, token: TrackingToken, request: Request, url: str | None = None
) -> None:
    user_agent = request.headers.get("user-agent")
    address = request.client.host if request.client else None
    machine = classify(token.kind, user_agent, address, request.method, settings.machine)
    event = hit_event(token, url=url, user_agent=user_agent, machine=machine)
    try:
        with pool.connection() as conn:
            record_hit(conn, event)
    except Exception:  # noqa: BLE001 - the reader gets the page or the pixel whatever the store does
        log.exception("could not record the %s of %s", event.event_type, event.provider_event_id)


def _destination(query_string: bytes) -> str | None:
    """The ``u`` parameter, percent-decoded as it was encoded (``+`` is a plus sign: the
    link encodes a space as ``%20``); None when absent or not UTF-8."""
    for part in query_string.split(b"&"):
        if part.startswith(b"u="):
            try:
                return unquote(part[2:].decode("ascii"), errors="strict")
            except UnicodeError:
                return None
    return None


def location(url: str) -> str:
    """``url`` as an ASCII ``Location``: an IDN host in punycode, other non-ASCII characters,
    spaces and controls percent-encoded, existing escapes kept."""
    if url.isascii() and url.isprintable() and " " not in url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if not netloc.isascii():
        userinfo, at, hostport = netloc.rpartition("@")
        host, colon, port = hostport.partition(":") if not hostport.startswith("[") else (hostport, "", "")
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            host = _quote(host)
        netloc = f"{_quote(userinfo)}{at}{host}{colon}{port}"
    return urlunsplit((parts.scheme, netloc, _quote(parts.path), _quote(parts.query), _quote(parts.fragment)))


def _quote(text: str) -> str:
    return quote(text, safe="!#$%&'()*+,/:;=?@[]~")


def standalone_app(app: FastAPI | None = None) -> FastAPI:
    """A server root with the tracking app at :data:`URL_PREFIX` and ``GET /healthz``."""
    return standalone_root("Campaigns tracking", URL_PREFIX, app or create_app())


def main(argv: list[str] | None = None) -> None:
    serve(argv, "Serve the open and click tracking endpoint alone.",
          "campaign_orchestrator.tracking.app:standalone_app", 8091)


if __name__ == "__main__":
    main()
