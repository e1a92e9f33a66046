"""`campaigns calculate` against a real store: its counts per stage equal what a real run
records (audience snapshot, holdout, segments, ledger rows by reason), and it records nothing."""

from __future__ import annotations

from collections import Counter

import psycopg
import pytest

from campaign_orchestrator.audience.compile import compile_audience
from campaign_orchestrator.config.loader import load_campaigns
from campaign_orchestrator.config.campaign import CampaignConfig
from campaign_orchestrator.paths import ProjectPaths
from campaign_orchestrator.run.audience import AudienceError, evaluate_audience
from campaign_orchestrator.run.calculate import calculate_campaign
from campaign_orchestrator.run.runs import register_run
from campaign_orchestrator.run.targeting import target_step
from tests.fixtures.store import load_demo_store, without_runs

pytestmark = pytest.mark.integration

PATHS = ProjectPaths.discover()
EXCLUDED_IDS = list(range(1, 4001, 9))

SENDER = "W <w@w.example>"
# Holdout, a split routed to two steps, one message per booking capped per profile, the
# demo data's shared addresses, and three channels' rules: every reason a run records.
SYNTHETIC = {
    "id": "calc",
    "schedule": "manual",
    "valid": {"start": "2026-01-01"},
    "audience": {
        "blocks": {
            "bookers": {"from": "booking", "where": {"status": {"in": ["confirmed", "completed"]}},
                        "entity_key": "booking"},
            "low_stock": {"from": "inventory", "where": {"quantity": {"lte": 60}}, "via": ["product", "booking"],
                          "entity_key": "booking"},
            "known": {"from": "profile", "where": {"locale": {"in": ["en", "fr", "de", "es"]}}},
            "excluded": {"sql": "audiences/by_ids.sql", "params": {"profile_ids": EXCLUDED_IDS}},
        },
        "combine": {"union": ["bookers", "low_stock"], "intersect": ["known"], "exclude": ["excluded"]},
        "holdout": {"percent": 10, "salt": "calc"},
        "split": {"segments": {"a": 40, "b": 60}},
    },
    "guardrails": {"max_messages_per_profile": 2},
    "steps": [
        {"id": "a_mail", "channel": "email", "segment": "a", "template": "winter_sale", "sender": SENDER},
        {"id": "b_mail", "channel": "email", "segment": "b", "consent": "not_opted_out",
         "template": "upcoming_trip_reminder", "sender": SENDER},
        {"id": "everyone_sms", "channel": "sms", "purpose": "transactional", "template": "winter_sale_sms"},
    ],
}


@pytest.fixture(scope="module")
def data(store_dsn):
    return load_demo_store(store_dsn, seed=5)


@pytest.fixture
def conn(data):
    yield from without_runs(data)


def shipped(campaign_id: str) -> CampaignConfig:
    return load_campaigns(PATHS.campaigns, PATHS).configs[campaign_id][1]


def recorded_rows(conn: psycopg.Connection) -> tuple[int, ...]:
    return conn.execute(
        "SELECT (SELECT count(*) FROM campaign.run), (SELECT count(*) FROM campaign.audience_member),"
        " (SELECT count(*) FROM campaign.message), (SELECT count(*) FROM campaign.run_step)"
    ).fetchone()


def real_run(conn: psycopg.Connection, config: CampaignConfig) -> int:
    run_key = register_run(conn, config.id, "real", None, {})
    evaluate_audience(conn, run_key, compile_audience(config, PATHS), None, None,
                      config.audience.holdout, config.audience.split)
    for step in config.message_steps:
        target_step(conn, run_key, config, step)
    return run_key


@pytest.mark.parametrize("config", [
    pytest.param(CampaignConfig.model_validate(SYNTHETIC), id="blocks-holdout-split-capped-3-channels"),
    pytest.param(shipped("low_stock_alert"), id="low_stock_alert"),
    pytest.param(shipped("winter_sale_multichannel"), id="winter_sale_multichannel"),
])
def test_counts_equal_what_a_real_run_records_and_nothing_is_recorded(conn, config) -> None:
    counts = calculate_campaign(conn, config, PATHS)
    assert recorded_rows(conn) == (0, 0, 0, 0)

    run_key = real_run(conn, config)
    audience = conn.execute(
        "SELECT count(*), count(DISTINCT profile_id) FROM campaign.audience_member WHERE run_key = %s", (run_key,)
    ).fetchone()
    assert (counts.audience.members, counts.audience.profiles) == audience and audience[0] > 0
    held_out = conn.execute(
        "SELECT count(*), count(DISTINCT profile_id) FROM campaign.audience_member WHERE run_key = %s AND held_out",
        (run_key,),
    ).fetchone()
    assert (counts.held_out.members, counts.held_out.profiles) == held_out
    segments = {
        segment: (members, profiles) for segment, members, profiles in conn.execute(
            "SELECT segment, count(*), count(DISTINCT profile_id) FROM campaign.audience_member"
            " WHERE run_key = %s AND NOT held_out AND segment IS NOT NULL GROUP BY segment", (run_key,)
        ).fetchall()
    }
    assert {name: (c.members, c.profiles) for name, c in counts.segments.items()} == segments
    ledger: dict[str, Counter] = {}
    for step_id, reason, n in conn.execute(
        "SELECT step_id, coalesce(reason, 'sendable'), count(*) FROM campaign.message WHERE run_key = %s"
        " GROUP BY 1, 2", (run_key,)
    ).fetchall():
        ledger.setdefault(step_id, Counter())[reason] = n
    calculated = {s.step_id: Counter({**s.excluded, "sendable": s.sendable}) for s in counts.steps}
    assert calculated == ledger
    for s in counts.steps:
        assert s.targeted == sum(ledger[s.step_id].values())


