"""Read one message of the bounce mailbox: a delivery status notification, a complaint, or
something else, and what in it can name the message it is about.

Parsed with the standard library's :mod:`email` package, which reads RFC 3464
``multipart/report; report-type=delivery-status`` (its ``message/delivery-status`` part is
a list of field blocks) and RFC 5965 ``report-type=feedback-report`` (ARF) natively:

- **dsn**: the per-recipient blocks (``Action``, ``Status``, ``Diagnostic-Code``,
  ``Final-Recipient``, ``Remote-MTA``), Postfix, Exim, Exchange/Office 365, Google Workspace…;
- **arf**: ``Feedback-Type``, ``User-Agent``, ``Original-Mail-From``… of a feedback loop
  report (Yahoo, AOL, Return Path/Validity FBLs); Microsoft's JMRP, which is not ARF but a
  forwarded copy of the message carrying ``X-HmXmrOriginalRecipient``, is read as one too;
- **bounce_text**: a bounce that is not RFC 3464 (Gmail's and Yahoo's plain-text notices,
  Exim's classic format, a report whose MIME structure is broken): a mailer-daemon sender,
  a bounce subject or ``X-Failed-Recipients``, with the status code taken from DSN field
  lines or the first SMTP code in the notice before the copy of the message;
- **not_a_report**: auto-replies and anything else sent to the return path.

``flufl.bounce`` (Mailman's detectors) was evaluated for the non-standard formats and not
taken: it returns only the failed addresses, no status code (so no hard/soft decision),
missed the Yahoo, Office 365 and Google samples under tests/fixtures/bounces/, and called a
4.1.1 DSN permanent; with VERP the address is known from the ledger anyway, what a bounce
must still tell is its status, which the field lines and the notice text give.

What can name the message (:class:`Report`): every address a VERP token may be in
(the report's own recipient headers, ``X-Postfix-Sender``, ARF ``Original-Mail-From``, the
returned message's ``Return-Path``, then all decoded text), and the Message-IDs of the
returned message (its headers part, its ``message/rfc822`` part, or header lines quoted in
the notice).
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from email.message import Message

ReportKind = Literal["dsn", "arf", "bounce_text", "not_a_report"]

# Where the receiving side writes the envelope recipient of the report (our VERP address).
_RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "X-Rcpt-To", "To")
_BOUNCE_SENDER = re.compile(r"mailer-daemon|postmaster|mail delivery (sub)?system", re.IGNORECASE)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (status notification|failure|has failed|failed)|failure notice|"
    r"returned mail|mail delivery failed|could not be delivered|non[- ]?delivery|delivery problem",
    re.IGNORECASE,
)
# Where a notice starts quoting the message it is about: its status code is before this.
_ORIGINAL_MARKER = re.compile(
    r"^\s*(-{2,}.*(original message|copy of the message|message follows|returned message|undelivered message)"
    r"|original message headers:|below this line is a copy)",
    re.IGNORECASE | re.MULTILINE,
)
_QUOTED_MESSAGE_ID = re.compile(r"^[ \t>]*Message-I[dD]:[ \t]*(<[^<>\s]+>)", re.MULTILINE)
_FIELD_LINE = re.compile(
    r"^(Final-Recipient|Original-Recipient|Action|Status|Diagnostic-Code|Remote-MTA)[ \t]*:[ \t]*(.*(?:\r?\n[ \t]+.*)*)",
    re.IGNORECASE | re.MULTILINE,
)
_COMPLAINT_TYPES = frozenset({"abuse", "fraud", "virus", "other", "opt-out", "unsubscribe"})
FINAL_ACTIONS = ("failed", "delayed", "delivered", "relayed", "expanded")


@dataclass(frozen=True)
class RecipientStatus:
    """One per-recipient block of a DSN (or what a plain-text bounce says)."""

    action: str | None = None
    status: str | None = None
    diagnostic: str | None = None
    final_recipient: str | None = None
    original_recipient: str | None = None
    remote_mta: str | None = None


@dataclass(frozen=True)
class Report:
    """What one mailbox message is and what may tie it to a ledger row.

    :param digest: sha256 of the raw bytes (the report's identity for inspection).
    :param event_key: identity of the report's event: its own Message-ID when it has one
        (the same report delivered twice is one event), else ``digest``.
    """

    kind: ReportKind
    digest: str
    event_key: str
    occurred_at: datetime
    subject: str | None
    report_from: str | None
    report_message_id: str | None
    recipients: tuple[RecipientStatus, ...] = ()
    reporting_mta: str | None = None
    feedback_type: str | None = None
    feedback: dict[str, str] = field(default_factory=dict)
    """ARF fields worth keeping: user_agent, source_ip, original_rcpt_to, arrival_date."""
    return_path_candidates: tuple[str, ...] = ()
    message_ids: tuple[str, ...] = ()

    @property
    def is_complaint(self) -> bool:
        return self.kind == "arf" and (self.feedback_type or "abuse") in _COMPLAINT_TYPES

    def outcome(self) -> RecipientStatus | None:
        """The block that decides the report's outcome: a failure before a delay before a
        success (one message has one recipient; several blocks come from forwarding)."""
        for action in FINAL_ACTIONS:
            for block in self.recipients:
                if (block.action or "") == action:
                    return block
        return self.recipients[0] if self.recipients else None


def parse_report(raw: bytes) -> Report:
    """Read ``raw`` (one RFC 5322 message as fetched from the mailbox); never raises for
    malformed content: what cannot be read makes it ``not_a_report``."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    digest = hashlib.sha256(raw).hexdigest()
    own_id = _clean(message.get("Message-ID"))
    subject = _header_text(message.get("Subject"))
    sender = _header_text(message.get("From"))
    occurred_at = _date(message.get("Date"))

    dsn_blocks: list[RecipientStatus] = []
    reporting_mta = None
    feedback_fields: dict[str, str] | None = None
    candidates: list[str] = []
    message_ids: list[str] = []
    texts: list[str] = []
    jmrp = False
    for name in _RECIPIENT_HEADERS:
        candidates.extend(str(v) for v in message.get_all(name) or [])

    for part in message.walk():
        content_type = part.get_content_type()
        if content_type in ("message/delivery-status", "message/global-delivery-status"):
            per_message, blocks = _status_blocks(part)
            reporting_mta = reporting_mta or _clean(per_message.get("reporting-mta"), strip_type=True)
            candidates.extend(per_message.get(k, "") for k in ("x-postfix-sender", "original-envelope-id"))
            dsn_blocks.extend(_recipient(b) for b in blocks)
        elif content_type == "message/feedback-report":
            feedback_fields = _fields(_block_text(part))
            candidates.append(feedback_fields.get("original-mail-from", ""))
        elif content_type in ("message/rfc822", "message/global", "text/rfc822-headers",
                              "message/rfc822-headers", "text/rfc822-header"):
            original = _original(part)
            if original is not None:
                # Return-Path first; any other header (Authentication-Results' smtp.mailfrom,
                # Received-SPF) may hold the return path too.
                candidates.extend(str(v) for v in original.get_all("Return-Path") or [])
                candidates.extend(str(v) for k, v in original.items() if k.lower() != "return-path")
                mid = _clean(original.get("Message-ID"))
                if mid:
                    message_ids.append(mid)
                jmrp = jmrp or original.get("X-HmXmrOriginalRecipient") is not None
        elif part.get_content_maintype() == "text" or (part is message and not part.is_multipart()):
            texts.append(_decoded_text(part))
        if part is message and message.is_multipart() and isinstance(message.get_payload(), str):
            texts.append(message.get_payload())  # a broken boundary: the parts are one text

    for text in texts:
        message_ids.extend(m for m in _QUOTED_MESSAGE_ID.findall(text) if m != own_id)
    candidates.extend(texts)  # a token anywhere is still authenticated by its MAC

    kind: ReportKind
    feedback_type = None
    feedback: dict[str, str] = {}
    if dsn_blocks:
        kind = "dsn"
    elif feedback_fields is not None or jmrp:
        kind = "arf"
        fields_ = feedback_fields or {}
        feedback_type = (fields_.get("feedback-type") or "abuse").strip().lower()
        feedback = {key.replace("-", "_"): fields_[key] for key in (
            "user-agent", "source-ip", "original-rcpt-to", "arrival-date", "reported-domain") if fields_.get(key)}
        if jmrp:
            feedback.setdefault("user_agent", "Microsoft JMRP")
    elif _looks_like_bounce(message, sender, subject):
        kind = "bounce_text"
        dsn_blocks = [_from_text(message, texts)]
    else:
        kind = "not_a_report"

    return Report(
        kind=kind,
        digest=digest,
        event_key=hashlib.sha256((own_id or digest).encode()).hexdigest()[:32],
        occurred_at=occurred_at,
        subject=subject,
        report_from=sender,
        report_message_id=own_id,
        recipients=tuple(dsn_blocks),
        reporting_mta=reporting_mta,
        feedback_type=feedback_type,
        feedback=feedback,
        return_path_candidates=tuple(c for c in candidates if c),
        message_ids=tuple(dict.fromkeys(message_ids)),
    )


def _status_blocks(part: Message) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The per-message fields and the per-recipient blocks of a delivery-status part."""
    payload = part.get_payload()
    if isinstance(payload, list):  # the stdlib parsed each block into a Message
        blocks = [{k.lower(): _unfold(v) for k, v in block.items()} for block in payload]
    else:  # message/global-delivery-status and the like: text blocks
        text = _decoded_text(part)
        blocks = [_fields(chunk) for chunk in re.split(r"\r?\n[ \t]*\r?\n", text) if chunk.strip()]
    per_message: dict[str, str] = {}
    recipients = []
    for block in blocks:
        if "final-recipient" in block or "action" in block or "status" in block:
            recipients.append(block)
        else:
            per_message.update(block)
    return per_message, recipients


def _recipient(block: dict[str, str]) -> RecipientStatus:
    return RecipientStatus(
        action=(block.get("action") or "").strip().lower() or None,
        status=(block.get("status") or "").strip() or None,
        diagnostic=_clean(block.get("diagnostic-code"), strip_type=True),
        final_recipient=_clean(block.get("final-recipient"), strip_type=True),
        original_recipient=_clean(block.get("original-recipient"), strip_type=True),
        remote_mta=_clean(block.get("remote-mta"), strip_type=True),
    )


def _from_text(message: Message, texts: list[str]) -> RecipientStatus:
    """A plain-text bounce's outcome: DSN field lines where it quotes them, else the first
    status code of the notice (before its copy of the message)."""
    whole = "\n".join(texts)
    lines = {name.lower(): _unfold(value) for name, value in reversed(_FIELD_LINE.findall(whole))}
    failed = message.get("X-Failed-Recipients")
    if lines.get("status") or lines.get("diagnostic-code"):
        block = _recipient(lines)
        return RecipientStatus(
            action=block.action or "failed", status=block.status, diagnostic=block.diagnostic,
            final_recipient=block.final_recipient or _clean(failed), remote_mta=block.remote_mta,
        )
    notice = whole
    marker = _ORIGINAL_MARKER.search(whole)
    if marker:
        notice = whole[: marker.start()]
    from campaign_orchestrator.feedback.classify import basic_code, enhanced_code

    status = enhanced_code(notice)
    diagnostic = None
    for line in notice.splitlines():
        if (status and status in line) or (not status and basic_code(line)):
            diagnostic = line.strip()[:500]
            break
    if status is None and diagnostic is None and re.search(r"\bpermanent(ly)?\b", notice, re.IGNORECASE):
        status = "5.0.0"  # "failed permanently", no code given
    return RecipientStatus(action="failed", status=status, diagnostic=diagnostic, final_recipient=_clean(failed))


def _looks_like_bounce(message: Message, sender: str | None, subject: str | None) -> bool:
    if message.get("X-Failed-Recipients"):
        return True
    if message.get_content_type() == "multipart/report" and message.get_param("report-type") == "delivery-status":
        return True  # a DSN whose status part could not be read
    from_daemon = bool(_BOUNCE_SENDER.search(sender or ""))
    null_sender = (message.get("Return-Path") or "").strip() == "<>"
    return bool(_BOUNCE_SUBJECT.search(subject or "")) and (from_daemon or null_sender)


def _original(part: Message) -> Message | None:
    payload = part.get_payload()
    if isinstance(payload, list) and payload:
        return payload[0]
    if isinstance(payload, str):
        return email.message_from_string(_decoded_text(part), policy=email.policy.compat32)
    return None


def _block_text(part: Message) -> str:
    payload = part.get_payload()
    if isinstance(payload, list):  # parsed as a message: the fields are its headers
        return "\n".join(f"{k}: {v}" for block in payload for k, v in block.items())
    return _decoded_text(part)


def _fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    parsed = email.message_from_string(text.strip() + "\n\n", policy=email.policy.compat32)
    for key, value in parsed.items():
        fields.setdefault(key.lower(), _unfold(value))
    return fields


def _decoded_text(part: Message) -> str:
    try:
        data = part.get_payload(decode=True)
    except Exception:  # a broken transfer encoding: the raw text is better than nothing
        data = None
    if data is None:
        payload = part.get_payload()
        return payload if isinstance(payload, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        text = data.decode(charset, "replace")
    except LookupError:  # an unknown charset name
        text = data.decode("utf-8", "replace")
    return text.replace("\x00", "")  # PostgreSQL text and jsonb hold no NUL


def _unfold(value: object) -> str:
    return re.sub(r"\r?\n[ \t]+", " ", str(value)).replace("\x00", "").strip()


def _clean(value: object, strip_type: bool = False) -> str | None:
    """A header or field value unfolded; ``rfc822; a@b`` without its type when asked."""
    if value is None:
        return None
    text = _unfold(value)
    if strip_type and ";" in text:
        text = text.split(";", 1)[1].strip()
    return text or None


def _header_text(value: object) -> str | None:
    if value is None:
        return None
    try:
        return str(make_header(decode_header(str(value)))).replace("\x00", "")[:500]
    except Exception:  # an undecodable encoded-word: keep it as written
        return _unfold(value)[:500]


def _date(value: object) -> datetime:
    try:
        parsed = parsedate_to_datetime(str(value)) if value else None
    except (TypeError, ValueError, IndexError):
        parsed = None
    if parsed is None:
        return datetime.now(UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
