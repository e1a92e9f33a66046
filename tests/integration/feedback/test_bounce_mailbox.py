"""SMTP bounces and complaints through a real IMAP server (a private dovecot) into a real
store: real provider samples tied to ledger rows by VERP or returned Message-ID, hard and
soft bounces, complaints, reports kept for inspection, and a crash between the commit and
the IMAP move that counts nothing twice. Nothing in the path is mocked."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from campaign_orchestrator.feedback.bounces import ingest_mailbox
from campaign_orchestrator.feedback.mailbox import BounceMailbox, MailboxSettings
from campaign_orchestrator.config.policies import SoftBounces

from tests.fixtures.imap import ImapServer, bounce_for, verp_settings
from tests.fixtures.store import sent_emails

pytestmark = pytest.mark.integration

DOMAIN = "wanderly.example"
SENDER = "offers@wanderly.example"


@pytest.fixture
def ledger(store: psycopg.Connection) -> dict[int, dict[str, Any]]:
    """A sent email step over SMTP to profiles 1-12: {profile_id: {address, message_id, run_key}}."""
    store.execute("TRUNCATE campaign.delivery_event, campaign.unmatched_feedback")
    return sent_emails(store, range(1, 13), address="customer{}@example.com", domain=DOMAIN)


def deliver(server: ImapServer, ledger: dict, profile_id: int, sample: str, verp: bool = True) -> None:
    row = ledger[profile_id]
    server.deliver(bounce_for(sample, recipient=row["address"], message_id=row["message_id"],
                              profile_id=profile_id, return_path=None if verp else SENDER))


def settings(server: ImapServer, **overrides: Any) -> MailboxSettings:
    return MailboxSettings(host=server.host, port=server.port, login=server.login, password=server.password,
                           ssl=False, **overrides)


def run(store: psycopg.Connection, server: ImapServer, **kwargs: Any):
    with BounceMailbox(settings(server)) as mailbox:
        return ingest_mailbox(store, mailbox, kwargs.pop("verp", verp_settings()), source="imap:test", **kwargs)


def events(store: psycopg.Connection) -> dict[int, tuple]:
    rows = store.execute(
        """
        SELECT profile_id, event_type, bounce_type, detail ->> 'status', detail ->> 'recipient', detail ->> 'matched_by'
        FROM campaign.delivery_event ORDER BY event_id
        """
    ).fetchall()
    return {r[0]: r[1:] for r in rows}


def suppressions(store: psycopg.Connection) -> dict[str, tuple[str, str]]:
    rows = store.execute("SELECT address, reason, source FROM crm.suppression WHERE channel = 'email'").fetchall()
    return {address: (reason, source) for address, reason, source in rows}


def kept(store: psycopg.Connection) -> list[tuple]:
    return store.execute(
        "SELECT report_type, reason, raw, source FROM campaign.unmatched_feedback ORDER BY feedback_id"
    ).fetchall()


SAMPLES_BY_PROFILE = {
    1: "gmail_hard.eml",
    2: "office365_hard.eml",
    3: "exchange2007_hard.eml",
    4: "yahoo_hard.eml",
    5: "postfix_hard.eml",
    6: "exim_hard.eml",
    7: "outlook_mailbox_full.eml",
    8: "yahoo_via_postfix_soft.eml",
    9: "arf_yahoo_complaint.eml",
    10: "jmrp_microsoft_complaint.eml",
    11: "outlook_delayed.eml",
}


def test_real_reports_become_events_and_suppress(
    store: psycopg.Connection, ledger: dict, bounce_mailbox: ImapServer
) -> None:
    for profile_id, sample in SAMPLES_BY_PROFILE.items():
        deliver(bounce_mailbox, ledger, profile_id, sample)
    deliver(bounce_mailbox, ledger, 12, "auto_reply.eml")
    deliver(bounce_mailbox, ledger, 12, "arf_dmarc_auth_failure.eml")

    result = run(store, bounce_mailbox, batch_messages=5)

    got = events(store)
    address = {p: ledger[p]["address"] for p in ledger}
    hard = {1: "5.1.1", 2: "5.1.10", 3: "5.1.1", 4: "5.1.1", 5: "5.1.1", 6: "5.1.1"}
    for profile_id, status in hard.items():
        assert got[profile_id] == ("bounced", "Permanent", status, address[profile_id], "verp"), profile_id
    assert got[7] == ("bounced", "Transient", "5.2.2", address[7], "verp")
    assert got[8] == ("bounced", "Transient", "4.7.0", address[8], "verp")
    assert got[9][:2] == got[10][:2] == ("complained", None)
    assert 11 not in got and 12 not in got  # a delay warning, an auto-reply, a DMARC report
    # Linked to the ledger row (run, step, profile).
    linked = store.execute(
        "SELECT count(*) FROM campaign.delivery_event WHERE run_key = %s AND step_id = 'offer_email'",
        (ledger[1]["run_key"],),
    ).fetchone()[0]
    assert linked == 10

    assert suppressions(store) == {
        **{address[p]: ("hard_bounce", "smtp_bounce") for p in hard},
        address[9]: ("complaint", "smtp_bounce"),
        address[10]: ("complaint", "smtp_bounce"),
    }
    rows = kept(store)
    assert [r[0] for r in rows] == ["not_a_report", "arf"]
    assert "auto-reply" in rows[0][1] and "auth-failure" in rows[1][1]
    assert rows[0][2] == bounce_for("auto_reply.eml", recipient=address[12], message_id=ledger[12]["message_id"],
                                    profile_id=12).replace(b"\n", b"\r\n")  # kept whole (as IMAP stores it)
    assert {r[3] for r in rows} == {"imap:test"}

    counts = result.as_dict()
    assert (counts["messages"], counts["events"], counts["kept"], counts["acknowledged"]) == (13, 10, 2, 1)
    assert (counts["hard_bounces"], counts["soft_bounces"], counts["complaints"]) == (6, 2, 2)
    # Filed away, never deleted: the inbox is empty.
    assert (bounce_mailbox.count("INBOX"), bounce_mailbox.count("Processed"), bounce_mailbox.count("Unmatched")) == (
        0, 11, 2)


def test_without_verp_the_returned_message_id_ties_the_report(
    store: psycopg.Connection, ledger: dict, bounce_mailbox: ImapServer
) -> None:
    deliver(bounce_mailbox, ledger, 1, "gmail_hard.eml", verp=False)
    deliver(bounce_mailbox, ledger, 2, "postfix_hard.eml", verp=False)
    deliver(bounce_mailbox, ledger, 3, "exchange2007_hard.eml", verp=False)  # quotes no Message-ID

    run(store, bounce_mailbox, verp=None)

    got = events(store)
    assert got[1][4] == got[2][4] == "message_id"
    assert set(got) == {1, 2}
    (row,) = kept(store)
    assert row[0] == "dsn" and "no return-path token and no returned Message-ID" in row[1]


def test_forged_tokens_and_unknown_messages_are_kept_not_trusted(
    store: psycopg.Connection, ledger: dict, bounce_mailbox: ImapServer
) -> None:
    genuine = verp_settings().return_path(ledger[3]["message_id"], 3)
    token = genuine.split("+", 1)[1].split("@")[0]
    forged = genuine.replace(token, token[:-6] + ("a" * 6 if not token.endswith("a" * 6) else "b" * 6))
    # A report claiming another profile's address: suppresses only the ledger's address.
    bounce_mailbox.deliver(bounce_for("exchange2007_hard.eml", recipient="victim@example.org",
                                      message_id=ledger[3]["message_id"], return_path=forged))
    bounce_mailbox.deliver(bounce_for("postfix_hard.eml", recipient="x@example.org",
                                      message_id="<0f0f0f0f-0000-5000-8000-000000000000@wanderly.example>",
                                      profile_id=4))

    run(store, bounce_mailbox)

    assert events(store) == {}
    assert suppressions(store) == {}
    reasons = [r[1] for r in kept(store)]
    assert "does not verify" in reasons[0]
    assert "valid return-path token names message <0f0f0f0f-0000-5000-8000-000000000000@…> of profile 4" in reasons[1]


def test_the_report_claims_nothing_the_ledger_does_not_say(
    store: psycopg.Connection, ledger: dict, bounce_mailbox: ImapServer
) -> None:
    row = ledger[5]
    bounce_mailbox.deliver(bounce_for("postfix_hard.eml", recipient="someone.else@example.org",
                                      message_id=row["message_id"], profile_id=5))
    run(store, bounce_mailbox)
    assert suppressions(store) == {row["address"]: ("hard_bounce", "smtp_bounce")}
    detail = store.execute("SELECT detail FROM campaign.delivery_event").fetchone()[0]
    assert detail["recipient"] == row["address"] and detail["final_recipient"] == "someone.else@example.org"


def test_a_crash_between_commit_and_move_counts_nothing_twice(
    store: psycopg.Connection, ledger: dict, bounce_mailbox: ImapServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for profile_id in (1, 7, 9):
        deliver(bounce_mailbox, ledger, profile_id, SAMPLES_BY_PROFILE[profile_id])
    deliver(bounce_mailbox, ledger, 12, "auto_reply.eml")

    def crash(self, uids, folder):
        raise ConnectionResetError("IMAP connection lost before the move")

    with monkeypatch.context() as patch:
        patch.setattr(BounceMailbox, "move", crash)
        with pytest.raises(ConnectionResetError):
            run(store, bounce_mailbox)
    before = store.execute("SELECT count(*), max(event_id) FROM campaign.delivery_event").fetchone()
    assert before[0] == 3 and bounce_mailbox.count("INBOX") == 4  # committed, not moved
    # A suppression lifted by hand in between stays lifted when the same reports are read again.
    store.execute("DELETE FROM crm.suppression WHERE address = %s", (ledger[1]["address"],))

    again = run(store, bounce_mailbox).as_dict()

    assert store.execute("SELECT count(*), max(event_id) FROM campaign.delivery_event").fetchone() == before
    assert (again["inserted"], again["duplicates"], again["kept_for_inspection"]) == (0, 3, 0)
    assert len(kept(store)) == 1
    assert ledger[1]["address"] not in suppressions(store)
    assert bounce_mailbox.count("INBOX") == 0


def test_soft_bounces_suppress_past_the_threshold(
    store: psycopg.Connection, ledger: dict, bounce_mailbox: ImapServer
) -> None:
    # Profiles 1-3 are three messages to one shared address (a household): three soft bounces.
    shared = "family@example.com"
    store.execute("UPDATE campaign.message SET address = %s WHERE profile_id IN (1, 2, 3)", (shared,))
    policy = SoftBounces(suppress_after=3, within="30d")

    deliver(bounce_mailbox, {**ledger, 1: {**ledger[1], "address": shared}}, 1, "postfix_soft.eml")
    # The same message soft-bouncing again (another retry's report) is still one message.
    row2 = {**ledger[2], "address": shared}
    deliver(bounce_mailbox, {2: row2}, 2, "yahoo_via_postfix_soft.eml")
    deliver(bounce_mailbox, {2: row2}, 2, "outlook_mailbox_full.eml")
    first = run(store, bounce_mailbox, soft_bounces=policy).as_dict()
    assert first["soft_bounces"] == 3 and first["suppressed_soft_bounce"] == 0
    assert shared not in suppressions(store)

    deliver(bounce_mailbox, {3: {**ledger[3], "address": shared}}, 3, "google_via_postfix_mailbox_full.eml")
    second = run(store, bounce_mailbox, soft_bounces=policy).as_dict()
    assert second["suppressed_soft_bounce"] == 1
    assert suppressions(store) == {shared: ("soft_bounce", "smtp_bounce")}


def test_operator_reads_the_mailbox_over_tls_and_skips_without_a_connection(
    store: psycopg.Connection, ledger: dict, bounce_mailbox: ImapServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.exceptions import AirflowSkipException
    from campaign_orchestrator.operators.feedback import IngestBounceMailboxOperator

    deliver(bounce_mailbox, ledger, 5, "postfix_hard.eml")
    monkeypatch.setenv("AIRFLOW_CONN_CAMPAIGN_BOUNCES", bounce_mailbox.conn_json(ssl=True))
    counts = IngestBounceMailboxOperator(task_id="ingest_bounce_mailbox").execute({})
    assert (counts["messages"], counts["hard_bounces"], counts["moved"]) == (1, 1, 1)
    assert suppressions(store) == {ledger[5]["address"]: ("hard_bounce", "smtp_bounce")}

    monkeypatch.delenv("AIRFLOW_CONN_CAMPAIGN_BOUNCES")
    with pytest.raises(AirflowSkipException, match="campaign_bounces"):
        IngestBounceMailboxOperator(task_id="ingest_bounce_mailbox").execute({})
    monkeypatch.setenv("AIRFLOW_CONN_CAMPAIGN_BOUNCES", json.dumps({"conn_type": "imap", "extra": {
        "verp_domain": "bounces.example.com", "secret": "x" * 20}}))  # VERP for sends, no mailbox yet
    with pytest.raises(AirflowSkipException, match="no IMAP host"):
        IngestBounceMailboxOperator(task_id="ingest_bounce_mailbox").execute({})


def test_the_ledger_row_helper_and_servers_without_move(
    store: psycopg.Connection, ledger: dict, bounce_mailbox: ImapServer
) -> None:
    """``ImapServer.bounce`` (for journey tests) bounces a ledger row; a server without MOVE
    gets COPY, ``\\Deleted`` and UID EXPUNGE instead."""
    run_key = ledger[1]["run_key"]
    bounce_mailbox.bounce(store, run_key, "offer_email", 6, "gmail_hard.eml")
    bounce_mailbox.bounce(store, run_key, "offer_email", 7, "yahoo_via_postfix_soft.eml", verp=False)

    with BounceMailbox(settings(bounce_mailbox)) as mailbox:
        mailbox.client.capabilities = tuple(c for c in mailbox.client.capabilities if c != "MOVE")
        result = ingest_mailbox(store, mailbox, verp_settings(), source="imap:test")

    assert result.events == 2
    got = events(store)
    assert (got[6][:2], got[6][4]) == (("bounced", "Permanent"), "verp")
    assert (got[7][:2], got[7][4]) == (("bounced", "Transient"), "message_id")
    assert (bounce_mailbox.count("INBOX"), bounce_mailbox.count("Processed")) == (0, 2)


def test_airflow_dags_test_runs_the_feedback_dag_with_the_mailbox(
    airflow_db, store: psycopg.Connection, ledger: dict, bounce_mailbox: ImapServer
) -> None:
    """The real DAG: the bounce task reads the mailbox, the unconfigured SQS and SMS tasks skip."""
    from tests.fixtures.airflow import dags_test

    deliver(bounce_mailbox, ledger, 2, "office365_hard.eml")
    deliver(bounce_mailbox, ledger, 9, "arf_yahoo_complaint.eml")
    result = dags_test("campaign_feedback")  # no campaign_feedback connection: the SQS tasks skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert suppressions(store) == {ledger[2]["address"]: ("hard_bounce", "smtp_bounce"),
                                   ledger[9]["address"]: ("complaint", "smtp_bounce")}
    assert bounce_mailbox.count("INBOX") == 0


def test_a_message_nothing_can_read_is_kept_and_does_not_stall_the_mailbox(
    store: psycopg.Connection, ledger: dict, bounce_mailbox: ImapServer
) -> None:
    poison = (b"Subject: =?utf-8?q?Undelivered=00_mail?=\r\nFrom: =?x-unknown?b?////?= <MAILER-DAEMON@x.example>\r\n"
              b"Content-Type: multipart/report; report-type=delivery-status; boundary=none\r\n"
              b"Content-Transfer-Encoding: base64\r\n\r\n%%% not base64 %%%\r\n")
    bounce_mailbox.deliver(poison)
    deliver(bounce_mailbox, ledger, 5, "postfix_hard.eml")
    result = run(store, bounce_mailbox)
    assert (result.events, result.kept) == (1, 1)
    ((kind, reason, raw, _),) = kept(store)
    assert kind == "bounce_text" and "no return-path token" in reason and raw == poison
    assert bounce_mailbox.count("INBOX") == 0
