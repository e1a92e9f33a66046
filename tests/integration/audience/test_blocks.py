"""Audience blocks against a real store: each compiled audience is checked against SQL
written independently by hand, on deterministic demo data."""

from __future__ import annotations

from collections import Counter

import pytest

from campaign_orchestrator.audience.compile import AudienceCompileError, compile_audience
from campaign_orchestrator.config.campaign import CampaignConfig
from campaign_orchestrator.paths import ProjectPaths
from campaign_orchestrator.run.audience import evaluate_audience
from campaign_orchestrator.run.runs import register_run
from campaign_orchestrator.run.targeting import target_step
from tests.fixtures.store import load_demo_store, without_runs

pytestmark = pytest.mark.integration

PATHS = ProjectPaths.discover()


@pytest.fixture(scope="module")
def data(store_dsn):
    return load_demo_store(store_dsn, seed=5)


@pytest.fixture
def conn(data):
    yield from without_runs(data)


def campaign(audience: dict, steps: list[dict] | None = None) -> CampaignConfig:
    return CampaignConfig.model_validate({
        "id": "blocks", "schedule": "manual", "valid": {"start": "2026-01-01"}, "audience": audience,
        "steps": steps or [{"id": "mail", "channel": "email", "template": "winter_sale", "sender": "W <w@w.example>"}],
    })


def members(conn, config: CampaignConfig, run_id: str = "r1") -> set[tuple[int, str]]:
    run_key = register_run(conn, config.id, run_id, None, {})
    evaluate_audience(conn, run_key, compile_audience(config, PATHS), None, None,
                      config.audience.holdout, config.audience.split)
    return set(conn.execute(
        "SELECT profile_id, entity_key FROM campaign.audience_member WHERE run_key = %s", (run_key,)).fetchall())


def expected(conn, sql: str, params=()) -> set[tuple[int, str]]:
    return {(row[0], str(row[1]) if len(row) > 1 else "") for row in conn.execute(sql, params).fetchall()}


LOW_STOCK = {"from": "inventory", "where": {"quantity": {"lte": 20}}, "entity_key": "booking",
             "via": ["product", "booking"]}


def test_a_segment_starting_from_inventory_ends_at_the_profiles_who_booked(conn) -> None:
    got = members(conn, campaign({"blocks": {"low_stock": LOW_STOCK}}))
    want = expected(conn, """
        SELECT DISTINCT b.profile_id, b.booking_id
        FROM crm.inventory i JOIN crm.booking b ON b.product_id = i.product_id
        WHERE i.quantity <= 20""")
    assert got == want and len(want) > 50
    assert len({p for p, _ in got}) < len(got)  # several bookings for some profiles: one row each


def test_conditions_on_linked_entities(conn) -> None:
    block = {"from": "booking", "where": {"status": "confirmed", "product.category": {"in": ["hotel", "tour"]},
                                          "starts_on": {"within_next_days": 60}}}
    got = members(conn, campaign({"blocks": {"b": block}}))
    want = expected(conn, """
        SELECT DISTINCT b.profile_id, '' FROM crm.booking b JOIN crm.product p USING (product_id)
        WHERE b.status = 'confirmed' AND p.category IN ('hotel', 'tour')
          AND b.starts_on BETWEEN current_date AND current_date + 60""")
    assert got == want and want


def test_union_intersection_and_exclusion_match_hand_written_sql(conn) -> None:
    blocks = {
        "bookers": {"from": "booking", "where": {"status": "confirmed"}},
        "subscribers": {"from": "subscription", "where": {"status": "active"}},
        "french": {"from": "profile", "where": {"country_code": "FR"}},
        "opted_out": {"sql": "audiences/by_ids.sql", "params": {"profile_ids": list(range(1, 4001, 7))}},
    }
    config = campaign({"blocks": blocks, "combine": {"union": ["bookers", "subscribers"], "intersect": ["french"],
                                                     "exclude": ["opted_out"]}})
    got = {p for p, _ in members(conn, config)}
    want = {r[0] for r in conn.execute("""
        (SELECT profile_id FROM crm.booking WHERE status = 'confirmed'
         UNION SELECT profile_id FROM crm.subscription WHERE status = 'active')
        INTERSECT SELECT profile_id FROM crm.profile WHERE country_code = 'FR'
        EXCEPT SELECT unnest(%s::bigint[])""", (list(range(1, 4001, 7)),)).fetchall()}
    assert got == want and want


