"""The SMTP relays of email services, and the header that names our message in their events.

A step with ``provider: sendgrid``, ``mailgun`` or ``postmark`` sends over SMTP like
``provider: smtp`` (same sender, same exact outcomes), through the service's relay, on the
step's ``connection_id`` or the default connection below. The service rewrites the return
path (its own bounce handling), so no VERP: bounces, complaints, opens and clicks come back
through the service's event webhook (:mod:`campaign_orchestrator.feedback.webhooks`). Each
message gets the service's header for custom data, carrying our Message-ID under
:data:`REFERENCE_KEY`, which each webhook event returns:

- SendGrid: ``X-SMTPAPI: {"unique_args": {...}}`` (custom arguments, top-level in events);
- Mailgun: ``X-Mailgun-Variables: {...}`` (``user-variables`` in events);
- Postmark: ``X-PM-Metadata-<key>: <value>`` (``Metadata`` in events), plus
  ``X-PM-KeepID: true`` so Postmark keeps our Message-ID and ``X-PM-Message-Stream`` when
  the connection's extra ``message_stream`` names one (marketing belongs on a broadcast stream).

The header lines are put in front of the rendered MIME bytes: header order carries no
meaning, so the renderer stays the same for every provider.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

REFERENCE_KEY = "campaign_message_id"
"""The custom-data key holding our Message-ID (``<uuid@domain>``) in every service's events."""


def _sendgrid(message_id: str) -> bytes:
    return b"X-SMTPAPI: " + json.dumps({"unique_args": {REFERENCE_KEY: message_id}}).encode("ascii") + b"\r\n"


def _mailgun(message_id: str) -> bytes:
    return b"X-Mailgun-Variables: " + json.dumps({REFERENCE_KEY: message_id}).encode("ascii") + b"\r\n"


def _postmark(message_id: str) -> bytes:
    return f"X-PM-Metadata-{REFERENCE_KEY}: {message_id}\r\nX-PM-KeepID: true\r\n".encode("ascii")


@dataclass(frozen=True)
class Relay:
    """An email service's SMTP relay.

    :param name: the step's ``provider``.
    :param default_conn_id: the Airflow SMTP connection used when the step names none.
    :param host: the relay's host, for the docs and the connection's example.
    :param login: what the service expects as SMTP user name.
    """

    name: str
    default_conn_id: str
    host: str
    login: str
    reference_header: Callable[[str], bytes]

    def headers(self, message_id: str, message_stream: str | None = None) -> bytes:
        """The header lines to put in front of a message whose Message-ID is ``message_id``."""
        lines = self.reference_header(message_id)
        if message_stream and self.name == "postmark":
            lines += f"X-PM-Message-Stream: {message_stream}\r\n".encode("ascii")
        return lines


RELAYS: dict[str, Relay] = {
    "sendgrid": Relay("sendgrid", "smtp_sendgrid", "smtp.sendgrid.net", "apikey (password: an API key)", _sendgrid),
    "mailgun": Relay("mailgun", "smtp_mailgun", "smtp.mailgun.org", "the domain's SMTP user", _mailgun),
    "postmark": Relay("postmark", "smtp_postmark", "smtp.postmarkapp.com", "a server API token (as password too)",
                      _postmark),
}
