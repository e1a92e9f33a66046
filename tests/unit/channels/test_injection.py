"""Profile data is data: Jinja syntax, HTML and SQL in profile fields render inert.

A profile value is never evaluated as a template (``{{ 7*7 }}`` stays that text, a
``{% for %}`` loop never runs), is HTML-escaped in ``body.html`` (text and attribute
context), cannot add a mail header, and stays a plain string in SMS, push (APNs / FCM JSON)
and webhook payloads. Each rendered part is compared with its exact expected text.
"""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from campaign_orchestrator.channels.base import Recipient
from campaign_orchestrator.channels.email.render import EmailRenderer
from campaign_orchestrator.channels.push.render import PushRenderer
from campaign_orchestrator.channels.push.sns import push_message
from campaign_orchestrator.channels.sms.render import SmsRenderer
from campaign_orchestrator.channels.webhook.render import WebhookRenderer
from campaign_orchestrator.config.channels import EmailStep, PushStep, SmsStep, WebhookStep
from campaign_orchestrator.paths import ProjectPaths

CAMPAIGN = SimpleNamespace(id="spring", description="Spring offers")

JINJA = "{{ 7*7 }}"
LOOP = "{% for x in range(3) %}boom{% endfor %}"
SANDBOX = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
HTML = "<script>alert('pwn')</script>"
ATTRIBUTE = '" onmouseover="alert(1)'
SQL = "'; DROP TABLE crm.profile; --"

EVIL = {
    "first_name": JINJA,
    "last_name": LOOP,
    "address_line1": SANDBOX,
    "city": HTML,
    "region": ATTRIBUTE,
    "postal_code": SQL,
    "push_platform": "apns",
}
TEMPLATE = "{{ profile.first_name }}|{{ profile.last_name }}|{{ profile.address_line1 }}|{{ profile.city }}|{{ profile.postal_code }}"
RAW = f"{JINJA}|{LOOP}|{SANDBOX}|{HTML}|{SQL}"
"""What TEMPLATE renders to outside HTML: the values exactly, nothing evaluated."""


def project(tmp_path: Path, folder: str, files: dict[str, str]) -> ProjectPaths:
    path = tmp_path / "include" / "templates" / folder
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return ProjectPaths(tmp_path)


def recipient(address: str = "ana@example.com", **profile: str) -> Recipient:
    return Recipient(42, "42", address, {**EVIL, **profile})


def parts(payload: bytes) -> tuple[email.message.EmailMessage, str, str]:
    message = email.message_from_bytes(payload, policy=email.policy.default)
    return message, message.get_body(("plain",)).get_content(), message.get_body(("html",)).get_content()


def test_email_renders_profile_fields_as_escaped_inert_text(tmp_path: Path) -> None:
    paths = project(tmp_path, "evil", {
        "subject.txt": "Offer for {{ profile.first_name }} {{ profile.postal_code }}",
        "body.txt": TEMPLATE,
        "body.html": f'<p>{TEMPLATE}</p><a href="https://acme.example/?r={{{{ profile.region }}}}">go</a>',
    })
    step = EmailStep(id="main", channel="email", template="evil", sender="Acme <news@acme.example>",
                     purpose="transactional")
    message, text, html = parts(EmailRenderer(step, CAMPAIGN, 7, paths).render(recipient()).payload)

    assert message["Subject"] == f"Offer for {JINJA} {SQL}"
    assert text.rstrip("\n") == RAW
    assert html.rstrip("\n") == (
        "<p>{{ 7*7 }}|{% for x in range(3) %}boom{% endfor %}|"
        "{{ &#39;&#39;.__class__.__mro__[1].__subclasses__() }}|"
        "&lt;script&gt;alert(&#39;pwn&#39;)&lt;/script&gt;|&#39;; DROP TABLE crm.profile; --</p>"
        '<a href="https://acme.example/?r=&#34; onmouseover=&#34;alert(1)">go</a>'
    )


