"""Per-message return paths (VERP) and email-service relay headers, over a real SMTP server."""

from __future__ import annotations

import email
import email.policy
import json
from types import SimpleNamespace

import pytest
from campaign_orchestrator.channels.base import Outbound, Recipient
from campaign_orchestrator.channels.email import build_email_channel
from campaign_orchestrator.channels.email.mime import MimeBuilder
from campaign_orchestrator.channels.email.relay import RELAYS
from campaign_orchestrator.channels.messages import email_message_id as message_id
from campaign_orchestrator.channels.email.smtp import SmtpSender
from campaign_orchestrator.config.channels import EmailStep
from campaign_orchestrator.paths import ProjectPaths

from tests.fixtures.imap import BOUNCE_DOMAIN, verp_settings
from tests.fixtures.mail import SmtpServer

pytestmark = pytest.mark.integration

BUILDER = MimeBuilder("Wanderly <offers@wanderly.example>")


def outbound(profile_id: int) -> Outbound:
    recipient = Recipient(profile_id=profile_id, entity_key="", address=f"p{profile_id}@example.com", profile={})
    mid = message_id(77, "offer_email", profile_id, "", "wanderly.example")
    payload = BUILDER.build(to=recipient.address, subject="Hi", text="Hello", html="<p>Hello</p>", message_id=mid)
    return Outbound(recipient, payload, mid)


def test_each_message_gets_its_own_signed_return_path(smtp_server: SmtpServer) -> None:
    messages = [outbound(p) for p in (1, 2, 3)]
    foreign = Outbound(messages[0].recipient, messages[0].payload, "<not-ours@elsewhere.example>")
    with SmtpSender(BUILDER.envelope_from, smtp_server.conn_id, return_path=verp_settings()) as sender:
        assert [o.status for o in sender.send([*messages, foreign])] == ["sent"] * 4
    received = smtp_server.handler.messages
    senders = [r.mail_from for r in received]
    assert len(set(senders[:3])) == 3 and all(s.endswith("@" + BOUNCE_DOMAIN) for s in senders[:3])
    assert [verp_settings().read([s]) for s in senders[:3]] == [(m.message_id[1:37], m.recipient.profile_id)
                                                               for m in messages]
    assert senders[3] == "offers@wanderly.example"  # an id that is not ours keeps the plain sender
    assert [r.data for r in received[:3]] == [m.payload for m in messages]  # content untouched


def test_the_channel_reads_the_bounce_connection_and_works_without_it(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = EmailStep(id="offer_email", channel="email", template="winter_sale", sender="Wanderly <offers@wanderly.example>",
                     connection_id=smtp_server.conn_id, purpose="transactional")
    campaign = SimpleNamespace(id="winter_sale", description="")
    monkeypatch.delenv("AIRFLOW_CONN_CAMPAIGN_BOUNCES", raising=False)
    _, make_sender = build_email_channel(step, campaign, 77, ProjectPaths.discover())
    with make_sender() as sender:
        sender.send([outbound(1)])
    monkeypatch.setenv("AIRFLOW_CONN_CAMPAIGN_BOUNCES", json.dumps(
        {"conn_type": "imap", "extra": {"verp_domain": BOUNCE_DOMAIN, "secret": verp_settings().secrets[0]}}))
    _, make_sender = build_email_channel(step, campaign, 77, ProjectPaths.discover())
    with make_sender() as sender:
        sender.send([outbound(1)])
    plain, verp = (r.mail_from for r in smtp_server.handler.messages)
    assert plain == "offers@wanderly.example"
    assert verp_settings().read([verp]) == (outbound(1).message_id[1:37], 1)


@pytest.mark.parametrize("provider", ["sendgrid", "mailgun", "postmark"])
def test_relays_carry_our_message_id_in_their_custom_data_header(
    provider: str, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = json.loads(smtp_server.conn_json())
    conn["extra"]["message_stream"] = "broadcast"
    monkeypatch.setenv(f"AIRFLOW_CONN_SMTP_{provider.upper()}", json.dumps(conn))  # the default connection id
    step = EmailStep(id="offer_email", channel="email", template="winter_sale", sender="Wanderly <offers@wanderly.example>",
                     provider=provider, purpose="transactional")
    _, make_sender = build_email_channel(step, SimpleNamespace(id="c", description=""), 77, ProjectPaths.discover())
    message = outbound(4)
    with make_sender() as sender:
        assert [o.status for o in sender.send([message])] == ["sent"]
    (received,) = smtp_server.handler.messages
    assert received.mail_from == "offers@wanderly.example"  # the service handles bounces: no VERP
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    assert parsed["Message-ID"] == message.message_id
    if provider == "sendgrid":
        assert json.loads(parsed["X-SMTPAPI"]) == {"unique_args": {"campaign_message_id": message.message_id}}
    elif provider == "mailgun":
        assert json.loads(parsed["X-Mailgun-Variables"]) == {"campaign_message_id": message.message_id}
    else:
        assert parsed["X-PM-Metadata-campaign_message_id"] == message.message_id
        assert (parsed["X-PM-KeepID"], parsed["X-PM-Message-Stream"]) == ("true", "broadcast")
    assert received.data.endswith(message.payload)  # the rendered message itself, unchanged
    assert RELAYS[provider].default_conn_id == f"smtp_{provider}"
