"""Consent, suppression and address rules, evaluated in PostgreSQL (real store)."""

from __future__ import annotations

from pathlib import Path

import pytest

from campaign_orchestrator.config.campaign import CampaignConfig
from campaign_orchestrator.run.audience import AudienceError, GuardrailExceeded, evaluate_audience
from campaign_orchestrator.run.runs import register_run
from campaign_orchestrator.run.targeting import TargetingError, plan_batches, target_step
from tests.fixtures.store import add_profiles, suppress

pytestmark = pytest.mark.integration


def config(**step) -> CampaignConfig:
    return CampaignConfig.model_validate(
        {
            "id": "t",
            "schedule": "manual",
            "valid": {"start": "2026-01-01"},
            "audience": {"sql": "unused.sql"},
            "steps": [{"id": "mail", "channel": "email", "template": "x", "sender": "A <a@b.example>", **step}],
        }
    )


@pytest.fixture
def everyone(tmp_path: Path) -> Path:
    path = tmp_path / "everyone.sql"
    path.write_text("SELECT profile_id FROM crm.profile WHERE profile_id >= %(min_id)s;\n")
    return path


PROFILES = [
    {"profile_id": 1, "email": "in@example.com", "consent": {"email": "opted_in"}},
    {"profile_id": 2, "email": "out@example.com", "consent": {"email": "opted_out"}},
    {"profile_id": 3, "email": "unknown@example.com", "consent": {"email": "unknown"}},
    {"profile_id": 4, "email": "norow@example.com"},
    {"profile_id": 5, "email": "bounced@example.com", "consent": {"email": "opted_in"}},
    {"profile_id": 6, "email": None, "consent": {"email": "opted_in"}},
    {"profile_id": 7, "email": "not-an-email", "consent": {"email": "opted_in"}},
    {"profile_id": 8, "email": "  IN@Example.com ", "consent": {"email": "opted_in"}},
    {"profile_id": 9, "email": "sms-only@example.com", "consent": {"sms": "opted_in", "email": "opted_out"}},
    {"profile_id": 10, "email": "second@example.com", "consent": {"email": "opted_in"}},
    {"profile_id": 11, "email": "complained@example.com", "consent": {"email": "opted_in"}},
]


def run(store, cfg: CampaignConfig, sql: Path, **params):
    run_key = register_run(store, cfg.id, "r1", None, {})
    evaluate_audience(store, run_key, sql, {"min_id": 0, **params}, None)
    return run_key, target_step(store, run_key, cfg, cfg.steps[0])


def statuses(store, run_key: int) -> dict[int, tuple[str, str | None]]:
    rows = store.execute(
        "SELECT profile_id, status, reason FROM campaign.message WHERE run_key = %s", (run_key,)
    ).fetchall()
    return {pid: (status, reason) for pid, status, reason in rows}


def test_marketing_opt_in_excludes_everyone_without_consent_with_a_reason(store, everyone) -> None:
    add_profiles(store, PROFILES)
    suppress(store, "Bounced@example.com")
    suppress(store, "complained@example.com", reason="complaint")
    run_key, result = run(store, config(), everyone)
    assert statuses(store, run_key) == {
        1: ("pending", None),
        2: ("excluded", "opted_out"),
        3: ("excluded", "no_consent"),
        4: ("excluded", "no_consent"),
        5: ("excluded", "suppressed"),
        6: ("excluded", "missing_address"),
        7: ("excluded", "invalid_address"),
        8: ("excluded", "duplicate_address"),  # same mailbox as profile 1 after normalization
        9: ("excluded", "opted_out"),
        10: ("pending", None),
        11: ("excluded", "suppressed"),
    }
    assert result.sendable == 2
    assert result.excluded == {
        "duplicate_address": 1, "invalid_address": 1, "missing_address": 1,
        "no_consent": 2, "opted_out": 2, "suppressed": 2,
    }
    seqs = store.execute(
        "SELECT profile_id, seq FROM campaign.message WHERE run_key = %s AND seq IS NOT NULL ORDER BY seq", (run_key,)
    ).fetchall()
    assert seqs == [(1, 1), (10, 2)]


def test_the_lowest_sendable_profile_keeps_a_shared_address(store, everyone) -> None:
    add_profiles(store, [
        {"profile_id": 1, "email": "shared@example.com", "consent": {"email": "opted_out"}},
        {"profile_id": 2, "email": "Shared@example.com", "consent": {"email": "opted_in"}},
        {"profile_id": 3, "email": "shared@example.com ", "consent": {"email": "opted_in"}},
        {"profile_id": 4, "email": "other@example.com", "consent": {"email": "opted_in"}},
        {"profile_id": 5, "email": "SHARED@example.com", "consent": {"email": "opted_in"}},
    ])
    run_key, result = run(store, config(), everyone)
    assert statuses(store, run_key) == {
        1: ("excluded", "opted_out"),  # not sendable: the address goes to the next one
        2: ("pending", None),
        3: ("excluded", "duplicate_address"),
        4: ("pending", None),
        5: ("excluded", "duplicate_address"),
    }
    seqs = store.execute(
        "SELECT profile_id, seq FROM campaign.message WHERE run_key = %s AND seq IS NOT NULL ORDER BY seq", (run_key,)
    ).fetchall()
    assert seqs == [(2, 1), (4, 2)] and result.sendable == 2


