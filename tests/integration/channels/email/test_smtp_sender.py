"""SmtpSender against a real SMTP server (aiosmtpd on 127.0.0.1)."""

from __future__ import annotations

import email
import email.policy
import socket

import pytest

from campaign_orchestrator.channels.base import Outbound, Recipient, TransientSendError
from campaign_orchestrator.channels.email.mime import MimeBuilder
from campaign_orchestrator.channels.email.smtp import SmtpSender
from tests.fixtures.mail import SmtpServer

pytestmark = pytest.mark.integration

SENDER = "Acme Travel <news@acme.example>"
BUILDER = MimeBuilder(SENDER)


def outbound(address: str, body: str = "Hello\n.a line starting with a dot\nFrom the team") -> Outbound:
    recipient = Recipient(profile_id=abs(hash(address)) % 10**6, entity_key="", address=address, profile={})
    mid = f"<{recipient.profile_id}@acme.example>"
    payload = BUILDER.build(to=address, subject="Grüße 🎉", text=body, html=f"<p>{body}</p>", message_id=mid)
    return Outbound(recipient, payload, mid)


def addresses(n: int) -> list[str]:
    return [f"user{i}@example.com" for i in range(n)]


def statuses(outcomes) -> list[str]:
    return [o.status for o in outcomes]


def test_messages_arrive_byte_for_byte_over_one_connection(smtp_server: SmtpServer) -> None:
    messages = [outbound(a) for a in addresses(5)]
    with SmtpSender(BUILDER.envelope_from, smtp_server.conn_id) as sender:
        first = sender.send(messages[:2])
        second = sender.send(messages[2:])
    assert statuses(first + second) == ["sent"] * 5
    assert all(o.provider_message_id is None for o in first + second)
    assert smtp_server.handler.connections == 1
    received = smtp_server.handler.messages
    assert [r.rcpt_tos for r in received] == [[m.recipient.address] for m in messages]
    assert all(r.mail_from == "news@acme.example" for r in received)
    assert [r.data for r in received] == [m.payload for m in messages]
    parsed = email.message_from_bytes(received[0].data, policy=email.policy.default)
    assert parsed["Subject"] == "Grüße 🎉"
    assert parsed.get_body(("plain",)).get_content().replace("\r\n", "\n") == (
        "Hello\n.a line starting with a dot\nFrom the team"
    )


