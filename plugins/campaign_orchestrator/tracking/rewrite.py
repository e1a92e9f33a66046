"""Open pixel and click links in a rendered HTML body: one regular-expression pass per message.

What is rewritten: the ``href`` of every ``<a>`` whose URL (after HTML entities are decoded:
``&amp;`` is ``&``) is absolute ``http://`` or ``https://``, in document order, to
``{endpoint}/c/<token>?u=<url>``; the ``<img>`` pixel goes before the last ``</body>``, or
at the end without one. Left as they are: ``mailto:``, ``tel:``, anchors and relative links,
links to the unsubscribe or tracking endpoints (the one-click link is never tracked: a
scanner following it must not count as a click, and RFC 8058 links must stay stable), and
links with a ``data-no-track`` attribute, which is removed from the output. The plain-text
part is not rewritten: see the README (Open and click tracking).

The pass runs over the *rendered* body, so what a profile field brings in is already
escaped by the template's autoescape (``<a`` in a name is ``&lt;a``) and is never taken
for a link; the URLs of links are the template's, with profile values inside them escaped.

Cost: the tags of a template's links are mostly the same for every recipient, so each
distinct ``<a …>`` tag is parsed once and kept (up to :data:`TAG_CACHE_CHARS`), as the MIME
builder keeps encoded lines; per link a message pays a dictionary lookup, one truncated
HMAC-SHA256 and the string joins (``bench/bench_mime.py`` measures it).
"""

from __future__ import annotations

import html as html_lib
import re
from html.entities import html5
from typing import TYPE_CHECKING, Union
from urllib.parse import quote

from campaign_orchestrator.tracking.tokens import expires_hour, sign_click, sign_open, signer, text_field, varint, zigzag

if TYPE_CHECKING:
    from collections.abc import Sequence

    from campaign_orchestrator.tracking.settings import TrackingSettings

TAG_CACHE_CHARS = 500_000
"""Characters of distinct ``<a>`` tags a tracker keeps parsed."""

URL_SAFE = "/:@!$()*,;=?~"
"""Kept as they are in the ``u`` parameter besides letters, digits and ``_.-``; everything
else is percent-encoded, ``&``, ``+``, ``#``, ``%``, quotes and spaces among them, so the
value reads back exactly with a plain percent-decoding and needs no HTML escaping."""

# An <a> start tag; quoted attribute values may hold ">". Possessive, so a tag that never
# closes costs one scan, not backtracking.
_A_TAG = re.compile(r"""<a\s(?:[^>"']++|"[^"]*+"|'[^']*+')*+>""", re.IGNORECASE)
_ATTRIBUTE = re.compile(r"""\s+([^\s"'>/=]+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s"'>][^\s>]*))?""")
_HTTP = re.compile(r"https?://", re.IGNORECASE)
_NO_TRACK = re.compile(r"data-no-track", re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
_URL_WHITESPACE = " \t\n\r\f"
_URL_DROPPED = {9: None, 10: None, 13: None}
"""Tabs and line breaks inside a URL, which browsers remove."""
_CHARACTER_REFERENCE = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[A-Za-z][A-Za-z0-9]*;?)")
_LEGACY_REFERENCES = {name: text for name, text in html5.items() if not name.endswith(";")}
"""Named references a browser also decodes without their semicolon (``&amp``, ``&copy``)."""
_MISSING = object()

# A parsed tag: None (left as is), a str (its replacement: data-no-track removed), or the
# pieces of a tracked one: (text before the URL, the URL as UTF-8, the quoted URL, text after).
_Parsed = Union[None, str, tuple[str, bytes, str, str]]


