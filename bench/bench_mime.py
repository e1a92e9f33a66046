"""How long one email takes to build: the stdlib baseline, our MIME builder, Jinja rendering.

Run: ``.venv/bin/python bench/bench_mime.py [--n 20000] [--repeat 3]``. Each variant builds
N messages for N distinct recipients (names, some non-ASCII); the best of ``--repeat`` runs
is reported in µs per message.

- ``stdlib``: ``EmailMessage`` + ``set_content``/``add_alternative`` (quoted-printable) and
  ``BytesGenerator`` with the SMTP policy: what a straightforward implementation does.
- ``mime``: :class:`MimeBuilder` on the same rendered subject and bodies.
- ``render``: the three Jinja templates of a typical campaign, sandboxed.
- ``renderer``: :class:`EmailRenderer.render`, i.e. render + Message-ID + MIME, end to end,
  with tracking off: the baseline of the next one.
- ``tracked``: the same renderer with open and click tracking on (the default of a marketing
  step): its five offer links rewritten to the click endpoint (the unsubscribe link left),
  the pixel added. Reported against ``renderer``: µs per message, ratio, µs per tracked link.
- ``rewrite``: :meth:`LinkTracker.rewrite` alone on the rendered HTML.

``--json PATH`` writes the figures for ``bench/report.py``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from email.generator import BytesGenerator
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from campaign_orchestrator.channels.base import Recipient  # noqa: E402
from campaign_orchestrator.channels.email.mime import MimeBuilder  # noqa: E402
from campaign_orchestrator.channels.email.render import EmailRenderer  # noqa: E402
from campaign_orchestrator.channels.templating import template_environment  # noqa: E402
from campaign_orchestrator.config.channels import EmailStep# noqa: E402
from campaign_orchestrator.paths import ProjectPaths  # noqa: E402

SENDER = "Acme Travel <news@acme.example>"
REPLY_TO = "Acme Support <help@acme.example>"

SUBJECT = "{{ profile.first_name }}, your {{ profile.city }} spring offers are here"
TEXT = """Hello {{ profile.first_name }},

Spring is here and {{ profile.city }} is waiting. As a {{ profile.tier }} member you get
early access to our best offers:
{% for i in range(5) %}
  * Offer {{ i + 1 }}: 3 nights from {{ 199 + i * 20 }} EUR
{%- endfor %}

See you soon,
The Acme Travel team

You receive this email because you opted in. Message {{ message.id }}.
"""
HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>Spring offers</title></head>
<body style="font-family: Arial, sans-serif; color: #222;">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0">
<tr><td style="padding: 24px; background: #f4f4f4;">
<h1 style="font-size: 24px;">Hello {{ profile.first_name }},</h1>
<p style="font-size: 16px; line-height: 1.5;">Spring is here and {{ profile.city }} is waiting.
As a <strong>{{ profile.tier }}</strong> member you get early access to our best offers.</p>
{% for i in range(5) %}
<div style="border: 1px solid #ddd; border-radius: 4px; padding: 12px; margin: 8px 0;">
  <h2 style="font-size: 18px;">Offer {{ i + 1 }}</h2>
  <p>3 nights from <b>{{ 199 + i * 20 }} &euro;</b> &mdash; breakfast included.</p>
  <a href="https://acme.example/offers/{{ i }}?utm_source=email&amp;utm_campaign={{ campaign.id }}"
     style="background: #0a66c2; color: #fff; padding: 8px 16px; text-decoration: none;">Book now</a>
</div>
{% endfor %}
<p style="font-size: 12px; color: #888;">You receive this email because you opted in.
Message {{ message.id }}. <a href="{{ unsubscribe_url }}" style="color: #888;">Unsubscribe</a></p>
</td></tr></table></body></html>
"""

FIRST_NAMES = ["Ana", "Jürgen", "Zoë", "Marie-Hélène", "Tom", "Łukasz", "Sofía", "Kenji", "Olivia", "Noah"]
CITIES = ["Lisbon", "Köln", "Paris", "Kraków", "Madrid", "Tokyo", "London", "Oslo"]


def recipients(n: int) -> list[Recipient]:
    return [
        Recipient(
            profile_id=i,
            entity_key="",
            address=f"user{i}@example.com",
            profile={
                "first_name": FIRST_NAMES[i % len(FIRST_NAMES)],
                "city": CITIES[i % len(CITIES)],
                "tier": "gold" if i % 3 else "silver",
            },
        )
        for i in range(n)
    ]


