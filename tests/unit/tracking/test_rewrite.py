"""The open pixel and the click links added at render time."""

from __future__ import annotations

import email
import email.policy
import html as html_lib
import json
import re
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaign_orchestrator.channels.base import Recipient, RenderRejected
from campaign_orchestrator.channels.email.render import EmailRenderer
from campaign_orchestrator.config.channels import EmailStep
from campaign_orchestrator.paths import ProjectPaths
from campaign_orchestrator.tracking.app import _destination
from campaign_orchestrator.tracking.extract import links_in_html, tracked_links
from campaign_orchestrator.tracking.rewrite import LinkTracker
from campaign_orchestrator.tracking.settings import TrackingSettings
from campaign_orchestrator.tracking.tokens import MessageKey, verify

SECRET = "tracking-secret-0123456789abcdef"
BASE = "https://t.example"
ENDPOINT = BASE + "/campaigns-track"
UNSUBSCRIBE = "https://campaigns.example.com/campaigns-unsubscribe/"
SETTINGS = TrackingSettings((SECRET,), BASE)
CAMPAIGN = SimpleNamespace(id="spring", description="Spring offers")


def tracker(**kwargs) -> LinkTracker:
    return LinkTracker(SETTINGS, 7, "offer", untracked=(UNSUBSCRIBE,), **kwargs)


def token_of(url: str, marker: str) -> str:
    return url.split(marker, 1)[1].split("?", 1)[0]


def clicks(out: str) -> list[tuple[int, str]]:
    """(link index, destination) of each tracked link, each verified against its token."""
    found = []
    for link in links_in_html(out).clicks:
        token = verify(token_of(link.url, "/c/"), [SECRET], url=link.destination)
        assert token.key == MessageKey(7, "offer", 42, "b-1")
        found.append((token.link, link.destination))
    return found


def test_links_are_tracked_in_order_and_decoded() -> None:
    html = (
        '<html><body><a href="https://a.example/x?a=1&amp;b=2" class="cta">A</a>\n'
        "<A HREF='https://b.example/caf&#233;?q=&#39;x&#39;'>B</A> <a title=\"a > b\" href=https://c.example/>C</a>"
        "</body></html>"
    )
    out = tracker().rewrite(html, 42, "b-1")
    assert clicks(out) == [
        (0, "https://a.example/x?a=1&b=2"),
        (1, "https://b.example/café?q='x'"),
        (2, "https://c.example/"),
    ]
    assert 'class="cta"' in out and 'title="a > b"' in out
    assert out.count(f'href="{ENDPOINT}/c/') == 2 and out.count(f'HREF="{ENDPOINT}/c/') == 1


@pytest.mark.parametrize(
    ("href", "destination"),
    [
        # A named reference without ";" before "=" is text in an attribute (browsers keep it).
        ("https://a.example/?lang=en&copy=2&amp;b=3", "https://a.example/?lang=en&copy=2&b=3"),
        ("https://a.example/?x=&lt;y&gt;&#39;&#x27;", "https://a.example/?x=<y>''"),
        ("https://a.example/a\n   b\tc", "https://a.example/a   bc"),  # tabs and line breaks are dropped
        ("  https://a.example/trimmed  ", "https://a.example/trimmed"),
    ],
)
def test_destinations_are_what_a_browser_would_open(href: str, destination: str) -> None:
    out = tracker(opens=False).rewrite(f'<a href="{href}">x</a>', 42, "b-1")
    assert clicks(out) == [(0, destination)]


def test_unquoted_href_with_a_query() -> None:
    out = tracker(opens=False).rewrite("<a href=https://a.example/?a=1&b=2 class=x>x</a>", 42, "b-1")
    assert clicks(out) == [(0, "https://a.example/?a=1&b=2")]
    assert out.endswith('" class=x>x</a>')


@pytest.mark.parametrize(
    "href",
    ["mailto:ana@example.com", "tel:+33123456789", "#top", "/relative/page", "javascript:alert(1)", "ftp://f.example/",
     "", UNSUBSCRIBE + "unsubscribe/abc.def", ENDPOINT + "/c/abc?u=x"],
)
def test_links_left_alone(href: str) -> None:
    html = f'<body><a href="{href}">x</a></body>'
    out = tracker(opens=False).rewrite(html, 42, "b-1")
    assert out == html