def test_blocks_of_the_audience_entity_intersect_and_exclude_entity_by_entity(conn) -> None:
    # Low-stock bookings that are upcoming, minus cancelled ones: booking by booking, not
    # every low-stock booking of a traveller who happens to have one upcoming booking.
    blocks = {
        "low_stock": LOW_STOCK,
        "upcoming": {"from": "booking", "where": {"starts_on": {"within_next_days": 90}}, "entity_key": "booking"},
        "cancelled": {"from": "booking", "where": {"status": "cancelled"}, "entity_key": "booking"},
        "french": {"from": "profile", "where": {"country_code": "FR"}},
    }
    config = campaign({"blocks": blocks, "combine": {"union": ["low_stock"], "intersect": ["upcoming", "french"],
                                                     "exclude": ["cancelled"]}})
    got = members(conn, config)
    want = expected(conn, """
        SELECT DISTINCT b.profile_id, b.booking_id
        FROM crm.inventory i JOIN crm.booking b ON b.product_id = i.product_id
        JOIN crm.profile p ON p.profile_id = b.profile_id
        WHERE i.quantity <= 20 AND b.starts_on BETWEEN current_date AND current_date + 90
          AND b.status <> 'cancelled' AND p.country_code = 'FR'""")
    assert got == want and want
    by_profile = expected(conn, """
        SELECT DISTINCT b.profile_id, b.booking_id
        FROM crm.inventory i JOIN crm.booking b ON b.product_id = i.product_id
        WHERE i.quantity <= 20 AND b.profile_id IN (
            SELECT profile_id FROM crm.booking WHERE starts_on BETWEEN current_date AND current_date + 90)""")
    assert by_profile - got  # matching by profile alone would have kept past bookings


def test_holdout_is_the_right_size_stable_across_runs_and_recorded_in_the_ledger(conn) -> None:
    config = campaign({"blocks": {"everyone": {"from": "profile"}}, "holdout": {"percent": 10, "salt": "q4"}})
    held = []
    for run_id in ("r1", "r2"):
        run_key = register_run(conn, config.id, run_id, None, {})
        evaluate_audience(conn, run_key, compile_audience(config, PATHS), None, None, config.audience.holdout)
        held.append({r[0] for r in conn.execute(
            "SELECT profile_id FROM campaign.audience_member WHERE run_key = %s AND held_out", (run_key,))})
        target_step(conn, run_key, config, config.steps[0])
        statuses = Counter(dict(conn.execute(
            "SELECT status, count(*) FROM campaign.message WHERE run_key = %s GROUP BY status", (run_key,)).fetchall()))
        assert statuses["held_out"] == len(held[-1])
    assert held[0] == held[1]
    assert 0.08 < len(held[0]) / 4000 < 0.12
    other = campaign({"blocks": {"everyone": {"from": "profile"}}, "holdout": {"percent": 10, "salt": "q1"}})
    run_key = register_run(conn, other.id, "r3", None, {})
    evaluate_audience(conn, run_key, compile_audience(other, PATHS), None, None, other.audience.holdout)
    reshuffled = {r[0] for r in conn.execute(
        "SELECT profile_id FROM campaign.audience_member WHERE run_key = %s AND held_out", (run_key,))}
    assert len(reshuffled & held[0]) < len(held[0]) / 2  # a new salt draws a new group


def test_split_routes_each_segment_to_its_own_step(conn) -> None:
    steps = [
        {"id": "variant_a", "channel": "email", "template": "winter_sale", "sender": "W <w@w.example>", "segment": "a",
         "consent": "not_opted_out"},
        {"id": "variant_b", "channel": "email", "template": "upcoming_trip_reminder", "sender": "W <w@w.example>",
         "segment": "b", "consent": "not_opted_out"},
    ]
    config = campaign({"blocks": {"everyone": {"from": "profile"}}, "split": {"segments": {"a": 30, "b": 70}}}, steps)
    run_key = register_run(conn, config.id, "r1", None, {})
    evaluate_audience(conn, run_key, compile_audience(config, PATHS), None, None, None, config.audience.split)
    for step in config.steps:
        target_step(conn, run_key, config, step)
    per_step = dict(conn.execute(
        "SELECT step_id, count(*) FROM campaign.message WHERE run_key = %s GROUP BY step_id", (run_key,)).fetchall())
    assert per_step["variant_a"] + per_step["variant_b"] == 4000
    assert 0.27 < per_step["variant_a"] / 4000 < 0.33
    both = conn.execute("""
        SELECT count(*) FROM campaign.message a JOIN campaign.message b USING (run_key, profile_id)
        WHERE a.run_key = %s AND a.step_id = 'variant_a' AND b.step_id = 'variant_b'""", (run_key,)).fetchone()[0]
    assert both == 0


