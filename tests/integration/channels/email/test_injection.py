"""A profile value that spells SMTP (a lone ``.`` line ending DATA, then commands) reaches a
real SMTP server as text inside one message: one message, one recipient, the body intact."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path
from types import SimpleNamespace

import pytest

from campaign_orchestrator.channels.base import Recipient
from campaign_orchestrator.channels.email.render import EmailRenderer
from campaign_orchestrator.channels.email.smtp import SmtpSender
from campaign_orchestrator.config.channels import EmailStep
from campaign_orchestrator.paths import ProjectPaths

pytestmark = pytest.mark.integration

SMUGGLED = "bye\r\n.\r\nMAIL FROM:<boss@evil.example>\r\nRCPT TO:<victim@evil.example>\r\nDATA\r\n.hidden"


def test_smtp_commands_in_a_profile_field_stay_inside_the_message(tmp_path: Path, smtp_server) -> None:
    folder = tmp_path / "include" / "templates" / "plain"
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text("Hello")
    (folder / "body.txt").write_text("Note: {{ profile.first_name }}\n.\nend")
    (folder / "body.html").write_text("<pre>{{ profile.first_name }}</pre>")
    step = EmailStep(id="main", channel="email", template="plain", sender="Acme <news@acme.example>",
                     purpose="transactional", connection_id=smtp_server.conn_id)
    renderer = EmailRenderer(step, SimpleNamespace(id="c", description=""), 1, ProjectPaths(tmp_path))
    outbound = renderer.render(Recipient(1, "1", "ana@example.com", {"first_name": SMUGGLED}))

    with SmtpSender(renderer.envelope_from, smtp_server.conn_id) as sender:
        (outcome,) = sender.send([outbound])

    assert outcome.status == "sent"
    (received,) = smtp_server.handler.messages
    assert received.rcpt_tos == ["ana@example.com"] and received.mail_from == "news@acme.example"
    message = email.message_from_bytes(received.data, policy=email.policy.default)
    smuggled = SMUGGLED.replace("\r\n", "\n")

    def content(kind: str) -> str:
        return message.get_body((kind,)).get_content().replace("\r\n", "\n").rstrip("\n")

    assert content("plain") == f"Note: {smuggled}\n.\nend"
    assert content("html") == (
        f"<pre>{smuggled.replace('<', '&lt;').replace('>', '&gt;')}</pre>"
    )