def test_not_opted_out_policy_counts_unknown_as_consent(store, everyone) -> None:
    add_profiles(store, PROFILES)
    run_key, result = run(store, config(consent="not_opted_out"), everyone)
    got = statuses(store, run_key)
    assert got[3] == ("pending", None) and got[4] == ("pending", None)
    assert got[2] == ("excluded", "opted_out")


def test_transactional_skips_consent_but_not_bounces_or_complaints(store, everyone) -> None:
    add_profiles(store, PROFILES)
    suppress(store, "bounced@example.com")
    suppress(store, "complained@example.com", reason="complaint")
    suppress(store, "out@example.com", reason="unsubscribe")
    run_key, _ = run(store, config(purpose="transactional"), everyone)
    got = statuses(store, run_key)
    assert got[2] == ("pending", None)  # opted out of marketing, unsubscribe is not a bounce
    assert got[5] == ("excluded", "suppressed") and got[11] == ("excluded", "suppressed")


def test_targeting_is_done_once_per_run_and_step(store, everyone) -> None:
    add_profiles(store, PROFILES)
    cfg = config()
    run_key, first = run(store, cfg, everyone)
    store.execute("UPDATE crm.consent SET status = 'opted_in' WHERE profile_id = 2")
    again = target_step(store, run_key, cfg, cfg.steps[0])
    assert again.filtered_earlier and again.sendable == first.sendable


def test_a_second_targeting_attempt_waits_for_the_first_and_reuses_it(store, store_dsn, everyone) -> None:
    """Targeting beside a zombie attempt of the same step: the second waits for the first,
    then finds the step targeted (no duplicate ledger row, no error)."""
    import threading

    import psycopg

    add_profiles(store, PROFILES)
    cfg = config()
    run_key = register_run(store, cfg.id, "r1", None, {})
    evaluate_audience(store, run_key, everyone, {"min_id": 0}, None)
    with psycopg.connect(store_dsn, autocommit=True) as zombie, psycopg.connect(store_dsn, autocommit=True) as retry:
        results = []
        with zombie.transaction():
            first = target_step(zombie, run_key, cfg, cfg.steps[0])  # not committed yet
            waiter = threading.Thread(target=lambda: results.append(target_step(retry, run_key, cfg, cfg.steps[0])))
            waiter.start()
            while waiter.is_alive() and not store.execute(  # the retry waits on the step's lock
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", (retry.info.backend_pid,)
            ).fetchone()[0]:
                waiter.join(0.01)
        waiter.join(10)
    assert [(r.sendable, r.filtered_earlier) for r in results] == [(first.sendable, True)]
    assert store.execute(
        "SELECT count(*) FROM campaign.message WHERE run_key = %s", (run_key,)
    ).fetchone()[0] == len(PROFILES)


def test_audience_is_frozen_per_run(store, everyone) -> None:
    add_profiles(store, PROFILES[:3])
    run_key = register_run(store, "t", "r1", None, {})
    assert evaluate_audience(store, run_key, everyone, {"min_id": 0}, None).size == 3
    add_profiles(store, PROFILES[3:5])
    again = evaluate_audience(store, run_key, everyone, {"min_id": 0}, None)
    assert again.frozen_earlier and again.size == 3
    assert register_run(store, "t", "r1", None, {}) == run_key


def test_a_second_attempt_waits_for_the_first_and_reuses_its_snapshot(store, store_dsn, everyone) -> None:
    """A retry evaluating beside a zombie attempt: the run's row is locked while an audience
    is evaluated, so the second waits, then finds the snapshot frozen (no duplicate, no error)."""
    import threading

    import psycopg

    add_profiles(store, PROFILES[:3])
    run_key = register_run(store, "t", "r1", None, {})
    with psycopg.connect(store_dsn, autocommit=True) as zombie, psycopg.connect(store_dsn, autocommit=True) as retry:
        results = []
        with zombie.transaction():
            evaluate_audience(zombie, run_key, everyone, {"min_id": 0}, None)  # not committed yet
            waiter = threading.Thread(
                target=lambda: results.append(evaluate_audience(retry, run_key, everyone, {"min_id": 0}, None))
            )
            waiter.start()
            retry_pid = retry.info.backend_pid
            while waiter.is_alive() and not store.execute(  # the retry waits on the run's row
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", (retry_pid,)
            ).fetchone()[0]:
                waiter.join(0.01)
        waiter.join(10)
    assert [(r.size, r.frozen_earlier) for r in results] == [(3, True)]
    assert store.execute(
        "SELECT count(*) FROM campaign.audience_member WHERE run_key = %s", (run_key,)
    ).fetchone()[0] == 3


