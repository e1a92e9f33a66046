"""SMTP bounces and complaints from the bounce mailbox into ``campaign.delivery_event``.

Each message of the mailbox is read (:func:`~.reports.parse_report`) and tied to the sent
email it is about: by its VERP token (:mod:`.verp`, authenticated), else by a Message-ID
of ours quoted in the returned headers. Then:

- a DSN's failure is a ``bounced`` event, ``Permanent`` or ``Transient`` by its status
  code (:mod:`.classify`), a success (``delivered``/``relayed``) a ``delivered`` event, a
  delay warning nothing (the MTA is still trying); an ARF abuse report (or Microsoft JMRP)
  a ``complained`` event;
- the event's recipient is the ledger row's address, not what the report claims: a report
  can only ever suppress the address a message of ours was sent to;
- a report that matches no message, or is not a bounce or complaint at all, is kept in
  ``campaign.unmatched_feedback`` with the reason, never dropped.

One transaction per batch stores the events (through :func:`~.ingest.ingest_events`:
idempotent, suppression at once for hard bounces and complaints, past the threshold for
soft ones) and the kept reports; only then are the batch's messages moved out of the inbox.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from campaign_orchestrator.feedback.classify import classify
from campaign_orchestrator.feedback.ingest import ingest_events
from campaign_orchestrator.feedback.parse import DeliveryEvent
from campaign_orchestrator.feedback.reports import parse_report
from campaign_orchestrator.sqlfiles import query

if TYPE_CHECKING:
    from collections.abc import Sequence

    import psycopg

    from campaign_orchestrator.feedback.mailbox import BounceMailbox
    from campaign_orchestrator.feedback.reports import Report
    from campaign_orchestrator.feedback.verp import VerpSettings
    from campaign_orchestrator.config.policies import SoftBounces

log = logging.getLogger(__name__)

SOURCE = "smtp_bounce"
_MAX_DIAGNOSTIC = 1000


@dataclass(frozen=True)
class Decision:
    """What one report becomes: an event, a row kept for inspection, or nothing to record
    (``acknowledged``: a delay warning about a message of ours)."""

    report: Report
    raw: bytes
    event: DeliveryEvent | None = None
    unmatched_reason: str | None = None
    acknowledged: str | None = None


@dataclass
class MailboxResult:
    """What one :func:`ingest_mailbox` call did; ``counts`` sums :func:`ingest_events` counts."""

    messages: int = 0
    events: int = 0
    kept: int = 0
    """Reports kept for inspection (and moved to the unmatched folder)."""
    acknowledged: int = 0
    moved: int = 0
    counts: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            **dict(self.counts),
            "messages": self.messages,
            "events": self.events,
            "kept": self.kept,
            "acknowledged": self.acknowledged,
            "moved": self.moved,
        }


def decide(conn: psycopg.Connection, items: Sequence[tuple[bytes, Report]], verp: VerpSettings | None) -> list[Decision]:
    """Tie each ``(raw, report)`` to its message in one query for the batch, and decide."""
    token_ref, token_uuid, token_profile, id_ref, message_id = [], [], [], [], []
    tokens: dict[int, tuple[str, int]] = {}
    for ref, (_, report) in enumerate(items):
        if report.kind == "not_a_report":
            continue
        reference = verp.read(report.return_path_candidates) if verp is not None else None
        if reference is not None:
            tokens[ref] = reference
            token_ref.append(ref)
            token_uuid.append(reference.message_uuid)
            token_profile.append(reference.profile_id)
        for mid in report.message_ids:
            id_ref.append(ref)
            message_id.append(mid)
    matches: dict[int, tuple[str, str, str]] = {}
    if token_ref or id_ref:
        rows = conn.execute(
            query("feedback/resolve_report_messages"),
            {"token_ref": token_ref, "token_uuid": token_uuid, "token_profile": token_profile,
             "id_ref": id_ref, "message_id": message_id},
        ).fetchall()
        matches = {ref: (provider_message_id, address, matched_by) for ref, provider_message_id, address, matched_by
                   in rows}
    decisions = []
    for ref, (raw, report) in enumerate(items):
        if ref not in matches:
            decisions.append(Decision(report, raw, unmatched_reason=_why_unmatched(report, tokens.get(ref), verp)))
            continue
        provider_message_id, address, matched_by = matches[ref]
        decisions.append(_decide_matched(report, raw, provider_message_id, address, matched_by))
    return decisions


def _decide_matched(report: Report, raw: bytes, provider_message_id: str, address: str, matched_by: str) -> Decision:
    detail: dict[str, Any] = {"recipient": address, "matched_by": matched_by, "report": report.kind}
    if report.reporting_mta:
        detail["reporting_mta"] = report.reporting_mta
    if report.kind == "arf":
        if not report.is_complaint:
            return Decision(report, raw, unmatched_reason=(
                f"feedback report of type {report.feedback_type!r} about {provider_message_id}: not a complaint"))
        detail.update({"feedback_type": report.feedback_type, **report.feedback})
        return Decision(report, raw, event=_event(report, provider_message_id, "complained", None, address, detail))
    block = report.outcome()
    action = (block.action if block else None) or "failed"
    if action == "delayed":
        return Decision(report, raw, acknowledged=f"delay warning about {provider_message_id}")
    for key, value in (("action", action), ("status", block and block.status),
                       ("diagnostic_code", block and (block.diagnostic or "")[:_MAX_DIAGNOSTIC] or None),
                       ("final_recipient", block and block.final_recipient),
                       ("remote_mta", block and block.remote_mta)):
        if value:
            detail[key] = value
    if action in ("delivered", "relayed", "expanded"):
        return Decision(report, raw, event=_event(report, provider_message_id, "delivered", None, address, detail))
    verdict = classify(block.status if block else None, block.diagnostic if block else None)
    detail["bounce_class"] = verdict.bounce_class
    if verdict.status:
        detail["status"] = verdict.status
    return Decision(report, raw, event=_event(report, provider_message_id, "bounced", verdict.bounce_type, address,
                                              detail))


def _event(
    report: Report, provider_message_id: str, event_type: str, bounce_type: str | None, address: str,
    detail: dict[str, Any],
) -> DeliveryEvent:
    return DeliveryEvent(
        provider_message_id=provider_message_id,
        channel="email",
        event_type=event_type,
        occurred_at=report.occurred_at,
        # The report's own identity and the message it is about: the same DSN delivered to the
        # mailbox twice is one event, and reports that reuse a Message-ID (some MTAs' templates)
        # about different messages stay apart.
        provider_event_id=f"imap:{report.event_key}:{provider_message_id}:{event_type}",
        recipient=address,
        bounce_type=bounce_type,
        detail=detail,
    )


def _why_unmatched(report: Report, token: tuple[str, int] | None, verp: VerpSettings | None) -> str:
    if report.kind == "not_a_report":
        return "not a delivery status notification or complaint report (an auto-reply?)"
    if token is not None:
        uuid, profile_id = token
        return f"a valid return-path token names message <{uuid}@…> of profile {profile_id}, which no sent email has"
    if verp is not None and verp.looks_like_ours(report.return_path_candidates):
        return "its return-path token does not verify (forged, or signed with a secret no longer configured)"
    if report.message_ids:
        return f"none of the returned Message-IDs is a sent email of ours: {', '.join(report.message_ids[:3])}"
    return "no return-path token and no returned Message-ID to tie it to a message"


def store(conn: psycopg.Connection, decisions: Sequence[Decision], source: str, soft_bounces: SoftBounces | None
          ) -> dict[str, int]:
    """Store a batch's events and kept reports in one transaction; returns the counts.

    :param source: the mailbox, recorded with each kept report (``imap:<conn id>``).
    """
    events = [d.event for d in decisions if d.event is not None]
    kept = [d for d in decisions if d.unmatched_reason is not None]
    with conn.transaction():
        counts = ingest_events(conn, events, source=SOURCE, soft_bounces=soft_bounces)
        newly_kept = 0
        if kept:
            newly_kept = len(conn.execute(query("feedback/keep_unmatched_feedback"), {
                "source": [source] * len(kept),
                "digest": [d.report.digest for d in kept],
                "reason": [d.unmatched_reason for d in kept],
                "report_type": [d.report.kind for d in kept],
                "subject": [d.report.subject for d in kept],
                "report_from": [d.report.report_from for d in kept],
                "message_id": [d.report.report_message_id for d in kept],
                "raw": [d.raw for d in kept],
            }).fetchall())
    counts["kept_for_inspection"] = newly_kept
    return counts


def ingest_mailbox(
    conn: psycopg.Connection,
    mailbox: BounceMailbox,
    verp: VerpSettings | None,
    *,
    source: str,
    max_messages: int = 5_000,
    batch_messages: int = 50,
    soft_bounces: SoftBounces | None = None,
) -> MailboxResult:
    """Read up to ``max_messages`` reports from the open ``mailbox`` into the store.

    :param conn: an autocommit store connection outside a transaction: a batch's messages
        are moved out of the inbox only once its transaction committed.
    :param verp: the return-path settings (None: match by returned Message-ID only).
    :param source: names the mailbox in ``campaign.unmatched_feedback`` (``imap:<conn id>``).
    :param batch_messages: messages fetched, stored and moved together.
    """
    if not conn.autocommit:
        raise ValueError("ingest_mailbox needs an autocommit connection")
    result = MailboxResult()
    uids = mailbox.uids()[:max_messages]
    for start in range(0, len(uids), batch_messages):
        fetched = mailbox.fetch(uids[start : start + batch_messages])
        items = [(raw, parse_report(raw)) for _, raw in fetched]
        decisions = decide(conn, items, verp)
        result.counts.update(store(conn, decisions, source, soft_bounces))
        processed = [uid for (uid, _), d in zip(fetched, decisions, strict=True) if d.unmatched_reason is None]
        kept = [uid for (uid, _), d in zip(fetched, decisions, strict=True) if d.unmatched_reason is not None]
        for decision in decisions:
            if decision.unmatched_reason:
                log.warning("Bounce mailbox: kept for inspection (%s): %r from %r: %s", decision.report.kind,
                            decision.report.subject, decision.report.report_from, decision.unmatched_reason)
        mailbox.move(processed, mailbox.settings.processed_folder)
        mailbox.move(kept, mailbox.settings.unmatched_folder)
        result.messages += len(fetched)
        result.events += sum(1 for d in decisions if d.event is not None)
        result.kept += len(kept)
        result.acknowledged += sum(1 for d in decisions if d.acknowledged)
        result.moved += len(processed) + len(kept)
    log.info("Bounce mailbox %s: %s", source, result.as_dict())
    return result
