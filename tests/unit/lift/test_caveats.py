"""Which steps' groups are a randomised comparison, and the lift table's wording."""

from __future__ import annotations

from datetime import timedelta

from campaign_orchestrator.config.loader import load_campaigns
from campaign_orchestrator.lift.compute import _caveat
from campaign_orchestrator.lift.format import duration_text, points, signed_percent
from campaign_orchestrator.paths import ProjectPaths


def shipped(campaign_id: str):
    paths = ProjectPaths.discover()
    return load_campaigns(paths.campaigns, paths).configs[campaign_id][1]


def test_only_steps_after_a_condition_are_not_randomised() -> None:
    journey = shipped("winter_sale_journey")
    turned_away = {"sms_to_non_openers": 1234, "push_to_non_bookers": 56}
    assert _caveat(journey, "sale_email", turned_away) == ""
    # Its own condition (not opened) turned treated members away, but they still count as
    # treated here, like the held out who skipped it.
    assert _caveat(journey, "sms_to_non_openers", turned_away) == ""
    caveat = _caveat(journey, "push_to_non_bookers", turned_away)
    assert caveat.startswith("not a randomised comparison: the conditions of sms_to_non_openers (1,234) turned")
    # A condition that turned no one away selected no one.
    assert _caveat(journey, "push_to_non_bookers", {"sms_to_non_openers": 0}) == ""


def test_segments_drawn_by_rules_are_not_randomised() -> None:
    low_stock = shipped("low_stock_alert")
    assert "segment subscribers was chosen by rules" in _caveat(low_stock, "invite_email", {})
    assert "the whole campaign's row is randomised" in _caveat(low_stock, "digest_email", {})


def test_numbers_read_as_a_campaign_file_and_a_marketer_write_them() -> None:
    assert [duration_text(timedelta(days=7)), duration_text(timedelta(hours=36)), duration_text(timedelta(seconds=90))] == [
        "7d", "36h", "90s"]
    assert (points(0.0201), signed_percent(-0.0034), signed_percent(float("inf"))) == ("+2.01 pp", "-0.3%", "∞")