def test_guardrail_fails_with_a_clear_message_and_records_nothing(store, everyone) -> None:
    add_profiles(store, PROFILES)
    run_key = register_run(store, "t", "r1", None, {})
    with pytest.raises(GuardrailExceeded, match="exceeds guardrails.max_audience = 5.*override_max_audience"):
        evaluate_audience(store, run_key, everyone, {"min_id": 0}, 5)
    count = store.execute("SELECT count(*) FROM campaign.audience_member WHERE run_key = %s", (run_key,)).fetchone()
    assert count == (0,)


def test_a_deleted_run_is_neither_evaluated_nor_targeted(store, everyone) -> None:
    """The snapshot and the ledger have no foreign key to the run (migration 0012): the run's
    row, read under a lock, is the check."""
    add_profiles(store, PROFILES[:3])
    cfg = config()
    run_key = register_run(store, cfg.id, "r1", None, {})
    store.execute("DELETE FROM campaign.run WHERE run_key = %s", (run_key,))
    with pytest.raises(AudienceError, match=f"run {run_key} does not exist"):
        evaluate_audience(store, run_key, everyone, {"min_id": 0}, None)
    with pytest.raises(TargetingError, match=f"run {run_key} does not exist"):
        target_step(store, run_key, cfg, cfg.steps[0])
    assert store.execute(
        "SELECT (SELECT count(*) FROM campaign.audience_member), (SELECT count(*) FROM campaign.message)"
    ).fetchone() == (0, 0)


def test_a_run_deleted_while_it_is_targeted_takes_the_new_ledger_rows_with_it(store, store_dsn, everyone) -> None:
    """The delete waits for the targeting to commit, then deletes what it wrote: no ledger row
    is left without its run."""
    import threading

    import psycopg

    add_profiles(store, PROFILES)
    cfg = config()
    run_key = register_run(store, cfg.id, "r1", None, {})
    evaluate_audience(store, run_key, everyone, {"min_id": 0}, None)
    with psycopg.connect(store_dsn, autocommit=True) as targeting, psycopg.connect(store_dsn, autocommit=True) as admin:
        with targeting.transaction():
            target_step(targeting, run_key, cfg, cfg.steps[0])  # not committed yet
            deleter = threading.Thread(
                target=lambda: admin.execute("DELETE FROM campaign.run WHERE run_key = %s", (run_key,))
            )
            deleter.start()
            while deleter.is_alive() and not store.execute(  # the delete waits on the run's row
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", (admin.info.backend_pid,)
            ).fetchone()[0]:
                deleter.join(0.01)
            assert deleter.is_alive()
        deleter.join(10)
    assert store.execute(
        "SELECT (SELECT count(*) FROM campaign.audience_member), (SELECT count(*) FROM campaign.message)"
    ).fetchone() == (0, 0)


def test_sql_errors_name_file_line_and_column(store, tmp_path: Path) -> None:
    bad = tmp_path / "bad.sql"
    bad.write_text("SELECT profile_id\nFROM crm.profile\nWHERE nonexistent_column = 1")
    run_key = register_run(store, "t", "r1", None, {})
    with pytest.raises(AudienceError, match=r"bad\.sql:3:7: PostgreSQL rejected the audience SQL: column \"nonexistent_column\" does not exist"):
        evaluate_audience(store, run_key, bad, {}, None)


def test_missing_params_and_missing_profile_id_column(store, tmp_path: Path) -> None:
    sql = tmp_path / "a.sql"
    sql.write_text("SELECT profile_id FROM crm.profile WHERE profile_id > %(floor)s")
    run_key = register_run(store, "t", "r1", None, {})
    with pytest.raises(AudienceError, match=r"uses %\(floor\)s but audience.params gives no value"):
        evaluate_audience(store, run_key, sql, {}, None)
    sql.write_text("SELECT email FROM crm.profile")
    with pytest.raises(AudienceError, match="must return a profile_id column; it returns email"):
        evaluate_audience(store, run_key, sql, {}, None)


def test_empty_audience_plans_no_batch(store, everyone) -> None:
    run_key, result = run(store, config(), everyone)
    assert result.sendable == 0 and plan_batches(result.sendable, 100) == []


def test_plan_batches_covers_every_seq_once() -> None:
    batches = plan_batches(2501, 1000)
    assert [(b["lo"], b["hi"], b["size"]) for b in batches] == [(1, 1000, 1000), (1001, 2000, 1000), (2001, 2501, 501)]
    assert [b["of"] for b in batches] == [3, 3, 3]
