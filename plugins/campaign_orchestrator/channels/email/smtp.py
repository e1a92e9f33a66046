"""Send email over SMTP with one connection per batch and an exact outcome per message.

``smtplib.SMTP.sendmail`` reports a broken connection the same way whether it broke before
the server saw the message or after the server had the whole message but before it said
so, and the provider's ``SmtpHook.send_email_smtp`` retries the whole call on any error,
which can deliver a message twice. :class:`CampaignSmtpHook` runs each transaction step by
step (``MAIL``, ``RCPT``, ``DATA``, content, final reply) so :class:`SmtpSender` knows which
side of that line a failure fell on:

- a reply of 2xx to the content: ``sent``; 5xx to RCPT, DATA or the content: ``failed``
  (``rejected``); 5xx to MAIL (our sender is refused, a configuration error): ``retry``;
  4xx at any step: ``retry`` (``deferred``);
- a 4xx reply (421 included) whose text says the server is limiting our rate ("rate limit
  exceeded", "slow down", "throttling failure", "quota"...): ``retry``
  (``throttled``), and the rest of the call is not attempted (also ``throttled``): the batch
  backs off in place and resends them (run/send.py), rather than pressing on or failing
  the task;
- the connection breaks before the content's last byte left, or the server answers 421
  (closing the session) for another reason: nothing was accepted, so the sender reconnects
  once and tries the message again; if that fails too, this and every remaining message of
  the call are ``retry``;
- it breaks after the content left but before the reply: ``uncertain``.

With a VERP return path (:mod:`campaign_orchestrator.feedback.verp`), each message's
``MAIL FROM`` is its own signed bounce address, so an asynchronous bounce names the message.
Through an email service's relay (:mod:`.relay`), each message carries the service's
custom-data header naming it, so the service's webhook events do.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from airflow.providers.smtp.hooks.smtp import SmtpHook

from campaign_orchestrator.channels.base import Outcome, Sender, TransientSendError
from campaign_orchestrator.channels.email.mime import envelope_address

if TYPE_CHECKING:
    import smtplib
    from collections.abc import Sequence

    from campaign_orchestrator.channels.base import Outbound
    from campaign_orchestrator.channels.email.relay import Relay
    from campaign_orchestrator.feedback.verp import VerpSettings

log = logging.getLogger(__name__)

# How servers word a rate limit in a 4xx reply ("454 Throttling failure: Maximum sending rate
# exceeded", "421 4.7.28 ... unusual rate of mail", "451 Too many messages, slow down"). Not
# "try again later", which greylisting says too (a retry minutes later passes it), nor "too
# many messages" alone, which is also a per-session cap that a new session passes at once.
_THROTTLING = re.compile(r"\brate\b|throttl|slow down|exceeded|quota", re.IGNORECASE)


@dataclass(frozen=True)
class SmtpReply:
    stage: str
    """MAIL, RCPT, DATA or END (the reply to the message content)."""
    code: int
    text: str

    def __str__(self) -> str:
        return f"{self.stage}: {self.code} {self.text}"

    @property
    def throttling(self) -> bool:
        """A temporary refusal because we send too fast or too much."""
        return 400 <= self.code < 500 and _THROTTLING.search(self.text) is not None


class SmtpConnectionLost(Exception):
    """The session ended during a transaction; ``delivered`` says whether the whole message
    had been handed to the server without a reply (so it may have been accepted)."""

    def __init__(
        self, stage: str, cause: BaseException | str, delivered: bool = False, reply: SmtpReply | None = None
    ) -> None:
        super().__init__(f"connection lost at {stage}: {cause}")
        self.stage = stage
        self.delivered = delivered
        self.reply = reply
        """The server's 421, when it closed the session itself."""