@pytest.mark.parametrize("attribute", ["data-no-track", 'data-no-track="true"', "DATA-NO-TRACK=''", "data-no-track=1"])
def test_data_no_track_keeps_the_link_and_is_removed(attribute: str) -> None:
    html = f'<body><a {attribute} href="https://a.example/">a</a><a href="https://b.example/" {attribute}>b</a></body>'
    out = tracker(opens=False).rewrite(html, 42, "b-1")
    assert out == '<body><a href="https://a.example/">a</a><a href="https://b.example/">b</a></body>'


def test_data_no_track_is_removed_when_clicks_are_not_tracked() -> None:
    html = '<a data-no-track href="https://a.example/">a</a> <a href="https://b.example/">b</a>'
    assert tracker(opens=False, clicks=False).rewrite(html, 42) == '<a href="https://a.example/">a</a> ' \
        '<a href="https://b.example/">b</a>'


def test_pixel_goes_before_the_last_body_end() -> None:
    for html, where in (
        ("<html><body><p>x</p></body></html>", "</body></html>"),
        ("<HTML><BODY><p>x</p></BODY ></HTML>", "</BODY ></HTML>"),
        ("<p>no body element</p>", ""),
        ("<body>quoted </body> in text</body>", "</body>"),
    ):
        out = tracker(clicks=False).rewrite(html, 42, "b-1")
        pixel = links_in_html(out).open_url
        assert pixel is not None and pixel.startswith(ENDPOINT + "/o/")
        token = verify(token_of(pixel, "/o/"), [SECRET])
        assert (token.kind, token.key) == ("open", MessageKey(7, "offer", 42, "b-1"))
        img = re.search(r"<img [^>]*>", out).group()
        assert 'width="1"' in img and 'height="1"' in img and 'alt=""' in img
        assert out.endswith(img + where)
        assert out.replace(img, "") == html


def test_each_message_and_link_gets_its_own_token_from_cached_tags() -> None:
    link_tracker = tracker()
    html = '<body><a href="https://a.example/">a</a><a href="https://a.example/">again</a></body>'
    first, second = link_tracker.rewrite(html, 42, "b-1"), link_tracker.rewrite(html, 43, "")
    tokens = [token_of(c.url, "/c/") for out in (first, second) for c in links_in_html(out).clicks]
    assert len(set(tokens)) == 4
    assert [verify(t, [SECRET], url="https://a.example/").link for t in tokens] == [0, 1, 0, 1]
    assert [verify(t, [SECRET], url="https://a.example/").key.profile_id for t in tokens] == [42, 42, 43, 43]


@settings(max_examples=300, deadline=None)
@given(path=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_any_destination_reads_back_exactly(path: str) -> None:
    """What the template's href says (HTML-escaped by autoescape) is what the endpoint redirects to."""
    url = "https://x.example/" + path
    # As a browser reads an href: outer whitespace trimmed, tabs and line breaks dropped.
    stripped = url.strip(" \t\n\r\f").replace("\t", "").replace("\n", "").replace("\r", "")
    out = tracker(opens=False).rewrite(f'<a href="{html_lib.escape(url)}">x</a>', 42, "b-1")
    (link,) = links_in_html(out).clicks
    query = link.url.split("?", 1)[1]
    assert _destination(query.encode("ascii")) == stripped
    assert verify(token_of(link.url, "/c/"), [SECRET], url=stripped).link == 0
    assert not set(query) & set("&+#'\" <>")


# Through the renderer: templates, autoescape, the unsubscribe link, the step's options.


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CAMPAIGN_UNSUBSCRIBE",
        json.dumps({"conn_type": "generic", "host": "campaigns.example.com", "schema": "https",
                    "password": "unit-test-unsubscribe-secret-0123"}),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_CAMPAIGN_TRACKING",
        json.dumps({"conn_type": "generic", "host": BASE, "password": SECRET}),
    )