def test_connection_from_a_uri(smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_URI_TEST", smtp_server.conn_uri())
    with SmtpSender(BUILDER.envelope_from, "smtp_uri_test") as sender:
        assert statuses(sender.send([outbound("ana@example.com")])) == ["sent"]
    assert len(smtp_server.handler.messages) == 1


def test_permanent_refusal_fails_only_that_message(smtp_server: SmtpServer) -> None:
    smtp_server.handler.rcpt_replies["user1@example.com"] = "550 5.1.1 No such user"
    smtp_server.handler.data_replies["user3@example.com"] = "554 5.7.1 Message refused as spam"
    with SmtpSender(BUILDER.envelope_from, smtp_server.conn_id) as sender:
        outcomes = sender.send([outbound(a) for a in addresses(5)])
    assert statuses(outcomes) == ["sent", "failed", "sent", "failed", "sent"]
    assert outcomes[1].reason == outcomes[3].reason == "rejected"
    assert "550" in outcomes[1].error and "RCPT" in outcomes[1].error
    assert "554" in outcomes[3].error
    accepted = [r.rcpt_tos[0] for r in smtp_server.handler.messages]
    assert accepted == ["user0@example.com", "user2@example.com", "user4@example.com"]
    assert smtp_server.handler.connections == 1  # RSET, not a reconnect


def test_temporary_refusal_is_retried_later(smtp_server: SmtpServer) -> None:
    smtp_server.handler.rcpt_replies["user1@example.com"] = "451 4.7.1 Greylisted, try again later"
    with SmtpSender(BUILDER.envelope_from, smtp_server.conn_id) as sender:
        outcomes = sender.send([outbound(a) for a in addresses(3)])
    assert statuses(outcomes) == ["sent", "retry", "sent"]
    assert outcomes[1].reason == "deferred" and "451" in outcomes[1].error


def test_a_rate_limit_reply_is_throttled_and_the_rest_waits(smtp_server: SmtpServer) -> None:
    # Pressing on would collect more refusals: the batch backs off, then resends these.
    smtp_server.handler.rcpt_replies["user1@example.com"] = "451 4.7.1 Too many messages, slow down"
    with SmtpSender(BUILDER.envelope_from, smtp_server.conn_id) as sender:
        outcomes = sender.send([outbound(a) for a in addresses(4)])
    assert statuses(outcomes) == ["sent", "retry", "retry", "retry"]
    assert {o.reason for o in outcomes[1:]} == {"throttled"}
    assert "451" in outcomes[1].error and "not attempted" in outcomes[2].error
    assert [r.rcpt_tos for r in smtp_server.handler.messages] == [["user0@example.com"]]


def test_a_session_closed_for_rate_is_throttled_without_reconnecting(smtp_server: SmtpServer) -> None:
    smtp_server.handler.rcpt_replies["user1@example.com"] = "421 4.7.0 Rate limit exceeded, closing connection"
    with SmtpSender(BUILDER.envelope_from, smtp_server.conn_id) as sender:
        outcomes = sender.send([outbound(a) for a in addresses(3)])
    assert statuses(outcomes) == ["sent", "retry", "retry"]
    assert {o.reason for o in outcomes[1:]} == {"throttled"}
    assert smtp_server.handler.connections == 1  # a new session at once would be refused too


def test_dropped_connection_mid_batch_leaves_the_rest_for_retry(smtp_server: SmtpServer) -> None:
    smtp_server.handler.drop_at_rcpt["user2@example.com"] = 99  # the server keeps dropping it
    with SmtpSender(BUILDER.envelope_from, smtp_server.conn_id) as sender:
        outcomes = sender.send([outbound(a) for a in addresses(5)])
    assert statuses(outcomes) == ["sent", "sent", "retry", "retry", "retry"]
    assert {o.reason for o in outcomes[2:]} == {"connection_lost"}
    assert len(smtp_server.handler.messages) == 2
    assert smtp_server.handler.connections == 2  # the batch's connection and one reconnect


def test_one_dropped_connection_is_recovered_by_reconnecting(smtp_server: SmtpServer) -> None:
    smtp_server.handler.drop_at_rcpt["user2@example.com"] = 1
    with SmtpSender(BUILDER.envelope_from, smtp_server.conn_id) as sender:
        outcomes = sender.send([outbound(a) for a in addresses(5)])
    assert statuses(outcomes) == ["sent"] * 5
    assert len(smtp_server.handler.messages) == 5
    assert smtp_server.handler.connections == 2


def test_server_closing_the_session_is_a_reconnect_then_retry(smtp_server: SmtpServer) -> None:
    # 421 = the server closes the session, e.g. after too many messages on one connection.
    smtp_server.handler.rcpt_replies["user2@example.com"] = "421 4.7.0 Too many messages, closing connection"
    with SmtpSender(BUILDER.envelope_from, smtp_server.conn_id) as sender:
        outcomes = sender.send([outbound(a) for a in addresses(4)])
    assert statuses(outcomes) == ["sent", "sent", "retry", "retry"]
    assert "421" in outcomes[2].error
    assert smtp_server.handler.connections == 2


def test_connection_lost_after_the_content_is_uncertain(smtp_server: SmtpServer) -> None:
    smtp_server.handler.drop_after_data["user1@example.com"] = 1
    with SmtpSender(BUILDER.envelope_from, smtp_server.conn_id) as sender:
        outcomes = sender.send([outbound(a) for a in addresses(3)])
    assert statuses(outcomes) == ["sent", "uncertain", "sent"]
    assert outcomes[1].reason == "connection_lost_after_data"
    assert smtp_server.handler.connections == 2


def test_invalid_address_fails_without_a_transaction(smtp_server: SmtpServer) -> None:
    injected = "ana@example.com\r\nRCPT TO:<victim@example.com>"
    bad = Outbound(Recipient(1, "", injected, {}), b"x\r\n", "<1@acme.example>")
    with SmtpSender(BUILDER.envelope_from, smtp_server.conn_id) as sender:
        outcomes = sender.send([bad, outbound("ana@example.com")])
    assert statuses(outcomes) == ["failed", "sent"]
    assert outcomes[0].reason == "invalid_address"
    assert [r.rcpt_tos for r in smtp_server.handler.messages] == [["ana@example.com"]]


def test_unreachable_server_is_a_transient_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_DOWN", f"smtp://127.0.0.1:{port}?disable_ssl=true&disable_tls=true&timeout=2"
    )
    with pytest.raises(TransientSendError, match="cannot connect"), SmtpSender("news@acme.example", "smtp_down"):
        pass


def test_a_refused_sender_keeps_messages_pending(smtp_server) -> None:
    """5xx to MAIL FROM is a configuration error, not a bad recipient: nothing is failed."""
    async def refuse_sender(server, session, envelope, address, mail_options):
        return "550 5.7.1 Sender not allowed"

    smtp_server.handler.handle_MAIL = refuse_sender
    messages = [outbound(a) for a in addresses(3)]
    with SmtpSender(BUILDER.envelope_from, smtp_server.conn_id) as sender:
        outcomes = sender.send(messages)
    assert [o.status for o in outcomes] == ["retry", "retry", "retry"]
    assert outcomes[0].reason == "sender_rejected" and "550" in outcomes[0].error
    assert smtp_server.handler.messages == []
