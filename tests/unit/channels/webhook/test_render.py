from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest
from jinja2.exceptions import SecurityError

from campaign_orchestrator.channels.base import Recipient, RenderRejected
from campaign_orchestrator.channels.messages import MESSAGE_ID_NAMESPACE
from campaign_orchestrator.channels.templating import TemplateCheckError
from campaign_orchestrator.channels.webhook import build_webhook_channel
from campaign_orchestrator.channels.webhook.render import WebhookRenderer, json_literal, webhook_message_id
from campaign_orchestrator.config.channels import WebhookStep
from campaign_orchestrator.paths import ProjectPaths

CAMPAIGN = SimpleNamespace(id="spring", description='Spring "offers"')

PAYLOAD = """{
  "event": "campaign.message",
  "id": {{ message.id }},
  "campaign": {{ campaign.id }},
  "profile": {"id": {{ entity_key }}, "name": {{ profile.first_name }}, "city": {{ profile['city'] }},
              "tier": {{ profile.get('tier') }}, "greeting": {{ "Hello " ~ profile.first_name ~ "!" }}},
  "points": {{ profile.points }},
  "tags": [{% for t in ["a", "b"] %}{{ t }}{% if not loop.last %}, {% endif %}{% endfor %}]
}
"""


def project(tmp_path: Path, payload: str = PAYLOAD) -> ProjectPaths:
    folder = tmp_path / "include" / "templates" / "hook"
    folder.mkdir(parents=True)
    (folder / "payload.json").write_text(payload, encoding="utf-8")
    return ProjectPaths(tmp_path)


def step(**kwargs) -> WebhookStep:
    args = {"id": "notify", "channel": "webhook", "template": "hook", "purpose": "transactional"}
    return WebhookStep(**{**args, **kwargs})


def recipient(**profile) -> Recipient:
    base = {"first_name": "Ann", "city": "Köln", "tier": None, "points": 12}
    return Recipient(42, "booking-9", "42", {**base, **profile})


def test_profile_fields_are_read_statically(tmp_path: Path) -> None:
    renderer = WebhookRenderer(step(), CAMPAIGN, 7, project(tmp_path))
    assert renderer.profile_fields == ("city", "first_name", "points", "tier")


def test_render_yields_the_parsed_payload_and_a_deterministic_id(tmp_path: Path) -> None:
    renderer = WebhookRenderer(step(), CAMPAIGN, 7, project(tmp_path))
    out = renderer.render(recipient())
    expected_id = str(uuid.uuid5(MESSAGE_ID_NAMESPACE, "7:notify:42:booking-9"))
    assert out.message_id == expected_id == webhook_message_id(7, "notify", 42, "booking-9")
    assert out.payload == {
        "event": "campaign.message",
        "id": expected_id,
        "campaign": "spring",
        "profile": {"id": "booking-9", "name": "Ann", "city": "Köln", "tier": None, "greeting": "Hello Ann!"},
        "points": 12,
        "tags": ["a", "b"],
    }
    assert renderer.render(recipient()).message_id == expected_id
    assert webhook_message_id(7, "notify", 43, "booking-9") != expected_id


@pytest.mark.parametrize(
    "name",
    [
        'Ann "Nancy" O\'Hara',
        "back\\slash",
        "two\nlines\r\tand tab",
        "emoji 🎉 · Zoë · 東京 · \u2028 separator",
        '", "admin": true, "x": "',
        "\x00\x1f control",
        "{{ not a template }}",
    ],
)
def test_profile_values_cannot_break_the_json(tmp_path: Path, name: str) -> None:
    renderer = WebhookRenderer(step(), CAMPAIGN, 7, project(tmp_path))
    payload = renderer.render(recipient(first_name=name, city=name)).payload
    assert payload["profile"]["name"] == name
    assert payload["profile"]["city"] == name
    assert payload["profile"]["greeting"] == f"Hello {name}!"
    assert "admin" not in payload


def test_values_are_json_literals() -> None:
    assert json_literal(None) == "null"
    assert json_literal(True) == "true"
    assert json_literal(3) == "3"
    assert json_literal(Decimal("19.90")) == "19.90"
    assert json_literal(date(2026, 3, 1)) == '"2026-03-01"'
    assert json.loads(json_literal(datetime(2026, 3, 1, 9, 30, tzinfo=UTC))) == "2026-03-01T09:30:00+00:00"
    assert json.loads(json_literal({"a": [1, Decimal("2.5")]})) == {"a": [1, 2.5]}
    with pytest.raises(ValueError):
        json_literal(float("nan"))
    with pytest.raises(TypeError):
        json_literal(object())


def test_text_that_is_not_json_is_rejected(tmp_path: Path) -> None:
    # The classic mistake: an expression inside a string literal gives "Hello "Ann"".
    renderer = WebhookRenderer(step(), CAMPAIGN, 7, project(tmp_path, '{"greeting": "Hello {{ profile.first_name }}"}'))
    with pytest.raises(RenderRejected) as excinfo:
        renderer.render(recipient())
    assert excinfo.value.reason == "invalid_payload"
    assert "hook/payload.json" in str(excinfo.value)


def test_nan_is_not_json(tmp_path: Path) -> None:
    renderer = WebhookRenderer(step(), CAMPAIGN, 7, project(tmp_path, '{"x": NaN, "n": {{ profile.first_name }}}'))
    with pytest.raises(RenderRejected, match="NaN"):
        renderer.render(recipient())


def test_templates_render_in_the_sandbox(tmp_path: Path) -> None:
    renderer = WebhookRenderer(
        step(), CAMPAIGN, 7, project(tmp_path, '{"x": {{ profile.first_name.__class__.__mro__ }}}')
    )
    with pytest.raises(SecurityError):
        renderer.render(recipient())


def test_unknown_names_and_whole_profile_are_refused_before_sending(tmp_path: Path) -> None:
    with pytest.raises(TemplateCheckError, match="unknown name 'profil'"):
        WebhookRenderer(step(), CAMPAIGN, 7, project(tmp_path / "a", '{"x": {{ profil.first_name }}}'))
    with pytest.raises(TemplateCheckError, match="as a whole"):
        WebhookRenderer(step(), CAMPAIGN, 7, project(tmp_path / "b", '{"x": {{ profile }}}'))


def test_missing_payload_file(tmp_path: Path) -> None:
    (tmp_path / "include" / "templates" / "hook").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="payload.json"):
        WebhookRenderer(step(), CAMPAIGN, 7, ProjectPaths(tmp_path))


def test_build_webhook_channel(tmp_path: Path) -> None:
    renderer, open_sender = build_webhook_channel(
        step(connection_id="partner_hook", endpoint="/hooks/campaign", mode="per_batch"), CAMPAIGN, 7, project(tmp_path)
    )
    assert isinstance(renderer, WebhookRenderer)
    sender = open_sender()  # builds the hook; nothing is opened until the batch starts
    assert sender.hook.http_conn_id == "partner_hook"
    assert (sender.endpoint, sender.campaign_id, sender.mode) == ("/hooks/campaign", "spring", "per_batch")
    _, default = build_webhook_channel(step(), CAMPAIGN, 7, ProjectPaths(tmp_path))
    assert default().hook.http_conn_id == "webhook_default"
