"""The ledger's exactly-once protocol against a real PostgreSQL and a real SMTP server.

Failures are produced by the SMTP server itself (dropped connections, 4xx/5xx replies) or by
leaving ledger rows exactly as a killed attempt leaves them; nothing in the send path is mocked.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest

from campaign_orchestrator.channels.base import TransientSendError
from campaign_orchestrator.channels.factory import build_channel
from campaign_orchestrator.config.campaign import CampaignConfig
from campaign_orchestrator.paths import ProjectPaths
from campaign_orchestrator.run.audience import evaluate_audience
from campaign_orchestrator.run.runs import register_run
from campaign_orchestrator.run.send import Batch, BatchSender, CircuitBreakerOpen, SendPolicy
from campaign_orchestrator.run.targeting import plan_batches, target_step
from campaign_orchestrator.store.connect import store_connection
from tests.fixtures.store import add_profiles

pytestmark = pytest.mark.integration


@pytest.fixture
def project(tmp_path: Path) -> ProjectPaths:
    paths = ProjectPaths(tmp_path)
    (paths.sql / "audiences").mkdir(parents=True)
    (paths.sql / "audiences" / "all.sql").write_text("SELECT profile_id FROM crm.profile")
    folder = paths.templates / "hello"
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text("Hello {{ profile.first_name }}")
    (folder / "body.txt").write_text("Hi {{ profile.first_name }}, profile {{ profile.profile_id }}.")
    (folder / "body.html").write_text("<p>Hi {{ profile.first_name }}</p>")
    return paths


def make_config(**overrides) -> CampaignConfig:
    return CampaignConfig.model_validate(
        {
            "id": "exactly_once",
            "schedule": "manual",
            "valid": {"start": "2026-01-01"},
            "audience": {"sql": "audiences/all.sql"},
            "batch_size": 40,
            "steps": [
                {"id": "mail", "channel": "email", "template": "hello", "sender": "Shop <news@shop.example>",
                 "connection_id": "smtp_test"}
            ],
            **overrides,
        }
    )


def address(i: int) -> str:
    return f"user{i}@example.com"


class Run:
    """One registered, evaluated and targeted run; ``send(batch)`` is one task attempt."""

    def __init__(self, store, project: ProjectPaths, profiles: int = 100, **overrides) -> None:
        add_profiles(
            store,
            [{"profile_id": i, "email": address(i), "first_name": f"P{i}", "consent": {"email": "opted_in"}}
             for i in range(1, profiles + 1)],
        )
        self.store = store
        self.config = make_config(**overrides)
        self.step = self.config.steps[0]
        self.paths = project
        self.run_key = register_run(store, self.config.id, "run_1", None, {})
        evaluate_audience(store, self.run_key, project.sql / self.config.audience.sql, {}, None)
        result = target_step(store, self.run_key, self.config, self.step)
        self.batches = [Batch.from_xcom(b) for b in plan_batches(result.sendable, self.config.batch_size)]

    def sender(self, policy: SendPolicy | None = None) -> BatchSender:
        renderer, open_sender = build_channel(self.step, self.config, self.run_key, self.paths)
        return BatchSender(store_connection, self.run_key, self.step, renderer, open_sender,
                           on_uncertain=self.config.on_uncertain, chunk_size=10, policy=policy)

    def send(self, batch: Batch, policy: SendPolicy | None = None):
        return self.sender(policy).run(batch)

    def send_all(self) -> None:
        for batch in self.batches:
            self.send(batch)

    def ledger(self) -> Counter:
        return Counter(
            status for (status,) in self.store.execute(
                "SELECT status FROM campaign.message WHERE run_key = %s", (self.run_key,))
        )


def delivered(smtp_server) -> Counter:
    return Counter(rcpt for m in smtp_server.handler.messages for rcpt in m.rcpt_tos)


def test_every_consenting_profile_gets_exactly_one_message(store, project, smtp_server) -> None:
    run = Run(store, project, profiles=100)
    assert [(b.lo, b.hi) for b in run.batches] == [(1, 40), (41, 80), (81, 100)]
    run.send_all()
    assert delivered(smtp_server) == Counter({address(i): 1 for i in range(1, 101)})
    assert run.ledger() == Counter({"sent": 100})
    # one SMTP connection per batch, not per message
    assert smtp_server.handler.connections == 3
    # a cleared task, or the whole run re-sent, sends nothing again
    run.send_all()
    assert len(smtp_server.handler.messages) == 100
    message = smtp_server.handler.messages[0].data.decode()
    assert "Subject: Hello P1" in message and "Message-ID: <" in message
    ids = store.execute(
        "SELECT count(DISTINCT provider_message_id) FROM campaign.message WHERE run_key = %s", (run.run_key,)
    ).fetchone()[0]
    assert ids == 100


def test_batch_failing_midway_resumes_without_duplicates_or_gaps(store, project, smtp_server) -> None:
    run = Run(store, project, profiles=100)
    # The connection dies in batch 2, and again when the sender reconnects to retry.
    smtp_server.handler.drop_at_rcpt[address(57)] = 2
    run.send(run.batches[0])
    with pytest.raises(TransientSendError, match="could not be sent now"):
        run.send(run.batches[1])
    partial = run.ledger()
    assert partial["sent"] == 40 + 16 and partial["pending"] == 44
    # Airflow's retry of batch 2, then batch 3
    run.send(run.batches[1])
    run.send(run.batches[2])
    assert delivered(smtp_server) == Counter({address(i): 1 for i in range(1, 101)})
    assert run.ledger() == Counter({"sent": 100})


def test_lost_reply_after_data_is_uncertain_not_resent(store, project, smtp_server) -> None:
    run = Run(store, project, profiles=30)
    smtp_server.handler.drop_after_data[address(5)] = 1  # server got the message, reply lost
    stats = run.send(run.batches[0])  # the sender reconnects and carries on
    assert stats.uncertain == 1 and stats.sent == 29
    run.send(run.batches[0])  # a retry or clear of the task changes nothing
    assert run.ledger() == Counter({"sent": 29, "uncertain": 1})
    assert address(5) not in delivered(smtp_server)  # the server dropped it; we cannot know that
    assert max(delivered(smtp_server).values()) == 1


def test_permanent_rejection_fails_that_message_only(store, project, smtp_server) -> None:
    run = Run(store, project, profiles=30)
    smtp_server.handler.rcpt_replies[address(3)] = "550 5.1.1 No such user"
    smtp_server.handler.rcpt_replies[address(4)] = "451 4.3.0 Try again later"
    with pytest.raises(TransientSendError):
        run.send(run.batches[0])
    del smtp_server.handler.rcpt_replies[address(4)]
    run.send(run.batches[0])
    assert run.ledger() == Counter({"sent": 29, "failed": 1})
    row = store.execute(
        "SELECT reason, error FROM campaign.message WHERE run_key = %s AND profile_id = 3", (run.run_key,)
    ).fetchone()
    assert row[0] == "rejected" and "550" in row[1]
    assert address(3) not in delivered(smtp_server) and delivered(smtp_server)[address(4)] == 1


@pytest.mark.parametrize(("policy", "expected"), [("skip", {"sent": 37, "uncertain": 3}), ("resend", {"sent": 40})])
def test_rows_claimed_by_a_killed_attempt(store, project, smtp_server, policy, expected) -> None:
    run = Run(store, project, profiles=40, on_uncertain=policy)
    # A SIGKILLed attempt leaves its claimed chunk in 'sending': the provider may have them.
    store.execute(
        "UPDATE campaign.message SET status = 'sending', attempts = 1 WHERE run_key = %s AND seq <= 3",
        (run.run_key,),
    )
    stats = run.send(run.batches[0])
    assert run.ledger() == Counter(expected)
    assert stats.uncertain == expected.get("uncertain", 0)
    reasons = {r for (r,) in store.execute(
        "SELECT reason FROM campaign.message WHERE run_key = %s AND status = 'uncertain'", (run.run_key,))}
    assert reasons <= {"attempt_died_during_send"}


def test_opt_out_during_the_run_stops_later_messages(store, project, smtp_server) -> None:
    run = Run(store, project, profiles=80)
    run.send(run.batches[0])
    store.execute("UPDATE crm.consent SET status = 'opted_out', source = 'unsubscribe_link' WHERE profile_id = 60")
    store.execute(
        "INSERT INTO crm.suppression (channel, address, reason, source) VALUES ('email', %s, 'complaint', 'test')",
        (address(70),),
    )
    run.send(run.batches[1])
    assert address(60) not in delivered(smtp_server) and address(70) not in delivered(smtp_server)
    reasons = dict(store.execute(
        "SELECT profile_id, reason FROM campaign.message WHERE run_key = %s AND status = 'excluded'", (run.run_key,)
    ).fetchall())
    assert reasons == {60: "consent_withdrawn", 70: "suppressed_during_run"}
    assert run.ledger() == Counter({"sent": 78, "excluded": 2})


def test_two_attempts_of_the_same_batch_at_once_send_each_message_once(store, project, smtp_server) -> None:
    run = Run(store, project, profiles=40)
    errors: list[BaseException] = []

    def attempt() -> None:
        try:
            run.send(run.batches[0])
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert delivered(smtp_server) == Counter({address(i): 1 for i in range(1, 41)})


def test_circuit_breaker_stops_a_batch_that_mostly_fails(store, project, smtp_server) -> None:
    run = Run(store, project, profiles=40)
    for i in range(1, 41):
        if i % 4:  # three in four recipients are refused
            smtp_server.handler.rcpt_replies[address(i)] = "550 5.1.1 No such user"
    with pytest.raises(CircuitBreakerOpen, match=r"of 20 messages failed \(75% > guardrails.max_error_rate 20%"):
        run.send(run.batches[0], SendPolicy(max_error_rate=0.2, min_messages=20))
    ledger = run.ledger()
    assert ledger == Counter({"failed": 15, "sent": 5, "pending": 20})  # the rest is not burnt


def test_messages_past_the_send_window_are_excluded_and_counted(store, project, smtp_server) -> None:
    from datetime import datetime, timedelta, timezone

    run = Run(store, project, profiles=50)
    run.send(run.batches[0])
    closed = SendPolicy(deadline=datetime.now(timezone.utc) - timedelta(seconds=1))
    stats = run.send(run.batches[1], closed)
    assert stats.sent == 0 and stats.excluded_late == 10
    assert run.ledger() == Counter({"sent": 40, "excluded": 10})
    reasons = {r for (r,) in store.execute(
        "SELECT reason FROM campaign.message WHERE run_key = %s AND status = 'excluded'", (run.run_key,))}
    assert reasons == {"send_window_expired"}


def test_outcomes_carried_to_the_next_claim_are_written_when_that_claim_fails(store, project, smtp_server) -> None:
    """Without a rate limiter a chunk's outcomes are committed with the next claim; if that
    claim fails, they are still written, so nothing the server accepted is left 'sending'."""
    from datetime import datetime, timezone

    run = Run(store, project, profiles=30)
    calls = 0

    def clock_failing_at_the_third_claim() -> datetime:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("the claim broke")
        return datetime.now(timezone.utc)

    renderer, open_sender = build_channel(run.step, run.config, run.run_key, run.paths)
    sender = BatchSender(store_connection, run.run_key, run.step, renderer, open_sender, chunk_size=10,
                         clock=clock_failing_at_the_third_claim)
    with pytest.raises(RuntimeError, match="the claim broke"):
        sender.run(run.batches[0])
    assert run.ledger() == Counter({"sent": 20, "pending": 10})
    assert len(delivered(smtp_server)) == 20


def test_a_send_window_closing_between_chunks_writes_the_carried_outcomes(store, project, smtp_server) -> None:
    """A send window (every campaign has one, 12 hours by default) still lets a chunk's
    outcomes ride with the next claim; when the window closes before that claim, they are
    written on their own and only what was never claimed is excluded."""
    from datetime import datetime, timedelta, timezone

    run = Run(store, project, profiles=30)
    deadline = datetime.now(timezone.utc) + timedelta(hours=1)
    calls = 0

    def clock_closing_the_window_after_the_first_chunk() -> datetime:
        nonlocal calls
        calls += 1  # 1: the window check, 2: the first claim, 3: the next window check
        return deadline - timedelta(minutes=5) if calls <= 2 else deadline + timedelta(seconds=1)

    renderer, open_sender = build_channel(run.step, run.config, run.run_key, run.paths)
    sender = BatchSender(store_connection, run.run_key, run.step, renderer, open_sender, chunk_size=10,
                         policy=SendPolicy(deadline=deadline), clock=clock_closing_the_window_after_the_first_chunk)
    stats = sender.run(run.batches[0])
    assert (stats.sent, stats.excluded_late) == (10, 20)
    assert run.ledger() == Counter({"sent": 10, "excluded": 20})
    assert len(delivered(smtp_server)) == 10


def test_messages_coming_due_during_a_pass_are_sent_by_the_same_attempt(store, project, smtp_server) -> None:
    """Claims move forward through the batch; the pass ends with one more claim from its
    start, which takes what was passed over because it was not due yet."""
    from datetime import datetime, timedelta, timezone

    run = Run(store, project, profiles=40)
    start = datetime.now(timezone.utc)
    store.execute(
        "UPDATE campaign.message SET not_before = %s WHERE run_key = %s AND seq BETWEEN 5 AND 8",
        (start + timedelta(seconds=1), run.run_key),
    )
    ticks = iter([start])  # the first claim runs before they are due, every later one after

    def clock() -> datetime:
        return next(ticks, start + timedelta(seconds=2))

    renderer, open_sender = build_channel(run.step, run.config, run.run_key, run.paths)
    stats = BatchSender(store_connection, run.run_key, run.step, renderer, open_sender, chunk_size=10,
                        clock=clock).run(run.batches[0])
    assert stats.sent == 40 and stats.deferred == 0
    assert run.ledger() == Counter({"sent": 40})
    assert delivered(smtp_server) == Counter({address(i): 1 for i in range(1, 41)})
