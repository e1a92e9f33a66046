"""The unsubscribe endpoint: RFC 8058 one-click POST and a confirmation page.

- ``POST /unsubscribe/{token}``: what a mailbox provider sends for the one-click button
  (body ``List-Unsubscribe=One-Click``), and what the confirmation page's button sends. The
  consent changes before the response; a repeated POST is a success that changes nothing.
- ``GET /unsubscribe/{token}``: a page with a button that POSTs. It never unsubscribes:
  mail scanners and link previews fetch every URL of a message.

A malformed token is 400, a forged one 403, an expired one 410 with a page that says so;
none of them touches the store. The token is the only authentication, so responses are not
cached and do not leak the URL as a referrer.

Served inside the Airflow api-server (``plugins/unsubscribe_plugin.py``) or alone, for
deployments that expose only this endpoint publicly::

    python -m campaign_orchestrator.unsubscribe.app --host 0.0.0.0 --port 8090

Alone, it reads the ``campaign_unsubscribe`` and ``campaign_store`` connections the way
Airflow does (``AIRFLOW_CONN_*`` variables, a secrets backend or the metadata database) and
serves the same URLs under ``/campaigns-unsubscribe``, so links do not depend on which
server answers them.
"""

from __future__ import annotations

import logging
from contextlib import closing
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from jinja2 import DictLoader, Environment, StrictUndefined

from campaign_orchestrator.serving import serve, standalone_root
from campaign_orchestrator.unsubscribe.service import unsubscribe
from campaign_orchestrator.unsubscribe.tokens import (
    URL_PREFIX,
    CachedSettings,
    ExpiredToken,
    ForgedToken,
    MalformedToken,
    TokenPayload,
    UnsubscribeNotConfigured,
    UnsubscribeSettings,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    import psycopg

log = logging.getLogger(__name__)

ONE_CLICK_BODY = b"List-Unsubscribe=One-Click"
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
}
CHANNEL_NAMES = {"email": "emails", "sms": "text messages", "push": "push notifications", "direct_mail": "mail"}

_PAGES = {
    "base.html": """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{{ title }}</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}
button{font-size:1rem;padding:.6rem 1.2rem;cursor:pointer}</style></head>
<body><h1>{{ title }}</h1>{% block body %}{% endblock %}</body></html>""",
    "confirm.html": """{% extends "base.html" %}{% block body %}
<p>Stop receiving marketing {{ what }} from us? This takes effect immediately.</p>
<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">
<input type="hidden" name="via" value="page"><button type="submit">Unsubscribe</button></form>
{% endblock %}""",
    "done.html": """{% extends "base.html" %}{% block body %}
<p>You will no longer receive marketing {{ what }} from us. Messages already on their way may
still arrive in the next few minutes.</p>{% endblock %}""",
    "error.html": """{% extends "base.html" %}{% block body %}<p>{{ message }}</p>{% endblock %}""",
}


class _Pages:
    def __init__(self) -> None:
        self._env = Environment(loader=DictLoader(_PAGES), autoescape=True, undefined=StrictUndefined)

    def __call__(self, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = self._env.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def create_app(
    settings: Callable[[], UnsubscribeSettings] | None = None,
    connect: Callable[[], psycopg.Connection] | None = None,
) -> FastAPI:
    """The unsubscribe app.

    :param settings: returns the signing settings; defaults to the ``campaign_unsubscribe``
        connection, re-read at most once a minute so a rotated secret is picked up.
    :param connect: opens a store connection; defaults to the ``campaign_store`` connection.
    """
    if settings is None:
        settings = CachedSettings()
    if connect is None:
        from campaign_orchestrator.store.connect import store_connection

        connect = store_connection
    page = _Pages()
    app = FastAPI(title="Campaigns unsubscribe", docs_url=None, redoc_url=None, openapi_url=None)

    def check(token: str, html: bool) -> TokenPayload | Response:
        """The token's payload, or the response refusing it."""
        try:
            return settings().verify(token)
        except MalformedToken:
            status, title, message = 400, "Invalid link", "This unsubscribe link is incomplete or damaged."
        except ForgedToken:
            status, title, message = 403, "Invalid link", "This unsubscribe link is not valid."
        except ExpiredToken:
            status, title = 410, "Link expired"
            message = (
                "This unsubscribe link has expired. Use the link in a more recent message from us, "
                "or reply to it and ask to be unsubscribed."
            )
        except UnsubscribeNotConfigured:
            log.exception("unsubscribe endpoint is not configured")
            status, title, message = 503, "Unavailable", "Unsubscribing is unavailable right now; please try again later."
        if html:
            return page("error.html", status, title=title, message=message)
        return PlainTextResponse(f"{title}: {message}", status_code=status, headers=SECURITY_HEADERS)

    def apply(payload: TokenPayload, source: str) -> None:
        with closing(connect()) as conn:
            unsubscribe(conn, payload, source=source)

    @app.get("/unsubscribe/{token}", response_class=HTMLResponse)
    def confirm(token: str) -> Response:
        payload = check(token, html=True)
        if isinstance(payload, Response):
            return payload
        return page("confirm.html", title="Unsubscribe", what=CHANNEL_NAMES[payload.channel])

    @app.post("/unsubscribe/{token}")
    async def one_click(token: str, request: Request) -> Response:
        body = await request.body()
        from_page = b"via=page" in body.split(b"&")
        payload = check(token, html=from_page)
        if isinstance(payload, Response):
            return payload
        source = "unsubscribe_page" if from_page else "one_click"
        if not from_page and ONE_CLICK_BODY not in body:
            # RFC 8058 requires the body; some clients omit it. A POST is never a prefetch.
            log.info("one-click unsubscribe without the List-Unsubscribe=One-Click body")
        try:
            await run_in_threadpool(apply, payload, source)
        except Exception:
            log.exception("unsubscribe of profile %s from %s failed", payload.profile_id, payload.channel)
            headers = {**SECURITY_HEADERS, "Retry-After": "60"}
            if from_page:
                response = page("error.html", 503, title="Please try again",
                                message="We could not record your request just now; please try again in a minute.")
                response.headers.update(headers)
                return response
            return PlainTextResponse("temporarily unavailable", status_code=503, headers=headers)
        if from_page:
            return page("done.html", title="You are unsubscribed", what=CHANNEL_NAMES[payload.channel])
        return PlainTextResponse("unsubscribed", headers=SECURITY_HEADERS)

    return app


def standalone_app(app: FastAPI | None = None) -> FastAPI:
    """A server root with the unsubscribe app at :data:`URL_PREFIX` and ``GET /healthz``."""
    return standalone_root("Campaigns unsubscribe", URL_PREFIX, app or create_app())


def main(argv: list[str] | None = None) -> None:
    serve(argv, "Serve the one-click unsubscribe endpoint alone.", "campaign_orchestrator.unsubscribe.app:standalone_app",
          8090)


if __name__ == "__main__":
    main()