class CampaignSmtpHook(SmtpHook):
    """The SMTP provider's hook (connection, TLS, login from the Airflow connection) plus a
    raw, step-by-step transaction for pre-built MIME bytes."""

    def __init__(self, smtp_conn_id: str = SmtpHook.default_conn_name, **kwargs) -> None:
        super().__init__(smtp_conn_id=smtp_conn_id, **kwargs)

    @property
    def client(self) -> smtplib.SMTP | None:
        client = self._smtp_client
        return client if client is not None and getattr(client, "sock", None) is not None else None

    def connect(self) -> smtplib.SMTP:
        """Open (or reopen) the session: connect, STARTTLS, login, EHLO."""
        self.disconnect()
        self.get_conn()
        client = self._smtp_client
        client.ehlo_or_helo_if_needed()
        return client

    def disconnect(self, polite: bool = True) -> None:
        """Drop the session, with a QUIT first if ``polite`` and it is alive; never raises."""
        client, self._smtp_client = self._smtp_client, None
        if client is None:
            return
        try:
            if polite and getattr(client, "sock", None) is not None:
                client.quit()
        except Exception:  # the session is being abandoned either way
            pass
        finally:
            client.close()

    def send_raw(self, envelope_from: str, to: str, payload: bytes) -> SmtpReply:
        """One transaction for one recipient. Returns the reply that ended it (2xx to the
        content on success); a refused transaction is reset with ``RSET``.

        Raises :class:`SmtpConnectionLost` if the session breaks midway (and drops it).
        """
        client = self.client
        if client is None:
            raise SmtpConnectionLost("MAIL", ConnectionError("not connected"))
        stage = "MAIL"
        try:
            code, text = client.mail(envelope_from)
            if code == 250:
                stage = "RCPT"
                code, text = client.rcpt(to)
                if code in (250, 251):
                    stage = "DATA"
                    code, text = client.docmd("DATA")
                    if code == 354:
                        stage = "CONTENT"
                        client.send(_dot_stuff(payload))
                        stage = "END"
                        code, text = client.getreply()
        except Exception as exc:  # OSError mostly; any other leaves the session unusable too
            # No QUIT: in the middle of DATA it would be read as message content.
            self.disconnect(polite=False)
            raise SmtpConnectionLost(stage, exc, delivered=stage == "END") from exc
        reply = SmtpReply(stage, code, text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text))
        if code == 421:
            # The server is closing the session (often: too many messages on one connection).
            # It refused this message explicitly, so a new session may send it.
            self.disconnect()
            raise SmtpConnectionLost(stage, str(reply), reply=reply)
        if not (stage == "END" and 200 <= code < 300):
            self._reset()
        return reply

    def _reset(self) -> None:
        try:
            if self.client is not None:
                self.client.rset()
        except Exception:
            self.disconnect()


def _dot_stuff(payload: bytes) -> bytes:
    # RFC 5321 4.5.2: double a leading dot; end with CRLF "." CRLF.
    data = payload.replace(b"\r\n.", b"\r\n..")
    if data.startswith(b"."):
        data = b"." + data
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


