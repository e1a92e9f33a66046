"""Quiet hours in the recipient's time zone, with a clock the test sets (DST change included)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest

from campaign_orchestrator.channels.factory import build_channel
from campaign_orchestrator.config.campaign import CampaignConfig
from campaign_orchestrator.paths import ProjectPaths
from campaign_orchestrator.run.audience import evaluate_audience
from campaign_orchestrator.run.policies import QuietHours
from campaign_orchestrator.run.runs import register_run
from campaign_orchestrator.run.send import Batch, BatchSender
from campaign_orchestrator.run.targeting import plan_batches, target_step
from campaign_orchestrator.store.connect import store_connection
from tests.fixtures.store import add_profiles

pytestmark = pytest.mark.integration

ZONES = {1: "Europe/Paris", 2: "America/New_York", 3: "Asia/Tokyo", 4: "Not/AZone"}


@pytest.fixture
def run(store, tmp_path: Path, smtp_server):
    paths = ProjectPaths(tmp_path)
    (paths.sql / "a").mkdir(parents=True)
    (paths.sql / "a" / "all.sql").write_text("SELECT profile_id FROM crm.profile")
    (paths.templates / "t").mkdir(parents=True)
    for part in ("subject.txt", "body.txt", "body.html"):
        (paths.templates / "t" / part).write_text("Hi {{ profile.first_name }}")
    add_profiles(store, [{"profile_id": i, "email": f"u{i}@example.com", "first_name": "A", "time_zone": tz,
                          "consent": {"email": "opted_in"}} for i, tz in ZONES.items()])
    config = CampaignConfig.model_validate({
        "id": "quiet", "schedule": "manual", "valid": {"start": "2026-01-01"}, "audience": {"sql": "a/all.sql"},
        "steps": [{"id": "mail", "channel": "email", "template": "t", "sender": "S <s@shop.example>",
                   "connection_id": "smtp_test", "purpose": "transactional"}],
    })
    run_key = register_run(store, config.id, "r1", None, {})
    evaluate_audience(store, run_key, paths.sql / "a" / "all.sql", {}, None)
    sendable = target_step(store, run_key, config, config.steps[0]).sendable
    (batch,) = [Batch.from_xcom(b) for b in plan_batches(sendable, 100)]
    renderer, open_sender = build_channel(config.steps[0], config, run_key, paths)

    def send_at(moment: datetime, rule: QuietHours):
        sender = BatchSender(store_connection, run_key, config.steps[0], renderer, open_sender,
                             quiet_hours=[rule], clock=lambda: moment)
        return sender.run(batch)

    return send_at


def received(smtp_server) -> set[str]:
    return {r for m in smtp_server.handler.messages for r in m.rcpt_tos}


NIGHT = QuietHours(channels=["email"], start="21:00", end="08:00", fallback="defer")


def test_deferred_messages_go_out_when_each_recipients_night_ends(run, smtp_server, store) -> None:
    # 01:30 UTC on the day Paris moves to summer time: Paris 03:30, New York 21:30 (the day
    # before), Tokyo 10:30, and an invalid zone counts as UTC (01:30).
    stats = run(datetime(2026, 3, 29, 1, 30, tzinfo=timezone.utc), NIGHT)
    assert received(smtp_server) == {"u3@example.com"} and stats.deferred == 3
    # 06:30 UTC: Paris is 08:30 in summer time (07:30 if DST were ignored), New York 02:30.
    stats = run(datetime(2026, 3, 29, 6, 30, tzinfo=timezone.utc), NIGHT)
    assert received(smtp_server) == {"u3@example.com", "u1@example.com"} and stats.deferred == 2
    # 13:00 UTC: New York 09:00, UTC 13:00.
    stats = run(datetime(2026, 3, 29, 13, 0, tzinfo=timezone.utc), NIGHT)
    assert received(smtp_server) == {f"u{i}@example.com" for i in ZONES} and stats.deferred == 0
    assert len(smtp_server.handler.messages) == 4


def test_discarded_messages_are_excluded_and_counted(run, smtp_server, store) -> None:
    discard = QuietHours(channels=["email"], start="21:00", end="08:00", fallback="discard")
    run(datetime(2026, 3, 29, 1, 30, tzinfo=timezone.utc), discard)
    assert received(smtp_server) == {"u3@example.com"}
    reasons = Counter(r for (r,) in store.execute(
        "SELECT reason FROM campaign.message WHERE status = 'excluded'").fetchall())
    assert reasons == Counter({"quiet_hours": 3})