def test_a_profile_value_cannot_add_mail_headers(tmp_path: Path) -> None:
    paths = project(tmp_path, "hdr", {
        "subject.txt": "Hi {{ profile.first_name }}", "body.txt": "x", "body.html": "<p>x</p>",
    })
    step = EmailStep(id="main", channel="email", template="hdr", sender="Acme <news@acme.example>",
                     purpose="transactional")
    out = EmailRenderer(step, CAMPAIGN, 7, paths).render(
        recipient(first_name="Ana\r\nBcc: attacker@evil.example\r\n\r\n<b>spoofed body</b>")
    )
    message, text, _ = parts(out.payload)
    assert message["Bcc"] is None and message["Subject"] == "Hi Ana Bcc: attacker@evil.example <b>spoofed body</b>"
    assert text.rstrip("\n") == "x"
    headers = out.payload.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc:" not in headers


def test_sms_renders_profile_fields_verbatim(tmp_path: Path) -> None:
    paths = project(tmp_path, "evil_sms", {"sms.txt": TEMPLATE})
    step = SmsStep(id="text", channel="sms", template="evil_sms", max_segments=10)
    out = SmsRenderer(step, CAMPAIGN, 7, paths).render(recipient("+33612345678"))
    assert out.payload == RAW


def test_push_payload_keeps_profile_fields_as_plain_json_strings(tmp_path: Path) -> None:
    paths = project(tmp_path, "evil_push", {
        "title.txt": "{{ profile.first_name }} {{ profile.region }}",
        "body.txt": TEMPLATE,
        "link.txt": "https://acme.example/trips?c={{ profile.city | urlencode }}",
    })
    step = PushStep(id="nudge", channel="push", template="evil_push", data={"note": "{{ profile.postal_code }}"})
    out = PushRenderer(step, CAMPAIGN, 7, paths).render(recipient("arn:aws:sns:us-east-1:1:endpoint/APNS/app/1"))
    assert out.payload == {
        "title": f"{JINJA} {ATTRIBUTE}",
        "body": RAW,
        "link": "https://acme.example/trips?c=%3Cscript%3Ealert%28%27pwn%27%29%3C/script%3E",
        "data": {"note": SQL},
    }
    link = out.payload["link"]
    apns = json.loads(push_message("apns", out.payload))
    assert apns["default"] == RAW and apns["APNS"] == apns["APNS_SANDBOX"]
    assert json.loads(apns["APNS"]) == {
        "aps": {"alert": {"title": f"{JINJA} {ATTRIBUTE}", "body": RAW}, "sound": "default"}, "link": link, "note": SQL,
    }
    fcm = json.loads(push_message("fcm", out.payload))
    assert json.loads(fcm["GCM"]) == {"fcmV1Message": {"message": {
        "notification": {"title": f"{JINJA} {ATTRIBUTE}", "body": RAW}, "data": {"link": link, "note": SQL},
    }}}


def test_webhook_payload_keeps_profile_fields_in_their_json_place(tmp_path: Path) -> None:
    paths = project(tmp_path, "evil_hook", {
        "payload.json": '{"name": {{ profile.first_name }}, "note": {{ profile.postal_code }}, '
                        '"html": {{ profile.city }}, "quote": {{ profile.region }}, "admin": false}',
    })
    step = WebhookStep(id="hook", channel="webhook", template="evil_hook", purpose="transactional")
    out = WebhookRenderer(step, CAMPAIGN, 7, paths).render(recipient("https://hooks.example"))
    assert out.payload == {"name": JINJA, "note": SQL, "html": HTML, "quote": ATTRIBUTE, "admin": False}


@pytest.mark.parametrize("value", [JINJA, LOOP, SANDBOX, HTML, SQL, ATTRIBUTE, "x\", \"admin\": true, \"y\": \""])
def test_any_of_them_in_any_channel_renders_to_itself(tmp_path: Path, value: str) -> None:
    """Each value alone, through SMS and webhook: it comes back exactly, as data."""
    sms = SmsRenderer(SmsStep(id="s", channel="sms", template="one_sms", max_segments=10), CAMPAIGN, 7,
                      project(tmp_path, "one_sms", {"sms.txt": "{{ profile.first_name }}"}))
    hook = WebhookRenderer(WebhookStep(id="h", channel="webhook", template="one_hook", purpose="transactional"),
                           CAMPAIGN, 7, project(tmp_path, "one_hook", {"payload.json": '{"v": {{ profile.first_name }}}'}))
    assert sms.render(recipient("+33612345678", first_name=value)).payload == value
    assert hook.render(recipient("https://hooks.example", first_name=value)).payload == {"v": value}
