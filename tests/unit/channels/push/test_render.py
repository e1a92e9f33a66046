from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from campaign_orchestrator.channels.base import Recipient, RenderRejected
from campaign_orchestrator.channels.push import build_push_channel
from campaign_orchestrator.channels.push.render import PushRenderer
from campaign_orchestrator.channels.push.sns import SnsPushSender, push_message
from campaign_orchestrator.channels.messages import ledger_uuid as message_id
from campaign_orchestrator.channels.templating import TemplateCheckError
from campaign_orchestrator.config.channels import PushStep
from campaign_orchestrator.paths import ProjectPaths

CAMPAIGN = SimpleNamespace(id="spring", description="Spring offers")


def project(tmp_path: Path, files: dict[str, str], folder: str = "promo") -> ProjectPaths:
    path = tmp_path / "include" / "templates" / folder
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return ProjectPaths(tmp_path)


FILES = {
    "title.txt": "{{ profile.first_name }}, {{ campaign.description }}\n",
    "body.txt": "Your trip to {{ profile.city }} is ready.\n",
    "link.txt": "https://acme.example/trips/{{ entity_key }}?m={{ message.id }}\n",
}


def step(**kwargs) -> PushStep:
    return PushStep(**{"id": "nudge", "channel": "push", "template": "promo", **kwargs})


def recipient(**profile) -> Recipient:
    fields = {"first_name": "Ana", "city": "Köln", "push_platform": "apns", "tier": "gold", **profile}
    return Recipient(42, "trip-9", "arn:aws:sns:us-east-1:123456789012:endpoint/APNS/app/1", fields)


def test_renders_title_body_link_and_data(tmp_path: Path) -> None:
    data = {"screen": "trip", "tier": "{{ profile.tier | upper }}", "ref": "{{ entity_key }}-{{ message.id }}"}
    renderer = PushRenderer(step(data=data), CAMPAIGN, 7, project(tmp_path, FILES))
    # push_platform is always fetched: the sender shapes the payload with it.
    assert renderer.profile_fields == ("city", "first_name", "push_platform", "tier")
    out = renderer.render(recipient())
    mid = message_id(7, "nudge", 42, "trip-9")
    assert out.message_id == mid
    assert out.units is None
    assert out.payload == {
        "title": "Ana, Spring offers",
        "body": "Your trip to Köln is ready.",
        "link": f"https://acme.example/trips/trip-9?m={mid}",
        "data": {"screen": "trip", "tier": "GOLD", "ref": f"trip-9-{mid}"},
    }


def test_link_is_optional(tmp_path: Path) -> None:
    files = {k: v for k, v in FILES.items() if k != "link.txt"}
    renderer = PushRenderer(step(), CAMPAIGN, 7, project(tmp_path, files))
    assert renderer.profile_fields == ("city", "first_name", "push_platform")
    assert renderer.render(recipient()).payload["link"] is None
    assert renderer.render(recipient()).payload["data"] == {}


def test_empty_link_is_none_and_empty_body_is_rejected(tmp_path: Path) -> None:
    files = {**FILES, "link.txt": "{% if profile.get('url') %}{{ profile.url }}{% endif %}\n"}
    renderer = PushRenderer(step(), CAMPAIGN, 7, project(tmp_path, files))
    assert renderer.render(recipient(url=None)).payload["link"] is None
    assert renderer.render(recipient(url="https://x.example")).payload["link"] == "https://x.example"
    blank = PushRenderer(step(), CAMPAIGN, 7, project(tmp_path, {**FILES, "body.txt": "{{ profile.city }}\n"}, "blank"),
                         template="blank")
    with pytest.raises(RenderRejected) as exc:
        blank.render(recipient(city=None))
    assert exc.value.reason == "empty_message"
    assert "body is empty" in str(exc.value)


def test_data_strings_are_checked_like_templates(tmp_path: Path) -> None:
    paths = project(tmp_path, FILES)
    with pytest.raises(TemplateCheckError, match=r"promo/data.tier:1: unknown name 'profle'"):
        PushRenderer(step(data={"tier": "{{ profle.tier }}"}), CAMPAIGN, 7, paths)
    with pytest.raises(TemplateCheckError, match="uses 'profile' as a whole"):
        PushRenderer(step(data={"all": "{{ profile }}"}), CAMPAIGN, 7, paths)
    with pytest.raises(TemplateCheckError, match="promo/data.bad:1"):
        PushRenderer(step(data={"bad": "{{ profile.tier "}), CAMPAIGN, 7, paths)
    with pytest.raises(ValueError, match="reserved"):
        PushRenderer(step(data={"aps": "x"}), CAMPAIGN, 7, paths)


def test_data_strings_render_sandboxed(tmp_path: Path) -> None:
    from jinja2.exceptions import SecurityError

    unsafe = step(data={"x": "{{ profile.tier.__class__.__mro__ }}"})
    renderer = PushRenderer(unsafe, CAMPAIGN, 7, project(tmp_path, FILES))
    with pytest.raises(SecurityError):
        renderer.render(recipient())


def test_missing_parts(tmp_path: Path) -> None:
    paths = project(tmp_path, {"title.txt": "x"})
    with pytest.raises(FileNotFoundError, match="lacks body.txt"):
        PushRenderer(step(), CAMPAIGN, 7, paths)


PAYLOAD = {"title": "Hi Ana", "body": "Trip ready ✈", "link": "https://acme.example/t", "data": {"screen": "trip"}}


def test_apns_message_shape() -> None:
    message = json.loads(push_message("apns", PAYLOAD))
    assert set(message) == {"default", "APNS", "APNS_SANDBOX"}
    assert message["default"] == "Trip ready ✈"
    assert message["APNS"] == message["APNS_SANDBOX"]
    assert json.loads(message["APNS"]) == {
        "aps": {"alert": {"title": "Hi Ana", "body": "Trip ready ✈"}, "sound": "default"},
        "link": "https://acme.example/t",
        "screen": "trip",
    }


def test_fcm_message_is_the_v1_shape() -> None:
    message = json.loads(push_message("fcm", PAYLOAD))
    assert set(message) == {"default", "GCM"}
    assert json.loads(message["GCM"]) == {
        "fcmV1Message": {
            "message": {
                "notification": {"title": "Hi Ana", "body": "Trip ready ✈"},
                "data": {"link": "https://acme.example/t", "screen": "trip"},
            }
        }
    }
    bare = json.loads(json.loads(push_message("fcm", {**PAYLOAD, "link": None, "data": {}}))["GCM"])
    assert bare == {"fcmV1Message": {"message": {"notification": {"title": "Hi Ana", "body": "Trip ready ✈"}}}}


def test_unknown_platform() -> None:
    with pytest.raises(ValueError, match="unknown push platform"):
        push_message("wns", PAYLOAD)


def test_build_push_channel(tmp_path: Path) -> None:
    renderer, open_sender = build_push_channel(step(connection_id="aws_push"), CAMPAIGN, 3, project(tmp_path, FILES))
    assert isinstance(renderer, PushRenderer)
    sender = open_sender()
    assert isinstance(sender, SnsPushSender)
    assert sender.hook.aws_conn_id == "aws_push"