def best(repeat: int, n: int, run) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    n = args.n

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = root / "include" / "templates" / "spring"
        folder.mkdir(parents=True)
        (folder / "subject.txt").write_text(SUBJECT)
        (folder / "body.txt").write_text(TEXT)
        (folder / "body.html").write_text(HTML)
        paths = ProjectPaths(root)
        step = EmailStep(id="main", channel="email", template="spring", sender=SENDER, reply_to=REPLY_TO,
                         tracking=False)
        from campaign_orchestrator.tracking.extract import tracked_links
        from campaign_orchestrator.tracking.rewrite import LinkTracker
        from campaign_orchestrator.tracking.settings import TrackingSettings
        from campaign_orchestrator.unsubscribe.tokens import UnsubscribeSettings

        # Marketing mail carries a signed unsubscribe link: sign with a throwaway secret.
        unsubscribe = UnsubscribeSettings(secrets=("x" * 32,), base_url="https://bench.example")
        tracking = TrackingSettings(secrets=("y" * 32,), base_url="https://bench.example")
        campaign = SimpleNamespace(id="spring", description="Spring offers")
        renderer = EmailRenderer(step, campaign, 1, paths, unsubscribe=unsubscribe)
        tracked_renderer = EmailRenderer(
            step.model_copy(update={"tracking": None}), campaign, 1, paths, unsubscribe=unsubscribe, tracking=tracking
        )
        links = tracked_links(tracked_renderer.render(recipients(1)[0]).payload)
        assert links.open_url and len(links.clicks) == 5 and len(links.other_links) == 1, links
        env = template_environment(paths.templates)
        parts = [env.get_template(f"spring/{p}") for p in ("subject.txt", "body.txt", "body.html")]
        people = recipients(n)

        rendered: list[tuple[str, str, str, str, str]] = []

        def render() -> None:
            rendered.clear()
            for r in people:
                mid = f"<{r.profile_id}@acme.example>"
                ctx = renderer.context(r, mid)
                rendered.append((r.address, mid, *(t.render(ctx) for t in parts)))

        def stdlib() -> None:
            for address, mid, subject, text, html in rendered:
                msg = EmailMessage(policy=SMTP)
                msg["From"] = SENDER
                msg["Reply-To"] = REPLY_TO
                msg["To"] = address
                msg["Subject"] = subject
                msg["Date"] = formatdate(usegmt=True)
                msg["Message-ID"] = mid
                msg.set_content(text, cte="quoted-printable")
                msg.add_alternative(html, subtype="html", cte="quoted-printable")
                out = io.BytesIO()
                BytesGenerator(out, policy=SMTP).flatten(msg)
                out.getvalue()

        builder = MimeBuilder(SENDER, REPLY_TO)

        def ours() -> None:
            build = builder.build
            for address, mid, subject, text, html in rendered:
                build(to=address, subject=subject, text=text, html=html, message_id=mid)

        def end_to_end() -> None:
            for r in people:
                renderer.render(r)

        def end_to_end_tracked() -> None:
            for r in people:
                tracked_renderer.render(r)

        link_tracker = LinkTracker(tracking, 1, "main", untracked=(unsubscribe.url(""),))

        def rewrite() -> None:
            for (_, _, _, _, html), r in zip(rendered, people):
                link_tracker.rewrite(html, r.profile_id, r.entity_key)

        results = {"render": best(args.repeat, n, render)}
        results["stdlib"] = best(args.repeat, n, stdlib)
        results["mime"] = best(args.repeat, n, ours)
        # Alternated, so a change of machine load between them does not pass for a difference.
        untracked, tracked = [], []
        for _ in range(args.repeat):
            untracked.append(best(1, n, end_to_end))
            tracked.append(best(1, n, end_to_end_tracked))
        results["renderer"], results["tracked"] = min(untracked), min(tracked)
        results["rewrite"] = best(args.repeat, n, rewrite)
        size = sum(len(renderer.render(r).payload) for r in people[:100]) / 100
        tracked_size = sum(len(tracked_renderer.render(r).payload) for r in people[:100]) / 100

    print(f"{n:,} messages, best of {args.repeat}, ~{size:,.0f} bytes each (Python {sys.version.split()[0]})")
    labels = {
        "stdlib": "stdlib EmailMessage + BytesGenerator",
        "mime": "MimeBuilder.build",
        "render": "Jinja render (subject, text, html)",
        "renderer": "EmailRenderer.render, no tracking",
        "tracked": "EmailRenderer.render, opens + clicks",
        "rewrite": "LinkTracker.rewrite alone",
    }
    for key in ("stdlib", "mime", "render", "renderer", "tracked", "rewrite"):
        print(f"  {labels[key]:<40} {results[key]:8.1f} µs/message")
    print(f"  stdlib / MimeBuilder: {results['stdlib'] / results['mime']:.1f}x faster")
    print(f"  MimeBuilder / render: {results['mime'] / results['render']:.2f} of the render cost")
    overhead = results["tracked"] - results["renderer"]
    per_link = overhead / (len(links.clicks) + 1)  # five links and the pixel, each one HMAC
    print(f"  tracking: +{overhead:.1f} µs/message ({results['tracked'] / results['renderer']:.2f}x the untracked "
          f"renderer), {per_link:.1f} µs per tracked link or pixel; {tracked_size - size:+,.0f} bytes/message")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "messages": n, "repeat": args.repeat, "bytes": size, "tracked_bytes": tracked_size,
            "tracked_links": len(links.clicks), "us_per_message": results,
            "tracking_overhead_us": overhead, "tracking_ratio": results["tracked"] / results["renderer"],
            "tracking_us_per_link": per_link,
            "token_chars": len(links.open_url.rsplit("/", 1)[1]),
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
