from __future__ import annotations

import email
import email.policy
import json
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaign_orchestrator.channels.base import Recipient, RenderRejected
from campaign_orchestrator.channels.email import build_email_channel
from campaign_orchestrator.channels.messages import MESSAGE_ID_NAMESPACE, email_message_id as message_id, message_uuid
from campaign_orchestrator.channels.email.render import EmailRenderer
from campaign_orchestrator.channels.templating import TemplateCheckError
from campaign_orchestrator.config.channels import EmailStep
from campaign_orchestrator.paths import ProjectPaths
from campaign_orchestrator.unsubscribe.tokens import TokenPayload, load_settings

CAMPAIGN = SimpleNamespace(id="spring", description="Spring offers")
UNSUBSCRIBE_SECRET = "unit-test-unsubscribe-secret-0123"
UNSUBSCRIBE_PREFIX = "https://campaigns.example.com/campaigns-unsubscribe/unsubscribe/"


@pytest.fixture(autouse=True)
def unsubscribe_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Marketing emails need the campaign_unsubscribe connection for their one-click link."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_CAMPAIGN_UNSUBSCRIBE",
        json.dumps({"conn_type": "generic", "host": "campaigns.example.com", "schema": "https",
                    "password": UNSUBSCRIBE_SECRET}),
    )


def project(tmp_path: Path, subject: str, html: str, text: str) -> ProjectPaths:
    folder = tmp_path / "include" / "templates" / "spring"
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text(subject)
    (folder / "body.html").write_text(html)
    (folder / "body.txt").write_text(text)
    return ProjectPaths(tmp_path)


def step(**kwargs) -> EmailStep:
    args = {"id": "main", "channel": "email", "template": "spring", "sender": "Acme Travel <news@acme.example>"}
    return EmailStep(**{**args, **kwargs})


@pytest.fixture
def paths(tmp_path: Path) -> ProjectPaths:
    paths = project(
        tmp_path,
        "{{ profile.first_name }}, {{ campaign.description }}\n",
        "{% include '_footer.html' %}<p>Hi {{ profile.first_name }} from {{ profile['city'] }}</p>",
        "Hi {{ profile.first_name }}{% if profile.tier %} ({{ profile.tier }}){% endif %}, "
        "id {{ message.id }} {{ entity_key }}",
    )
    (paths.templates / "_footer.html").write_text("<footer>{{ profile.footer }}</footer>")
    return paths


def test_profile_fields_are_the_union_of_the_parts(paths: ProjectPaths) -> None:
    renderer = EmailRenderer(step(), CAMPAIGN, 7, paths)
    assert renderer.profile_fields == ("city", "first_name", "footer", "tier")
    assert renderer.envelope_from == "news@acme.example"


def test_render_builds_the_message(paths: ProjectPaths) -> None:
    # The body exactly as rendered: tracking (on by default for marketing) is tested in tests/unit/tracking.
    renderer = EmailRenderer(step(reply_to="help@acme.example", tracking=False), CAMPAIGN, 7, paths)
    profile = {"first_name": "<Ana>", "city": "Köln", "tier": None, "footer": "x"}
    recipient = Recipient(42, "booking-9", "ana@example.com", profile)
    out = renderer.render(recipient)
    assert out.recipient is recipient
    expected_id = f"<{uuid.uuid5(MESSAGE_ID_NAMESPACE, '7:main:42:booking-9')}@acme.example>"
    assert out.message_id == expected_id
    message = email.message_from_bytes(out.payload, policy=email.policy.default)
    assert message["Subject"] == "<Ana>, Spring offers"
    assert message["Message-ID"] == expected_id
    assert message["To"] == "ana@example.com"
    assert message["Reply-To"] == "help@acme.example"
    assert message.get_body(("html",)).get_content() == "<footer>x</footer><p>Hi &lt;Ana&gt; from Köln</p>"
    assert message.get_body(("plain",)).get_content() == f"Hi <Ana>, id {expected_id} booking-9"


def test_message_ids_are_deterministic_and_distinct() -> None:
    a = message_id(1, "main", 42, "", "acme.example")
    assert a == message_id(1, "main", 42, "", "acme.example")
    others = [(2, "main", 42, ""), (1, "other", 42, ""), (1, "main", 43, ""), (1, "main", 42, "e")]
    assert len({a, *(message_id(*key, "acme.example") for key in others)}) == 5


def test_templates_are_compiled_once(paths: ProjectPaths) -> None:
    renderer = EmailRenderer(step(), CAMPAIGN, 7, paths)
    (paths.templates / "spring" / "body.txt").write_text("changed {{ profile.first_name }}")
    recipient = Recipient(1, "", "ana@example.com", {"first_name": "Ana", "city": "", "tier": "", "footer": ""})
    body = email.message_from_bytes(renderer.render(recipient).payload, policy=email.policy.default)
    assert body.get_body(("plain",)).get_content().startswith("Hi Ana")


def test_unknown_template_names_fail_at_construction(tmp_path: Path) -> None:
    paths = project(tmp_path, "Hi {{ user.name }}", "x", "x")
    with pytest.raises(TemplateCheckError, match="spring/subject.txt:1: unknown name 'user'"):
        EmailRenderer(step(), CAMPAIGN, 7, paths)


def test_missing_parts_fail_at_construction(tmp_path: Path) -> None:
    paths = project(tmp_path, "x", "x", "x")
    (paths.templates / "spring" / "body.txt").unlink()
    with pytest.raises(FileNotFoundError, match="lacks body.txt"):
        EmailRenderer(step(), CAMPAIGN, 7, paths)


