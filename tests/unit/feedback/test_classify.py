"""Hard or soft by status code: the rule of feedback/classify.py, case by case."""

from __future__ import annotations

import pytest
from campaign_orchestrator.feedback.classify import classify


@pytest.mark.parametrize(
    ("status", "diagnostic", "expected"),
    [
        ("5.1.1", "smtp; 550 5.1.1 user unknown", ("Permanent", "bad_address", "5.1.1")),
        ("5.4.4", None, ("Permanent", "permanent", "5.4.4")),
        ("4.4.7", None, ("Transient", "temporary", "4.4.7")),
        ("5.2.2", "552-5.2.2 The recipient's inbox is out of storage space", ("Transient", "mailbox_full", "5.2.2")),
        ("5.7.1", "554 5.7.1 rejected as spam", ("Transient", "policy", "5.7.1")),
        ("5.7.26", None, ("Transient", "policy", "5.7.26")),
        # An unspecific Status defers to the diagnostic's specific code of the same class.
        ("5.0.0", "smtp; 550 5.1.1 <a@b>: Recipient address rejected", ("Permanent", "bad_address", "5.1.1")),
        ("5.0.0", "smtp; 552 5.2.2 mailbox full", ("Transient", "mailbox_full", "5.2.2")),
        ("5.0.0", "smtp; 450 4.2.0 try later", ("Permanent", "permanent", "5.0.0")),  # another class: kept
        (None, "550 Requested action not taken: mailbox unavailable", ("Permanent", "permanent", None)),
        (None, "552 Mailbox quota exceeded", ("Transient", "mailbox_full", None)),
        (None, "421 Service not available", ("Transient", "temporary", None)),
        (None, "connection timed out", ("Undetermined", "unknown", None)),
        ("5.1.10", None, ("Permanent", "bad_address", "5.1.10")),
    ],
)
def test_classification(status: str | None, diagnostic: str | None, expected: tuple) -> None:
    assert tuple(classify(status, diagnostic)) == expected


def test_a_source_that_says_permanent_wins_over_no_code() -> None:
    assert classify(None, None, default="Permanent").bounce_type == "Permanent"