def test_the_synthetic_campaign_exercises_every_stage_and_reason(conn) -> None:
    """The comparison above means something only if each stage and reason occurs."""
    config = CampaignConfig.model_validate(SYNTHETIC)
    counts = calculate_campaign(conn, config, PATHS)
    reasons = {reason for s in counts.steps for reason in s.excluded}
    assert {"holdout", "duplicate_address", "max_messages_per_profile", "opted_out", "no_consent",
            "missing_address", "invalid_phone_number"} <= reasons
    assert set(counts.segments) == {"a", "b"} and counts.held_out.members > 0
    assert counts.audience.members > counts.audience.profiles  # several bookings per profile


def test_block_and_combined_counts_match_sql_written_by_hand(conn) -> None:
    config = CampaignConfig.model_validate(SYNTHETIC)
    counts = calculate_campaign(conn, config, PATHS)

    def count(sql: str, params=()) -> tuple[int, int]:
        return conn.execute(f"SELECT count(*), count(DISTINCT profile_id) FROM ({sql}) AS x", params).fetchone()

    bookers = "SELECT profile_id, booking_id FROM crm.booking WHERE status IN ('confirmed', 'completed')"
    low_stock = """SELECT b.profile_id, b.booking_id FROM crm.inventory i
                   JOIN crm.booking b ON b.product_id = i.product_id WHERE i.quantity <= 60"""
    known = "SELECT profile_id FROM crm.profile WHERE locale IN ('en', 'fr', 'de', 'es')"
    assert (counts.blocks["bookers"].members, counts.blocks["bookers"].profiles) == count(bookers)
    assert (counts.blocks["low_stock"].members, counts.blocks["low_stock"].profiles) == count(low_stock)
    assert (counts.blocks["known"].members, counts.blocks["known"].profiles) == count(known)
    assert (counts.blocks["excluded"].members, counts.blocks["excluded"].profiles) == (len(EXCLUDED_IDS),) * 2
    combined = f"""
        SELECT profile_id, booking_id FROM ({bookers} UNION {low_stock}) AS u
        WHERE profile_id IN ({known}) AND profile_id <> ALL(%s)"""
    assert (counts.combined.members, counts.combined.profiles) == count(combined, (EXCLUDED_IDS,))
    assert counts.audience.members == counts.combined.members  # the union left no duplicate
    assert recorded_rows(conn) == (0, 0, 0, 0)


def test_a_limit_and_audience_params_are_applied_as_a_run_applies_them(conn) -> None:
    config = shipped("winter_sale")
    everyone = calculate_campaign(conn, config, PATHS)
    fewer = calculate_campaign(conn, config, PATHS, {"min_bookings": 3})
    assert 0 < fewer.audience.members < everyone.audience.members
    capped = calculate_campaign(conn, config, PATHS, limit=100)
    assert capped.limit == 100 and capped.audience.members == 100
    assert (capped.combined.members, capped.combined.profiles) == (
        everyone.combined.members, everyone.combined.profiles)  # the limit applies after the combine
    assert [s.targeted for s in capped.steps] == [100]
    assert recorded_rows(conn) == (0, 0, 0, 0)


def test_steps_after_others_are_listed_not_counted(conn) -> None:
    config = CampaignConfig.model_validate({
        **SYNTHETIC,
        "steps": [*SYNTHETIC["steps"][:1],
                  {"id": "nudge", "channel": "email", "after": ["a_mail"], "template": "winter_sale",
                   "sender": SENDER}],
    })
    counts = calculate_campaign(conn, config, PATHS)
    assert [s.step_id for s in counts.steps] == ["a_mail"]
    assert counts.later_steps == {"nudge": ["a_mail"]}
    assert "step nudge: after a_mail; counted when they have run" in counts.format()


def test_an_audience_error_names_the_block(conn) -> None:
    config = CampaignConfig.model_validate({
        **SYNTHETIC,
        "audience": {"blocks": {"old": {"saved": "no_such_audience"}}},
        "steps": [{"id": "mail", "channel": "email", "template": "winter_sale", "sender": SENDER}],
    })
    with pytest.raises(AudienceError, match="audience.blocks.old: .*no saved audience no_such_audience"):
        calculate_campaign(conn, config, PATHS)
    assert recorded_rows(conn) == (0, 0, 0, 0)