def test_render_errors_raise_for_the_caller_to_record(paths: ProjectPaths) -> None:
    renderer = EmailRenderer(step(), CAMPAIGN, 7, paths)
    with pytest.raises(ValueError):
        renderer.render(Recipient(1, "", "not-an-address", {"first_name": "A", "city": "", "tier": "", "footer": ""}))


@pytest.mark.parametrize(
    ("provider", "conn_id", "expected"),
    [("smtp", None, "smtp_default"), ("smtp", "my_smtp", "my_smtp"), ("ses", None, "aws_default"), ("ses", "my_aws", "my_aws")],
)
def test_build_email_channel_picks_provider_and_connection(
    paths: ProjectPaths, provider: str, conn_id: str | None, expected: str
) -> None:
    renderer, open_sender = build_email_channel(step(provider=provider, connection_id=conn_id), CAMPAIGN, 7, paths)
    assert isinstance(renderer, EmailRenderer)
    sender = open_sender()  # constructing opens nothing: the batch opens it
    hook = sender.hook
    assert (hook.smtp_conn_id if provider == "smtp" else hook.aws_conn_id) == expected
    assert type(sender).__name__ == ("SmtpSender" if provider == "smtp" else "SesSender")


def test_marketing_email_carries_one_click_unsubscribe(paths: ProjectPaths) -> None:
    (paths.templates / "spring" / "body.txt").write_text("Hi {{ profile.first_name }}. Stop: {{ unsubscribe_url }}")
    renderer = EmailRenderer(step(), CAMPAIGN, 7, paths)
    out = renderer.render(Recipient(42, "booking-9", "ana@example.com", {"first_name": "Ana", "city": "", "footer": ""}))
    message = email.message_from_bytes(out.payload, policy=email.policy.default)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = message["List-Unsubscribe"]
    assert link.startswith("<" + UNSUBSCRIBE_PREFIX) and link.endswith(">")
    url = link[1:-1]
    assert message.get_body(("plain",)).get_content() == f"Hi Ana. Stop: {url}"
    payload = load_settings().verify(url.removeprefix(UNSUBSCRIBE_PREFIX))
    assert payload == TokenPayload(42, "email", "spring", "7:main:booking-9", payload.expires)
    assert all(len(line) <= 998 for line in out.payload.split(b"\r\n"))


def test_mailto_alternative_when_configured(paths: ProjectPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CAMPAIGN_UNSUBSCRIBE",
        json.dumps({"conn_type": "generic", "host": "https://campaigns.example.com", "password": UNSUBSCRIBE_SECRET,
                    "extra": {"mailto": "unsubscribe@acme.example"}}),
    )
    renderer = EmailRenderer(step(), CAMPAIGN, 7, paths)
    out = renderer.render(Recipient(1, "", "ana@example.com", {"first_name": "A", "city": "", "tier": "", "footer": ""}))
    value = email.message_from_bytes(out.payload, policy=email.policy.default)["List-Unsubscribe"]
    assert value.startswith("<" + UNSUBSCRIBE_PREFIX)
    assert "<mailto:unsubscribe@acme.example?subject=unsubscribe%20" in value


def test_marketing_without_the_connection_is_rejected_naming_it(
    paths: ProjectPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_CAMPAIGN_UNSUBSCRIBE")
    renderer = EmailRenderer(step(), CAMPAIGN, 7, paths)
    with pytest.raises(RenderRejected, match="campaign_unsubscribe") as info:
        renderer.render(Recipient(1, "", "ana@example.com", {"first_name": "A", "city": "", "tier": "", "footer": ""}))
    assert info.value.reason == "no_unsubscribe_link"


def test_connection_without_a_host_is_rejected_too(paths: ProjectPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CAMPAIGN_UNSUBSCRIBE", json.dumps({"conn_type": "generic", "password": UNSUBSCRIBE_SECRET}))
    renderer = EmailRenderer(step(), CAMPAIGN, 7, paths)
    with pytest.raises(RenderRejected, match="has no host"):
        renderer.render(Recipient(1, "", "ana@example.com", {"first_name": "A", "city": "", "tier": "", "footer": ""}))


def test_transactional_needs_no_connection_and_gets_no_headers(
    paths: ProjectPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_CAMPAIGN_UNSUBSCRIBE")
    (paths.templates / "spring" / "body.txt").write_text("[{{ unsubscribe_url }}]")
    renderer = EmailRenderer(step(purpose="transactional"), CAMPAIGN, 7, paths)
    out = renderer.render(Recipient(1, "", "ana@example.com", {"first_name": "A", "city": "", "footer": ""}))
    message = email.message_from_bytes(out.payload, policy=email.policy.default)
    assert message["List-Unsubscribe"] is None and message["List-Unsubscribe-Post"] is None
    assert message.get_body(("plain",)).get_content() == "[]"


@settings(max_examples=2000, deadline=None)
@given(st.text())
def test_message_uuid_is_uuid5(name: str) -> None:
    assert message_uuid(name) == str(uuid.uuid5(MESSAGE_ID_NAMESPACE, name))


def test_message_uuid_is_uuid5_for_every_variant_digit() -> None:
    # 4,000 names cover each of the 16 values of the digit the variant bits are set in.
    for n in range(4000):
        name = f"7:main:{n}:booking-{n % 13}"
        assert message_uuid(name) == str(uuid.uuid5(MESSAGE_ID_NAMESPACE, name))
    expected = f"<{uuid.uuid5(MESSAGE_ID_NAMESPACE, '7:main:42:')}@acme.example>"
    assert message_id(7, "main", 42, "", "acme.example") == expected
