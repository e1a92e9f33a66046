"""Multi-step campaigns in a real store: who enters each step, conditions on earlier outcomes
(ledger, delivery events, conversions), waits recorded once per run, and each recipient's
own send time after a wait until a local time of day (DST included)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from campaign_orchestrator.config.campaign import CampaignConfig
from campaign_orchestrator.channels.factory import build_channel
from campaign_orchestrator.paths import ProjectPaths
from campaign_orchestrator.run.audience import evaluate_audience
from campaign_orchestrator.run.journey import enter_wait
from campaign_orchestrator.run.funnel import compute_funnel
from campaign_orchestrator.run.runs import register_run
from campaign_orchestrator.run.send import Batch, BatchSender
from campaign_orchestrator.run.targeting import count_targets, plan_batches, target_step
from campaign_orchestrator.store.connect import store_connection
from tests.fixtures.store import add_profiles

pytestmark = pytest.mark.integration

ZONES = {
    1: "Europe/Paris", 2: "America/New_York", 3: "Asia/Tokyo", 4: "Australia/Sydney",
    5: "UTC", 6: "Not/AZone", 7: "Europe/Paris", 8: "America/Los_Angeles",
}


def journey(until: str | None = None) -> CampaignConfig:
    second_wait = {"until": until} if until else "1d"
    return CampaignConfig.model_validate({
        "id": "journey", "schedule": "manual", "valid": {"start": "2026-01-01"}, "audience": {"sql": "a/all.sql"},
        "conversion": {"table": "crm.booking", "profile_column": "profile_id", "time_column": "booked_at"},
        "steps": [
            {"id": "mail", "channel": "email", "template": "t", "sender": "S <s@shop.example>",
             "connection_id": "smtp_test"},
            {"id": "w1", "wait": "2d", "after": "mail"},
            {"id": "sms", "channel": "sms", "template": "s", "after": "w1",
             "when": {"step": "mail", "outcome": "not_opened"}},
            {"id": "w2", "wait": second_wait, "after": "sms"},
            {"id": "reminder", "channel": "email", "template": "t", "sender": "S <s@shop.example>",
             "connection_id": "smtp_test", "after": "w2", "when": {"converted": False}},
        ],
    })


@pytest.fixture
def paths(tmp_path: Path) -> ProjectPaths:
    paths = ProjectPaths(tmp_path)
    (paths.sql / "a").mkdir(parents=True)
    (paths.sql / "a" / "all.sql").write_text("SELECT profile_id FROM crm.profile")
    (paths.templates / "t").mkdir(parents=True)
    for part in ("subject.txt", "body.txt", "body.html"):
        (paths.templates / "t" / part).write_text("Hi {{ profile.first_name }}")
    return paths


@pytest.fixture
def people(store) -> None:
    add_profiles(store, [
        {"profile_id": i, "email": f"u{i}@example.com", "phone": f"+3361234567{i}", "first_name": "A",
         "time_zone": tz, "consent": {"email": "opted_out" if i == 7 else "opted_in", "sms": "opted_in"}}
        for i, tz in ZONES.items()
    ])
    store.execute("INSERT INTO crm.product (product_id, sku, name, category, price) VALUES (1, 'TRIP-1', 'Trip', 'city', 100)")


def ledger(store, run_key: int, step_id: str) -> dict[int, tuple[str, str | None]]:
    rows = store.execute(
        "SELECT profile_id, status, reason FROM campaign.message WHERE run_key = %s AND step_id = %s",
        (run_key, step_id),
    ).fetchall()
    return {pid: (status, reason) for pid, status, reason in rows}


def mark_sent(store, run_key: int, step_id: str) -> None:
    store.execute(
        "UPDATE campaign.message SET status = 'sent', sent_at = now(), provider_message_id = step_id || '-' || profile_id "
        "WHERE run_key = %s AND step_id = %s AND status = 'pending'",
        (run_key, step_id),
    )


def event(store, run_key: int, step_id: str, profile_id: int, kind: str) -> None:
    store.execute(
        "INSERT INTO campaign.delivery_event (provider_message_id, run_key, step_id, profile_id, entity_key, channel, "
        "event_type, bounce_type, occurred_at, provider_event_id) VALUES (%s, %s, %s, %s, '', 'email', %s, %s, now(), %s)",
        (f"{step_id}-{profile_id}", run_key, step_id, profile_id, kind, "Permanent" if kind == "bounced" else None,
         f"{step_id}-{profile_id}-{kind}"),
    )


def book(store, profile_id: int, booked_at: datetime) -> None:
    store.execute(
        "INSERT INTO crm.booking (booking_id, profile_id, product_id, status, booked_at, starts_on, amount) "
        "VALUES (%s, %s, 1, 'confirmed', %s, current_date + 30, 100)",
        (profile_id * 100 + int(booked_at.timestamp()) % 97, profile_id, booked_at),
    )


def start(store, paths: ProjectPaths, config: CampaignConfig) -> int:
    run_key = register_run(store, config.id, "r1", None, {})
    evaluate_audience(store, run_key, paths.sql / "a" / "all.sql", {}, None)
    return run_key


def test_each_step_targets_who_came_through_and_meets_its_conditions(store, paths, people) -> None:
    config = journey()
    run_key = start(store, paths, config)
    target_step(store, run_key, config, config.step("mail"))
    assert ledger(store, run_key, "mail")[7] == ("excluded", "opted_out")
    mark_sent(store, run_key, "mail")
    event(store, run_key, "mail", 1, "opened")
    event(store, run_key, "mail", 2, "clicked")   # a click is an open, even with the pixel blocked
    event(store, run_key, "mail", 3, "delivered")  # delivered, not opened

    # Counting first (a calculation) gives what targeting then records.
    counted = count_targets(store, run_key, config, config.step("sms"))
    target_step(store, run_key, config, config.step("sms"))
    sms = ledger(store, run_key, "sms")
    assert {p for p, (_, reason) in sms.items() if reason == "condition_not_met"} == {1, 2}
    # Everyone else came through the email step, including 7, whom email could not reach.
    assert {p for p, (status, _) in sms.items() if status == "pending"} == {3, 4, 5, 6, 7, 8}
    assert counted.sendable == 6 and counted.excluded == {"condition_not_met": 2}

    mark_sent(store, run_key, "sms")
    book(store, 3, datetime.now(timezone.utc) + timedelta(seconds=1))  # converted during the journey
    book(store, 4, datetime(2020, 1, 1, tzinfo=timezone.utc))          # booked long before: no conversion
    target_step(store, run_key, config, config.step("reminder"))
    reminder = ledger(store, run_key, "reminder")
    # 1 and 2 left the journey at the SMS step; 3 converted; 7 has no email consent.
    assert set(reminder) == {3, 4, 5, 6, 7, 8}
    assert reminder[3] == ("excluded", "condition_not_met")
    assert reminder[7] == ("excluded", "opted_out")
    assert {p for p, (status, _) in reminder.items() if status == "pending"} == {4, 5, 6, 8}

    funnel = {f.step_id: f for f in compute_funnel(store, run_key, config)}
    assert (funnel["mail"].entered, funnel["mail"].sent, funnel["mail"].opened, funnel["mail"].clicked) == (8, 7, 2, 1)
    assert (funnel["sms"].entered, funnel["sms"].condition_not_met, funnel["sms"].sent) == (8, 2, 6)
    assert (funnel["reminder"].entered, funnel["reminder"].condition_not_met) == (6, 1)
    assert funnel["sms"].converted == 1 and funnel["mail"].converted == 1


def test_a_wait_is_recorded_once_and_scaled(store, paths, people) -> None:
    config = journey()
    run_key = start(store, paths, config)
    now = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    entered, due = enter_wait(store, run_key, config.step("w1"), 0.001, now=now)
    assert (entered, due) == (now, now + timedelta(days=2) * 0.001)
    # A retried wait task keeps its first due time rather than starting over.
    assert enter_wait(store, run_key, config.step("w1"), 1.0, now=now + timedelta(hours=5)) == (entered, due)


# Saturday 28 March 2026, 20:00 UTC: Paris moves to summer time that night (DST).
BEFORE_DST = datetime(2026, 3, 28, 20, 0, tzinfo=timezone.utc)


def reach_morning_wait(store, paths: ProjectPaths) -> tuple[CampaignConfig, int, datetime]:
    """Send the first two steps and enter the wait until 09:00 at BEFORE_DST: (config, run, due)."""
    config = journey(until="09:00")
    run_key = start(store, paths, config)
    for step_id in ("mail", "sms"):
        target_step(store, run_key, config, config.step(step_id))
        mark_sent(store, run_key, step_id)
    _, due = enter_wait(store, run_key, config.step("w2"), 1.0, now=BEFORE_DST)
    return config, run_key, due


def test_a_wait_until_a_time_of_day_times_each_recipient_in_their_own_zone(store, paths, people) -> None:
    config, run_key, due = reach_morning_wait(store, paths)
    now = BEFORE_DST
    target_step(store, run_key, config, config.step("reminder"))
    timed = dict(store.execute(
        "SELECT profile_id, not_before FROM campaign.message WHERE run_key = %s AND step_id = 'reminder' "
        "AND status = 'pending'", (run_key,),
    ).fetchall())

    def next_nine(zone: str) -> datetime:
        tz = ZoneInfo(zone if zone != "Not/AZone" else "UTC")
        local = now.astimezone(tz)
        nine = local.replace(hour=9, minute=0, second=0, microsecond=0)
        if nine <= local:
            nine = (local + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
        return nine.astimezone(timezone.utc)

    assert timed == {p: next_nine(ZONES[p]) for p in timed} and set(timed) == {1, 2, 3, 4, 5, 6, 8}
    # Paris: 09:00 CEST on the Sunday after the change is 07:00 UTC, not 08:00.
    assert timed[1] == datetime(2026, 3, 29, 7, 0, tzinfo=timezone.utc)
    # The wait itself was due at the earliest of them: Sydney's 09:00 (22:00 UTC).
    assert due == min(timed.values()) == datetime(2026, 3, 28, 22, 0, tzinfo=timezone.utc)


def test_a_timed_message_is_not_claimed_before_its_time(store, paths, people, smtp_server) -> None:
    config, run_key, _ = reach_morning_wait(store, paths)
    step = config.step("reminder")
    sendable = target_step(store, run_key, config, step).sendable
    (batch,) = [Batch.from_xcom(b) for b in plan_batches(sendable, 100)]
    renderer, open_sender = build_channel(step, config, run_key, paths)

    def send_at(moment: datetime):
        return BatchSender(store_connection, run_key, step, renderer, open_sender, clock=lambda: moment).run(batch)

    early = send_at(datetime(2026, 3, 28, 23, 0, tzinfo=timezone.utc))  # only Sydney's 09:00 has passed
    assert early.sent == 1 and early.deferred == 6
    assert early.resume_at == datetime(2026, 3, 29, 0, 0, tzinfo=timezone.utc)  # Tokyo's 09:00 next
    late = send_at(datetime(2026, 3, 29, 17, 0, tzinfo=timezone.utc))
    assert late.sent == 6 and late.deferred == 0 and late.resume_at is None
    assert sorted(r for m in smtp_server.handler.messages for r in m.rcpt_tos) == sorted(
        f"u{i}@example.com" for i in (1, 2, 3, 4, 5, 6, 8)
    )


OUTCOMES = {  # profile ids whose email step outcome is ...
    "sent": {1, 2, 3, 4, 5, 6},
    "delivered": {1, 2},
    "opened": {1, 2, 3},    # 3 only clicked: a click is an open
    "clicked": {3},
    "bounced": {4},
    "complained": {5},
    "failed": {8},
    "excluded": {7},        # opted out of email
}


@pytest.mark.parametrize("outcome", sorted(OUTCOMES) + [f"not_{o}" for o in sorted(OUTCOMES)])
def test_every_outcome_selects_exactly_its_recipients(store, paths, people, outcome: str) -> None:
    base = journey()
    data = base.model_dump(mode="json", by_alias=True, exclude_none=True)
    data["steps"][2]["when"] = [{"step": "mail", "outcome": outcome}]
    config = CampaignConfig.model_validate(data)
    run_key = start(store, paths, config)
    target_step(store, run_key, config, config.step("mail"))
    store.execute("UPDATE campaign.message SET status = 'failed', reason = 'rejected' WHERE run_key = %s "
                  "AND step_id = 'mail' AND profile_id = 8", (run_key,))
    mark_sent(store, run_key, "mail")
    for profile_id, kind in [(1, "delivered"), (1, "opened"), (2, "delivered"), (2, "opened"), (3, "clicked"),
                             (4, "bounced"), (5, "complained")]:
        event(store, run_key, "mail", profile_id, kind)
    target_step(store, run_key, config, config.step("sms"))
    turned_away = {p for p, (_, reason) in ledger(store, run_key, "sms").items() if reason == "condition_not_met"}
    selected = OUTCOMES[outcome.removeprefix("not_")]
    expected = selected if outcome.startswith("not_") else set(ZONES) - selected
    assert turned_away == expected


def test_after_one_message_per_profile_a_later_step_sends_one_per_entity_again(store, paths, people) -> None:
    from campaign_orchestrator.audience.compile import AudienceQuery

    for booking_id, profile_id in [(11, 1), (12, 1), (21, 2), (31, 3)]:
        store.execute(
            "INSERT INTO crm.booking (booking_id, profile_id, product_id, status, booked_at, starts_on, amount) "
            "VALUES (%s, %s, 1, 'confirmed', now() - interval '1 day', current_date + 9, 10)", (booking_id, profile_id))
    config = CampaignConfig.model_validate({
        "id": "per_profile_then_entity", "schedule": "manual", "valid": {"start": "2026-01-01"},
        "audience": {"sql": "a/all.sql"},
        "steps": [
            {"id": "digest", "channel": "email", "template": "t", "sender": "S <s@shop.example>",
             "message_per": "profile"},
            {"id": "each", "channel": "sms", "template": "s", "message_per": "entity", "after": "digest"},
        ],
    })
    run_key = register_run(store, config.id, "r1", None, {})
    evaluate_audience(store, run_key, AudienceQuery(
        "SELECT profile_id, booking_id::text AS entity_key FROM crm.booking", {}, "bookings", True), None, None)
    target_step(store, run_key, config, config.step("digest"))
    assert sorted(store.execute("SELECT profile_id, entity_key FROM campaign.message WHERE run_key = %s "
                                "AND step_id = 'digest'", (run_key,)).fetchall()) == [(1, ""), (2, ""), (3, "")]
    target_step(store, run_key, config, config.step("each"))
    assert sorted(store.execute("SELECT profile_id, entity_key FROM campaign.message WHERE run_key = %s "
                                "AND step_id = 'each'", (run_key,)).fetchall()) == [
        (1, "11"), (1, "12"), (2, "21"), (3, "31")]