HTML = """<html><body>
<p>Hi {{ profile.first_name }}</p>
<a href="https://wanderly.example/offers?city={{ profile.city|urlencode }}&amp;id={{ message.id|urlencode }}">Offers</a>
<a href="mailto:help@wanderly.example">Write to us</a>
<a href="{{ unsubscribe_url }}">Unsubscribe</a>
</body></html>"""


def project(tmp_path: Path, html: str = HTML, text: str = "Offers: https://wanderly.example/offers") -> ProjectPaths:
    folder = tmp_path / "include" / "templates" / "spring"
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text("Spring")
    (folder / "body.html").write_text(html)
    (folder / "body.txt").write_text(text)
    return ProjectPaths(tmp_path)


def step(**kwargs) -> EmailStep:
    return EmailStep(id="offer", channel="email", template="spring", sender="Wanderly <offers@wanderly.example>",
                     **kwargs)


def render(paths: ProjectPaths, first_name: str = "Ana", city: str = "Köln", **kwargs) -> email.message.EmailMessage:
    renderer = EmailRenderer(step(**kwargs), CAMPAIGN, 7, paths)
    out = renderer.render(Recipient(42, "b-1", "ana@example.com", {"first_name": first_name, "city": city}))
    return email.message_from_bytes(out.payload, policy=email.policy.default)


def test_marketing_email_tracks_by_default_but_never_the_unsubscribe_link(tmp_path: Path) -> None:
    message = render(project(tmp_path))
    links = tracked_links(message)
    # The href as the template wrote it, &amp; decoded, the values urlencoded by the template.
    mid = quote(message["Message-ID"], safe="/")
    assert [c.destination for c in links.clicks] == [f"https://wanderly.example/offers?city=K%C3%B6ln&id={mid}"]
    unsubscribe = message["List-Unsubscribe"].strip("<>")
    assert links.other_links == ["mailto:help@wanderly.example", unsubscribe]
    assert links.open_url is not None
    assert verify(token_of(links.open_url, "/o/"), [SECRET]).key == MessageKey(7, "offer", 42, "b-1")
    # The plain-text part is left as written.
    assert message.get_body(("plain",)).get_content() == "Offers: https://wanderly.example/offers"


def test_autoescape_is_preserved_and_profile_html_is_never_a_link(tmp_path: Path) -> None:
    evil = '<a href="https://evil.example/">win</a><img src=x>'
    message = render(project(tmp_path), first_name=evil)
    body = message.get_body(("html",)).get_content()
    assert "<p>Hi &lt;a href=&#34;https://evil.example/&#34;&gt;win&lt;/a&gt;&lt;img src=x&gt;</p>" in body
    links = tracked_links(message)
    assert all("evil.example" not in c.destination for c in links.clicks)
    assert len(links.clicks) == 1


def test_options_per_step(tmp_path: Path) -> None:
    paths = project(tmp_path)
    none = tracked_links(render(paths, tracking=False))
    assert none.open_url is None and none.clicks == []
    opens = tracked_links(render(paths, tracking={"clicks": False}))
    assert opens.open_url is not None and opens.clicks == []
    only_clicks = tracked_links(render(paths, tracking={"opens": False}))
    assert only_clicks.open_url is None and len(only_clicks.clicks) == 1
    transactional = tracked_links(render(paths, purpose="transactional"))
    assert transactional.open_url is None and transactional.clicks == []


def test_without_any_signing_connection_tracked_messages_are_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_CAMPAIGN_TRACKING")
    monkeypatch.delenv("AIRFLOW_CONN_CAMPAIGN_UNSUBSCRIBE")
    paths = project(tmp_path, html="<a href='https://a.example/'>a</a>")
    renderer = EmailRenderer(step(purpose="transactional", tracking=True), CAMPAIGN, 7, paths)
    with pytest.raises(RenderRejected) as info:
        renderer.render(Recipient(42, "", "ana@example.com", {}))
    assert info.value.reason == "no_tracking_link"
    assert "campaign_tracking" in str(info.value) and "campaign_unsubscribe" in str(info.value)
    # Untracked, the same step sends.
    EmailRenderer(step(purpose="transactional"), CAMPAIGN, 7, paths).render(Recipient(42, "", "ana@example.com", {}))
