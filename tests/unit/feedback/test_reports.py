"""Every real sample under tests/fixtures/bounces/ read as its README says it should be."""

from __future__ import annotations

import pytest
from campaign_orchestrator.feedback.classify import classify
from campaign_orchestrator.feedback.reports import parse_report

from tests.fixtures.imap import SAMPLES, bounce_for, verp_settings

MESSAGE_ID = "<3b1e4f1a-1111-5222-8333-444455556666@wanderly.example>"
RECIPIENT = "ana@example.com"

# file -> (kind, action, bounce type, status, quotes the Message-ID): from reading each sample.
EXPECTED = {
    "gmail_hard.eml": ("bounce_text", "failed", "Permanent", "5.1.1", True),
    "google_via_postfix_mailbox_full.eml": ("dsn", "failed", "Transient", "5.2.2", True),
    "outlook_mailbox_full.eml": ("dsn", "failed", "Transient", "5.2.2", True),
    "outlook_delayed.eml": ("dsn", "delayed", "Transient", "4.4.7", True),
    "office365_hard.eml": ("bounce_text", "failed", "Permanent", "5.1.10", True),
    "exchange2007_hard.eml": ("dsn", "failed", "Permanent", "5.1.1", False),
    "yahoo_hard.eml": ("bounce_text", "failed", "Permanent", "5.1.1", True),
    "yahoo_via_postfix_soft.eml": ("dsn", "failed", "Transient", "4.7.0", True),
    "postfix_hard.eml": ("dsn", "failed", "Permanent", "5.1.1", True),
    "postfix_soft.eml": ("dsn", "failed", "Transient", "4.1.1", True),
    "exim_hard.eml": ("bounce_text", "failed", "Permanent", "5.1.1", True),
}
COMPLAINTS = {"arf_yahoo_complaint.eml": "abuse", "jmrp_microsoft_complaint.eml": "abuse",
              "arf_dmarc_auth_failure.eml": "auth-failure"}


def test_every_sample_is_covered() -> None:
    assert {p.name for p in SAMPLES.glob("*.eml")} == {*EXPECTED, *COMPLAINTS, "auto_reply.eml"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bounces(name: str) -> None:
    kind, action, bounce_type, status, quotes_id = EXPECTED[name]
    report = parse_report(bounce_for(name, recipient=RECIPIENT, message_id=MESSAGE_ID, profile_id=7))
    block = report.outcome()
    assert (report.kind, block.action) == (kind, action)
    verdict = classify(block.status, block.diagnostic)
    assert (verdict.bounce_type, verdict.status) == (bounce_type, status)
    # Tied to the message both ways: the VERP token, and the returned Message-ID where quoted.
    assert verp_settings().read(report.return_path_candidates) == (MESSAGE_ID[1:37], 7)
    assert (MESSAGE_ID in report.message_ids) is quotes_id


@pytest.mark.parametrize("name", sorted(COMPLAINTS))
def test_feedback_reports(name: str) -> None:
    report = parse_report(bounce_for(name, recipient=RECIPIENT, message_id=MESSAGE_ID, profile_id=7))
    assert (report.kind, report.feedback_type) == ("arf", COMPLAINTS[name])
    assert report.is_complaint is (COMPLAINTS[name] == "abuse")
    assert MESSAGE_ID in report.message_ids
    assert verp_settings().read(report.return_path_candidates) == (MESSAGE_ID[1:37], 7)


def test_an_auto_reply_is_not_a_report() -> None:
    report = parse_report(bounce_for("auto_reply.eml", recipient=RECIPIENT, message_id=MESSAGE_ID, profile_id=7))
    assert report.kind == "not_a_report" and report.recipients == ()


def test_garbage_is_never_an_error() -> None:
    for raw in (b"", b"\x00\xff\xfe garbage", b"Subject: x\r\n\r\n", b"Content-Type: multipart/report; boundary=x\r\n\r\n--x"):
        assert parse_report(raw).kind == "not_a_report"


def test_the_same_report_delivered_twice_is_one_event() -> None:
    raw = bounce_for("postfix_hard.eml", recipient=RECIPIENT, message_id=MESSAGE_ID, profile_id=7)
    again = b"Delivered-To: other@example.com\r\n" + raw  # delivered once more, one header more
    first, second = parse_report(raw), parse_report(again)
    assert first.digest != second.digest and first.event_key == second.event_key
