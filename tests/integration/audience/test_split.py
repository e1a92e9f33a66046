"""Split by rules and by top N against a real store: each run's segments are checked against
the same rules worked out independently, step by step, with plain SQL and Python sets."""

from __future__ import annotations

import pytest

from campaign_orchestrator.audience.compile import AudienceCompileError, compile_audience
from campaign_orchestrator.config.campaign import CampaignConfig
from campaign_orchestrator.paths import ProjectPaths
from campaign_orchestrator.run.audience import AudienceError, evaluate_audience
from campaign_orchestrator.run.checks import check_campaign_deep, check_split_rules_in_store
from campaign_orchestrator.run.runs import register_run
from campaign_orchestrator.run.targeting import target_step
from tests.fixtures.store import load_demo_store, without_runs

pytestmark = pytest.mark.integration

PATHS = ProjectPaths.discover()
BOOKERS = {"bookers": {"from": "booking", "where": {"status": "confirmed"}, "entity_key": "booking"}}
RULES = [
    {"segment": "french_subscribers", "where": {"country_code": "FR", "subscription.status": "active"}},
    {"segment": "newest", "top": 150, "order_by": "created_at desc"},
    {"segment": "iberian_by_name", "where": {"country_code": {"in": ["ES", "PT"]}}, "top": 200,
     "order_by": "last_name, first_name desc"},
]


@pytest.fixture(scope="module")
def data(store_dsn):
    return load_demo_store(store_dsn, seed=11)


@pytest.fixture
def conn(data):
    yield from without_runs(data)


def campaign(rules: list[dict], steps: list[dict] | None = None, holdout: dict | None = None) -> CampaignConfig:
    audience = {"blocks": BOOKERS, "split": {"rules": rules}, **({"holdout": holdout} if holdout else {})}
    return CampaignConfig.model_validate({
        "id": "split", "schedule": "manual", "valid": {"start": "2026-01-01"}, "audience": audience,
        "steps": steps or [{"id": "mail", "channel": "email", "template": "winter_sale", "sender": "W <w@w.example>"}],
    })


def evaluate(conn, config: CampaignConfig, run_id: str = "r1") -> int:
    run_key = register_run(conn, config.id, run_id, None, {})
    evaluate_audience(conn, run_key, compile_audience(config, PATHS), None, None, config.audience.holdout,
                      config.audience.split)
    return run_key


def segments_of(conn, run_key: int) -> dict[int, str | None]:
    rows = conn.execute(
        "SELECT DISTINCT profile_id, segment FROM campaign.audience_member WHERE run_key = %s AND NOT held_out",
        (run_key,)).fetchall()
    by_profile = dict(rows)
    assert len(by_profile) == len(rows), "every entity of a profile shares its segment"
    return by_profile


def expected_segments(conn, run_key: int) -> dict[int, str | None]:
    """The three rules applied one after the other, written independently."""
    left = sorted(r[0] for r in conn.execute(
        "SELECT DISTINCT profile_id FROM campaign.audience_member WHERE run_key = %s AND NOT held_out", (run_key,)))
    out: dict[int, str | None] = dict.fromkeys(left)
    french = {r[0] for r in conn.execute("""
        SELECT p.profile_id FROM crm.profile p
        WHERE p.profile_id = ANY(%s) AND p.country_code = 'FR'
          AND p.profile_id IN (SELECT profile_id FROM crm.subscription WHERE status = 'active')""", (left,))}
    left = [p for p in left if p not in french]
    newest = [r[0] for r in conn.execute("""
        SELECT profile_id FROM crm.profile WHERE profile_id = ANY(%s)
        ORDER BY created_at DESC NULLS LAST, profile_id LIMIT 150""", (left,))]
    left = [p for p in left if p not in set(newest)]
    iberian = [r[0] for r in conn.execute("""
        SELECT profile_id FROM crm.profile WHERE profile_id = ANY(%s) AND country_code IN ('ES', 'PT')
        ORDER BY last_name NULLS LAST, first_name DESC NULLS LAST, profile_id LIMIT 200""", (left,))]
    for segment, chosen in (("french_subscribers", french), ("newest", newest), ("iberian_by_name", iberian)):
        out.update(dict.fromkeys(chosen, segment))
    return out