class SmtpSender(Sender):
    """One SMTP session per batch; see the module docstring for the outcome of each reply.

    :param envelope_from: ``MAIL FROM`` address (the step's sender, bare).
    :param smtp_conn_id: Airflow connection of the SMTP server.
    :param return_path: VERP settings: each message's ``MAIL FROM`` is then its signed bounce
        address (messages whose id is not ours keep ``envelope_from``).
    :param relay: the email service whose relay this is: each message gets its reference
        header (and, for Postmark, the connection extra ``message_stream``).
    """

    def __init__(
        self,
        envelope_from: str,
        smtp_conn_id: str = CampaignSmtpHook.default_conn_name,
        return_path: VerpSettings | None = None,
        relay: Relay | None = None,
    ) -> None:
        self.envelope_from = envelope_address(envelope_from)
        self.hook = CampaignSmtpHook(smtp_conn_id=smtp_conn_id)
        self.return_path = return_path
        self.relay = relay
        self._message_stream: str | None = None

    def open(self) -> None:
        if self.relay is not None:
            self._message_stream = _message_stream(self.hook)
        try:
            self.hook.connect()
        except OSError as exc:
            code = getattr(exc, "smtp_code", None)
            if code is None or 400 <= code < 500:
                # Nothing was claimed yet: the task is retried later.
                raise TransientSendError(f"cannot connect to the SMTP server: {exc}") from exc
            raise

    def close(self) -> None:
        self.hook.disconnect()

    def send(self, messages: Sequence[Outbound]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        # After a lost connection or a rate limit, the rest of the call is left for later
        # with the same reason: pressing on would only collect more refusals.
        gave_up: Outcome | None = None
        for message in messages:
            if gave_up is None:
                outcome = self._send_one(message)
                if outcome.reason in ("connection_lost", "throttled"):
                    gave_up = Outcome("retry", reason=outcome.reason, error=f"not attempted after: {outcome.error}")
            else:
                outcome = gave_up
            outcomes.append(outcome)
        return outcomes

    def _send_one(self, message: Outbound) -> Outcome:
        try:
            to = envelope_address(message.recipient.address)
        except ValueError as exc:
            return Outcome("failed", reason="invalid_address", error=str(exc))
        error = ""
        for attempt in range(2):
            if attempt or self.hook.client is None:
                try:
                    self.hook.connect()
                except Exception as exc:
                    log.warning("Cannot reconnect to the SMTP server: %s", exc)
                    error = f"{error}; reconnect failed: {exc}" if error else f"cannot reconnect: {exc}"
                    return Outcome("retry", reason="connection_lost", error=error)
            try:
                reply = self.hook.send_raw(self._envelope_from(message), to, self._payload(message))
            except SmtpConnectionLost as exc:
                if exc.delivered:
                    return Outcome("uncertain", reason="connection_lost_after_data", error=str(exc))
                if exc.reply is not None and exc.reply.throttling:
                    # A new session at once would be refused the same way: back off first.
                    return Outcome("retry", reason="throttled", error=str(exc.reply))
                error = str(exc)
                log.warning("SMTP %s; reconnecting", error)
                continue
            return _outcome(reply)
        return Outcome("retry", reason="connection_lost", error=error)

    def _envelope_from(self, message: Outbound) -> str:
        if self.return_path is None:
            return self.envelope_from
        return self.return_path.return_path(message.message_id, message.recipient.profile_id) or self.envelope_from

    def _payload(self, message: Outbound) -> bytes:
        if self.relay is None:
            return message.payload
        return self.relay.headers(message.message_id, self._message_stream) + message.payload


_STREAM = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _message_stream(hook: CampaignSmtpHook) -> str | None:
    """The connection's extra ``message_stream`` (Postmark), checked: it becomes a header."""
    stream = hook.get_connection(hook.smtp_conn_id).extra_dejson.get("message_stream")
    if stream and not _STREAM.fullmatch(str(stream)):
        raise ValueError(f"connection {hook.smtp_conn_id!r}: message_stream {stream!r} is not a stream id")
    return str(stream) if stream else None


def _outcome(reply: SmtpReply) -> Outcome:
    if reply.stage == "END" and 200 <= reply.code < 300:
        return Outcome("sent")
    if reply.stage == "MAIL" and 500 <= reply.code < 600:
        # The server refuses our sender, not this recipient: failing each message would burn
        # the whole list on a configuration error. Keep them pending and stop the batch.
        return Outcome("retry", reason="sender_rejected", error=str(reply))
    if 500 <= reply.code < 600:
        return Outcome("failed", reason="rejected", error=str(reply))
    if 400 <= reply.code < 500:
        return Outcome("retry", reason="throttled" if reply.throttling else "deferred", error=str(reply))
    # An unparsable or out-of-protocol reply: after the content we cannot tell.
    if reply.stage == "END":
        return Outcome("uncertain", reason="unexpected_reply", error=str(reply))
    return Outcome("retry", reason="unexpected_reply", error=str(reply))