def test_compile_errors_name_the_block() -> None:
    config = campaign({"blocks": {"bad": {"from": "inventory", "where": {"warehouse.city": "Lyon"}}}})
    with pytest.raises(AudienceCompileError, match=r"audience.blocks.bad: unknown entity 'warehouse'"):
        compile_audience(config, PATHS)
    config = campaign({"blocks": {"bad": {"from": "booking", "entity_key": "plan"}}})
    with pytest.raises(AudienceCompileError, match=r"audience.blocks.bad: entity_key 'plan' is not on the path"):
        compile_audience(config, PATHS)


def test_block_config_errors_are_clear() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"quantity: \{'lots': 5\} must be one operator"):
        campaign({"blocks": {"x": {"from": "inventory", "where": {"quantity": {"lots": 5}}}}})
    with pytest.raises(ValidationError, match="combine.exclude: unknown block 'nobody'"):
        campaign({"blocks": {"x": {"from": "profile"}}, "combine": {"union": ["x"], "exclude": ["nobody"]}})
    with pytest.raises(ValidationError, match="split percentages must be positive and add up to 100"):
        campaign({"blocks": {"x": {"from": "profile"}}, "split": {"segments": {"a": 50, "b": 40}}})


def test_one_message_per_booking_capped_per_profile_and_sent_once_across_retries(conn, smtp_server) -> None:
    from campaign_orchestrator.channels.factory import build_channel
    from campaign_orchestrator.run.send import Batch, BatchSender
    from campaign_orchestrator.run.targeting import plan_batches
    from campaign_orchestrator.store.connect import store_connection

    steps = [{"id": "mail", "channel": "email", "template": "winter_sale", "sender": "W <w@w.example>",
              "consent": "not_opted_out", "connection_id": smtp_server.conn_id}]
    config = campaign({"blocks": {"bookings": {"from": "booking", "where": {"status": "confirmed"},
                                                "entity_key": "booking"}}}, steps)
    config = config.model_copy(update={"guardrails": config.guardrails.model_copy(update={"max_messages_per_profile": 2})})
    run_key = register_run(conn, config.id, "r1", None, {})
    evaluate_audience(conn, run_key, compile_audience(config, PATHS), None, None)
    result = target_step(conn, run_key, config, config.steps[0])
    assert result.excluded.get("max_messages_per_profile", 0) > 0
    per_profile = conn.execute("""
        SELECT max(n) FROM (SELECT profile_id, count(*) n FROM campaign.message
                            WHERE run_key = %s AND status = 'pending' GROUP BY profile_id) t""", (run_key,)).fetchone()[0]
    assert per_profile == 2
    renderer, open_sender = build_channel(config.steps[0], config, run_key, PATHS)
    batches = [Batch.from_xcom(b) for b in plan_batches(result.sendable, 200)]
    for _ in range(2):  # every batch twice: a retried or cleared task sends nothing again
        for batch in batches:
            BatchSender(store_connection, run_key, config.steps[0], renderer, open_sender).run(batch)
    sent = conn.execute(
        "SELECT count(*), count(DISTINCT (profile_id, entity_key)) FROM campaign.message "
        "WHERE run_key = %s AND status = 'sent'", (run_key,)).fetchone()
    assert sent[0] == sent[1] == result.sendable == len(smtp_server.handler.messages)
    ids = Counter(m.data.split(b"Message-ID: ")[1].split(b"\r\n")[0] for m in smtp_server.handler.messages)
    assert max(ids.values()) == 1  # one message id per (profile, booking)