class LinkTracker:
    """Rewrites the HTML bodies of one step's messages; like its renderer, used by one thread
    at a time.

    :param settings: the signing secret and the endpoint's public URL.
    :param run_key: the run; with ``step_id`` part of every token.
    :param opens: add the open pixel.
    :param clicks: rewrite the links.
    :param untracked: URL prefixes never tracked besides the tracking endpoint's own (the
        unsubscribe endpoint's).
    :param now: the time links are issued (default now); they expire
        ``settings.validity_days`` later.
    """

    def __init__(
        self,
        settings: TrackingSettings,
        run_key: int,
        step_id: str,
        *,
        opens: bool = True,
        clicks: bool = True,
        untracked: Sequence[str] = (),
        now: float | None = None,
    ) -> None:
        endpoint = settings.endpoint
        self.opens, self.clicks = opens, clicks
        self._mac = signer(settings.secrets[0])
        self._fixed = varint(expires_hour(settings.validity_days, now)) + varint(run_key) + text_field(step_id)
        self._click = f"{endpoint}/c/"
        self._pixel = f'<img src="{endpoint}/o/'
        self._pixel_end = '" width="1" height="1" alt="" style="display:block;width:1px;height:1px;border:0">'
        self._untracked = (f"{endpoint}/", *(p for p in untracked if p))
        self._tags: dict[str, _Parsed] = {}
        self._budget = TAG_CACHE_CHARS

    def rewrite(self, html: str, profile_id: int, entity_key: str = "") -> str:
        """``html`` with its links tracked and the pixel added, for the message of
        (``profile_id``, ``entity_key``) of this tracker's run and step."""
        body = self._fixed + varint(zigzag(profile_id)) + text_field(entity_key)
        # (A case-insensitive regex search of the whole body costs more than lower() does.)
        if self.clicks or "data-no-track" in html.lower():
            html = self._links(html, body)
        if not self.opens:
            return html
        pixel = f"{self._pixel}{sign_open(self._mac, body)}{self._pixel_end}"
        at = html.rfind("</body")
        if at < 0 or not _BODY_END.match(html, at):
            ends = [m.start() for m in _BODY_END.finditer(html)]
            if not ends:
                return html + pixel
            at = ends[-1]
        return f"{html[:at]}{pixel}{html[at:]}"

    def _links(self, html: str, body: bytes) -> str:
        pieces: list[str] = []
        last = link = 0
        tags, mac, click = self._tags, self._mac, self._click
        for match in _A_TAG.finditer(html):
            tag = match.group()
            parsed = tags.get(tag, _MISSING)
            if parsed is _MISSING:
                parsed = self._parse(tag)
            if parsed is None:
                continue
            start, end = match.span()
            pieces.append(html[last:start])
            if type(parsed) is str:
                pieces.append(parsed)
            else:
                head, url, quoted, tail = parsed  # type: ignore[misc]
                pieces.append(f"{head}{click}{sign_click(mac, body, link, url)}?u={quoted}{tail}")
                link += 1
            last = end
        if not pieces:
            return html
        pieces.append(html[last:])
        return "".join(pieces)

    def _parse(self, tag: str) -> _Parsed:
        if any(prefix in tag for prefix in self._untracked[1:]):
            # The unsubscribe link: a new URL for every recipient, never tracked, not kept.
            return self._parse_tag(tag) if _NO_TRACK.search(tag) else None
        parsed = self._parse_tag(tag)
        if self._budget > 0:
            self._budget -= len(tag)
            self._tags[tag] = parsed
        return parsed

    def _parse_tag(self, tag: str) -> _Parsed:
        href = None
        no_track: list[tuple[int, int]] = []
        for attribute in _ATTRIBUTE.finditer(tag, 2, len(tag) - 1):
            name = attribute.group(1).lower()
            if name == "data-no-track":
                no_track.append(attribute.span())
            elif name == "href" and href is None and attribute.group(2) is not None:
                href = attribute
        if no_track:
            kept, at = [], 0
            for start, end in no_track:
                kept.append(tag[at:start])
                at = end
            kept.append(tag[at:])
            return "".join(kept)
        if href is None or not self.clicks:
            return None
        raw = href.group(2)
        url = unescape_attribute(raw[1:-1] if raw[0] in "\"'" else raw).strip(_URL_WHITESPACE)
        url = url.translate(_URL_DROPPED)
        if not _HTTP.match(url) or url.startswith(self._untracked):
            return None
        try:
            encoded = url.encode("utf-8")
            quoted = quote(url, safe=URL_SAFE)
        except UnicodeEncodeError:  # a lone surrogate: leave the link alone
            return None
        start, end = href.span(2)
        return (f'{tag[:start]}"', encoded, quoted, f'"{tag[end:]}')


def unescape_attribute(value: str) -> str:
    """An attribute value's text, its character references decoded as a browser decodes them
    in an attribute: ``&amp;`` and ``&#39;`` always; a named reference without its semicolon
    only when no ``=`` follows it (``?a=1&copy=2`` stays as written, though
    :func:`html.unescape` would make ``©=2`` of it)."""
    if "&" not in value:
        return value

    def decode(match: re.Match[str]) -> str:
        reference = match.group(1)
        if reference[0] == "#" or reference[-1] == ";":
            return html_lib.unescape(match.group())
        if reference in _LEGACY_REFERENCES and value[match.end() : match.end() + 1] != "=":
            return _LEGACY_REFERENCES[reference]
        return match.group()

    return _CHARACTER_REFERENCE.sub(decode, value)


__all__ = ["TAG_CACHE_CHARS", "URL_SAFE", "LinkTracker", "unescape_attribute"]
