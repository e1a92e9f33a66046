from __future__ import annotations

import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from campaign_orchestrator.channels.base import Recipient, RenderRejected
from campaign_orchestrator.channels.messages import MESSAGE_ID_NAMESPACE
from campaign_orchestrator.channels.sms import build_sms_channel
from campaign_orchestrator.channels.messages import ledger_uuid as message_id
from campaign_orchestrator.channels.sms.render import SmsRenderer
from campaign_orchestrator.channels.sms.sns import SnsSmsSender, sms_type
from campaign_orchestrator.channels.templating import TemplateCheckError
from campaign_orchestrator.config.channels import SmsStep
from campaign_orchestrator.paths import ProjectPaths

CAMPAIGN = SimpleNamespace(id="spring", description="Spring offers")


def project(tmp_path: Path, text: str, folder: str = "promo") -> ProjectPaths:
    path = tmp_path / "include" / "templates" / folder
    path.mkdir(parents=True, exist_ok=True)
    (path / "sms.txt").write_text(text)
    return ProjectPaths(tmp_path)


def step(**kwargs) -> SmsStep:
    return SmsStep(**{"id": "text", "channel": "sms", "template": "promo", **kwargs})


def recipient(profile: dict | None = None, entity_key: str = "") -> Recipient:
    return Recipient(42, entity_key, "+33612345678", profile or {"first_name": "Ana"})


def test_renders_text_with_segments_and_a_stable_id(tmp_path: Path) -> None:
    paths = project(
        tmp_path,
        "Hi {{ profile.first_name }}{% if profile.get('city') %} in {{ profile.city }}{% endif %}: "
        "{{ campaign.description }} {{ entity_key }}\n\n",
    )
    renderer = SmsRenderer(step(), CAMPAIGN, 7, paths)
    assert renderer.profile_fields == ("city", "first_name")
    out = renderer.render(recipient({"first_name": "Ana", "city": None}, "trip-9"))
    assert out.payload == "Hi Ana: Spring offers trip-9"  # trailing newlines are not sent
    assert out.units == 1
    assert out.message_id == str(uuid.uuid5(MESSAGE_ID_NAMESPACE, "7:text:42:trip-9"))
    assert out.message_id == message_id(7, "text", 42, "trip-9")
    assert renderer.render(recipient({"first_name": "Ana", "city": None}, "trip-9")).message_id == out.message_id
    assert message_id(7, "text", 42, "") != out.message_id


def test_message_id_is_in_the_context(tmp_path: Path) -> None:
    renderer = SmsRenderer(step(), CAMPAIGN, 7, project(tmp_path, "ref {{ message.id }}"))
    out = renderer.render(recipient())
    assert out.payload == f"ref {out.message_id}"


def test_units_count_concatenated_segments(tmp_path: Path) -> None:
    renderer = SmsRenderer(step(max_segments=3), CAMPAIGN, 1, project(tmp_path, "{{ profile.text }}"))
    assert renderer.render(recipient({"text": "a" * 161})).units == 2
    assert renderer.render(recipient({"text": "€" * 80})).units == 1
    assert renderer.render(recipient({"text": "😀" * 36})).units == 2


def test_too_many_segments_is_rejected(tmp_path: Path) -> None:
    renderer = SmsRenderer(step(max_segments=2), CAMPAIGN, 1, project(tmp_path, "{{ profile.text }}"))
    assert renderer.render(recipient({"text": "a" * 306})).units == 2
    with pytest.raises(RenderRejected) as gsm:
        renderer.render(recipient({"text": "a" * 307}))
    assert gsm.value.reason == "too_many_segments"
    assert "3 segments (GSM-7), max 2" in str(gsm.value)
    # One typographic apostrophe makes a 2-segment text UCS-2 and 3 segments; say why.
    with pytest.raises(RenderRejected) as ucs:
        renderer.render(recipient({"text": "it’s " + "a" * 140}))
    assert "3 segments (UCS-2), max 2" in str(ucs.value)
    assert "'’'" in str(ucs.value)


def test_empty_text_is_rejected(tmp_path: Path) -> None:
    renderer = SmsRenderer(step(), CAMPAIGN, 1, project(tmp_path, "{{ profile.text }}  \n"))
    with pytest.raises(RenderRejected) as exc:
        renderer.render(recipient({"text": None}))
    assert exc.value.reason == "empty_message"


def test_templates_are_checked_and_compiled_once(tmp_path: Path) -> None:
    paths = project(tmp_path, "Hi {{ profile.first_name }}")
    renderer = SmsRenderer(step(), CAMPAIGN, 1, paths)
    (paths.templates / "promo" / "sms.txt").write_text("changed")
    assert renderer.render(recipient()).payload == "Hi Ana"
    with pytest.raises(TemplateCheckError, match="unknown name 'profil'"):
        SmsRenderer(step(), CAMPAIGN, 1, project(tmp_path, "Hi {{ profil.first_name }}", "typo"), template="typo")
    with pytest.raises(FileNotFoundError, match="lacks sms.txt"):
        SmsRenderer(step(template="none"), CAMPAIGN, 1, paths)


def test_templates_render_sandboxed(tmp_path: Path) -> None:
    from jinja2.exceptions import SecurityError

    renderer = SmsRenderer(step(), CAMPAIGN, 1, project(tmp_path, "{{ profile.name.__class__.__mro__ }}"))
    with pytest.raises(SecurityError):
        renderer.render(recipient({"name": "x"}))


def test_sms_type_defaults_from_purpose() -> None:
    assert sms_type(step()) == "Promotional"
    assert sms_type(step(purpose="transactional")) == "Transactional"
    assert sms_type(step(sms_type="Transactional")) == "Transactional"


def test_build_sms_channel(tmp_path: Path) -> None:
    paths = project(tmp_path, "Hi")
    renderer, open_sender = build_sms_channel(
        step(connection_id="aws_sms", sender_id="ACME", origination_number="+15555550100", purpose="transactional"),
        CAMPAIGN,
        3,
        paths,
    )
    assert isinstance(renderer, SmsRenderer)
    sender = open_sender()  # builds the hook, opens nothing
    assert isinstance(sender, SnsSmsSender)
    assert sender.hook.aws_conn_id == "aws_sms"
    assert sender.attributes == {
        "AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"},
        "AWS.SNS.SMS.SenderID": {"DataType": "String", "StringValue": "ACME"},
        "AWS.MM.SMS.OriginationNumber": {"DataType": "String", "StringValue": "+15555550100"},
    }
    _, default = build_sms_channel(step(), CAMPAIGN, 3, paths)
    assert default().hook.aws_conn_id == "aws_default"