def test_rules_and_top_n_match_the_rules_worked_out_by_hand(conn) -> None:
    config = campaign([*RULES, {"segment": "rest"}], holdout={"percent": 10, "salt": "split-test"})
    run_key = evaluate(conn, config)
    got = segments_of(conn, run_key)
    want = expected_segments(conn, run_key)
    want = {p: s or "rest" for p, s in want.items()}  # the catch-all takes everyone left
    assert got == want
    sizes = {s: list(got.values()).count(s) for s in set(got.values())}
    assert sizes["newest"] == 150 and sizes["iberian_by_name"] == 200
    assert 10 < sizes["french_subscribers"] < sizes["rest"]
    # the control group is drawn first and never segmented
    assert conn.execute("SELECT count(*) FROM campaign.audience_member WHERE run_key = %s AND held_out "
                        "AND segment IS NOT NULL", (run_key,)).fetchone()[0] == 0
    again = evaluate(conn, config, "r2")
    assert segments_of(conn, again) == got  # deterministic


def test_members_no_rule_takes_get_no_segment_and_only_unsegmented_steps_reach_them(conn) -> None:
    steps = [
        {"id": "gold_mail", "channel": "email", "template": "winter_sale", "sender": "W <w@w.example>",
         "segment": "french_subscribers", "consent": "not_opted_out"},
        {"id": "newest_mail", "channel": "email", "template": "winter_sale", "sender": "W <w@w.example>",
         "segment": "newest", "consent": "not_opted_out"},
        {"id": "everyone", "channel": "email", "template": "winter_sale", "sender": "W <w@w.example>",
         "consent": "not_opted_out", "message_per": "profile"},
    ]
    config = campaign(RULES[:2], steps)
    run_key = evaluate(conn, config)
    want = {p: s for p, s in expected_segments(conn, run_key).items() if s != "iberian_by_name"}
    got = segments_of(conn, run_key)
    assert got == {p: want.get(p) for p in got}
    unmatched = {p for p, s in got.items() if s is None}
    assert unmatched
    for step in config.steps:
        target_step(conn, run_key, config, step)
    per_step = {step: {r[0] for r in conn.execute(
        "SELECT DISTINCT profile_id FROM campaign.message WHERE run_key = %s AND step_id = %s", (run_key, step))}
        for step in ("gold_mail", "newest_mail", "everyone")}
    assert per_step["gold_mail"] == {p for p, s in got.items() if s == "french_subscribers"}
    assert per_step["newest_mail"] == {p for p, s in got.items() if s == "newest"}
    assert not unmatched & (per_step["gold_mail"] | per_step["newest_mail"])
    assert per_step["everyone"] == set(got)
    # one message per profile, whatever its number of bookings
    rows = conn.execute("SELECT count(*), count(DISTINCT profile_id) FROM campaign.message "
                        "WHERE run_key = %s AND step_id = 'everyone'", (run_key,)).fetchone()
    assert rows[0] == rows[1] == len(got)


def test_rule_errors_name_the_rule(conn) -> None:
    bad_column = campaign([{"segment": "vip", "top": 5, "order_by": "lifetime_value desc"}])
    with pytest.raises(AudienceError, match=r"audience.split.rules\[0\] \(segment vip\): .*lifetime_value"):
        evaluate(conn, bad_column)
    assert check_split_rules_in_store(conn, bad_column, PATHS) == [
        'audience.split.rules[0] (segment vip): PostgreSQL rejected the rule: column p.lifetime_value does not exist'
    ]
    bad_link = campaign([{"segment": "vip", "where": {"warehouse.city": "Lyon"}}])
    with pytest.raises(AudienceCompileError, match=r"audience.split.rules\[0\]: unknown entity 'warehouse'"):
        evaluate(conn, bad_link)
    assert any("audience.split.rules[0]: unknown entity 'warehouse'" in p for p in check_campaign_deep(bad_link, PATHS))
