"""Find the tracking URLs in a sent message: what a test (or a curious operator) follows to
open or click a message the way a mail client would.

>>> links = tracked_links(outbound.payload)           # MIME bytes, str or an EmailMessage
>>> client.get(links.open_url)                         # the pixel
>>> client.get(links.clicks[0].url)                    # 302 to links.clicks[0].destination
"""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass, field
from email.message import EmailMessage
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

from campaign_orchestrator.tracking.settings import URL_PREFIX


@dataclass(frozen=True)
class ClickLink:
    """:param index: position among the message's tracked links. :param url: the tracking URL
    (``…/c/<token>?u=…``). :param destination: the URL it redirects to."""

    index: int
    url: str
    destination: str


@dataclass(frozen=True)
class TrackedLinks:
    """The open pixel's URL (None without one) and the tracked links, in document order."""

    open_url: str | None
    clicks: list[ClickLink] = field(default_factory=list)
    other_links: list[str] = field(default_factory=list)
    """``href`` values left untracked (unsubscribe, mailto:, data-no-track…)."""


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pixel: str | None = None
        self.links: list[str] = []
        self.others: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img" and f"{URL_PREFIX}/o/" in (values.get("src") or ""):
            self.pixel = values["src"]
        elif tag == "a" and values.get("href"):
            href = values["href"] or ""
            (self.links if f"{URL_PREFIX}/c/" in href else self.others).append(href)


def html_part(message: bytes | str | EmailMessage) -> str:
    """The decoded text/html part of ``message``."""
    if not isinstance(message, EmailMessage):
        parse = email.message_from_bytes if isinstance(message, bytes) else email.message_from_string
        message = parse(message, policy=email.policy.default)  # type: ignore[arg-type]
    part = message.get_body(preferencelist=("html",))
    if part is None:
        raise ValueError("the message has no text/html part")
    return part.get_content()


def tracked_links(message: bytes | str | EmailMessage) -> TrackedLinks:
    """The tracking URLs of ``message``'s HTML part."""
    return links_in_html(html_part(message))


def links_in_html(html: str) -> TrackedLinks:
    """The tracking URLs of an HTML body."""
    collector = _Collector()
    collector.feed(html)
    collector.close()
    clicks = []
    for index, url in enumerate(collector.links):
        query = urlsplit(url).query
        value = query[2:] if query.startswith("u=") else ""
        clicks.append(ClickLink(index, url, unquote(value, errors="strict")))
    return TrackedLinks(collector.pixel, clicks, collector.others)


__all__ = ["ClickLink", "TrackedLinks", "html_part", "links_in_html", "tracked_links"]