def test_saved_audiences_are_versioned_once_per_run_and_read_back(conn, capsys) -> None:
    from datetime import timedelta

    from campaign_orchestrator.audience.saved import list_saved_audiences, save_audience
    from campaign_orchestrator.cli import main
    from campaign_orchestrator.run.audience import AudienceError

    source = campaign({"blocks": {"fr": {"from": "profile", "where": {"country_code": "FR"}}},
                       "save_as": {"name": "french", "retention": "30d"}})
    saved = []
    for run_id in ("r1", "r2"):
        run_key = register_run(conn, source.id, run_id, None, {})
        evaluate_audience(conn, run_key, compile_audience(source, PATHS), None, None)
        saved.append(save_audience(conn, run_key, source.id, run_id, "french", timedelta(days=30)))
        # a retried save task returns the same version, never a new one
        assert save_audience(conn, run_key, source.id, run_id, "french", timedelta(days=30)) == saved[-1]
    assert [s.version for s in saved] == [1, 2]
    french = {r[0] for r in conn.execute("SELECT profile_id FROM crm.profile WHERE country_code = 'FR'")}
    assert saved[0].size == len(french) > 0

    conn.execute("DELETE FROM crm.profile WHERE profile_id = ANY(%s)", (sorted(french)[:5],))
    reader = campaign({"blocks": {"v1": {"saved": "french", "version": 1}}})
    assert {p for p, _ in members(conn, reader, "read_v1")} == french  # a snapshot, not a live query
    latest = campaign({"blocks": {"v": {"saved": "french"}}})
    assert {p for p, _ in members(conn, latest, "read_latest")} == french
    assert [s.version for s in list_saved_audiences(conn, "french")] == [2, 1]

    missing = campaign({"blocks": {"v": {"saved": "french", "version": 9}}})
    with pytest.raises(AudienceError, match="no saved audience french version 9"):
        members(conn, missing, "read_missing")

    assert main(["audiences"]) == 0
    out = capsys.readouterr().out
    assert "french" in out and f"{len(french):,}" in out


@pytest.mark.parametrize("block, needs_distinct", [
    ({"from": "booking", "entity_key": "booking"}, False),  # booking -> profile: one row per booking
    ({"from": "inventory", "via": ["product", "booking"], "entity_key": "booking"}, False),  # one per booking
    ({"from": "profile"}, False),
    ({"from": "booking"}, True),  # a profile with several bookings
    ({"from": "product", "via": ["booking"], "entity_key": "product"}, True),  # the same product booked twice
])
def test_a_block_deduplicates_only_where_its_joins_can_repeat_a_member(conn, block, needs_distinct) -> None:
    compiled = compile_audience(campaign({"blocks": {"b": block}}), PATHS)
    assert ("SELECT DISTINCT" in compiled.blocks["b"]) == needs_distinct
    rows, distinct = conn.execute(
        f"SELECT count(*), count(DISTINCT (profile_id, entity_key)) FROM ({compiled.blocks['b']}) AS b", compiled.params
    ).fetchone()
    assert rows == distinct > 0
    if needs_distinct:  # the data has the repeats DISTINCT removes
        undistinct = compiled.blocks["b"].replace("SELECT DISTINCT", "SELECT", 1)
        assert conn.execute(f"SELECT count(*) FROM ({undistinct}) AS b", compiled.params).fetchone()[0] > rows


BY_IDS = {"sql": "audiences/by_ids.sql", "params": {"profile_ids": list(range(1, 4001, 3))}}


@pytest.mark.parametrize("blocks, unique", [
    ({"b": {"from": "booking"}}, True),  # its own DISTINCT: profiles with several bookings
    ({"b": {"from": "booking", "entity_key": "booking"}}, True),  # one row per booking
    ({"fr": {"from": "profile", "where": {"country_code": "FR"}}, "b": {"from": "booking"}}, True),  # UNION
    ({"ids": BY_IDS}, False),  # the campaign's own SQL: only the evaluation's DISTINCT makes it unique
    ({"ids": BY_IDS, "b": {"from": "booking"}}, False),
])
def test_the_snapshot_has_each_member_once_with_or_without_a_distinct_of_its_own(conn, blocks, unique) -> None:
    config = campaign({"blocks": blocks})
    compiled = compile_audience(config, PATHS)
    assert compiled.unique is unique and compiled.limited(100).unique is unique
    run_key = register_run(conn, config.id, "r1", None, {})
    size = evaluate_audience(conn, run_key, compiled, None, None).size
    rows, members = conn.execute(
        "SELECT count(*), count(DISTINCT (profile_id, entity_key)) FROM campaign.audience_member WHERE run_key = %s",
        (run_key,),
    ).fetchone()
    assert size == rows == members > 0
