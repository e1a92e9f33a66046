"""The conversion table of a campaign: its window and amount column, checked before any DAG."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from campaign_orchestrator.config.campaign import CampaignConfig, Conversion


def test_the_window_defaults_to_a_week_and_takes_durations() -> None:
    assert Conversion(table="crm.booking").window == timedelta(days=7)
    assert Conversion(table="crm.booking", window="48h").window == timedelta(hours=48)
    assert Conversion(table="crm.booking", window="P2D").window == timedelta(days=2)  # as a dumped config writes it


@pytest.mark.parametrize("window, message", [
    ("0d", "longer than 0 and at most 365d"),
    ("400d", "longer than 0 and at most 365d"),
    ("soon", "'soon' is not a duration"),
])
def test_a_bad_window_says_what_is_valid(window: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Conversion(table="crm.booking", window=window)


def test_the_amount_column_is_an_identifier() -> None:
    assert Conversion(table="crm.booking", amount_column="amount").amount_column == "amount"
    with pytest.raises(ValidationError, match="amount_column"):
        Conversion(table="crm.booking", amount_column="amount; drop table x")


def test_the_shipped_journey_has_a_holdout_and_a_revenue_window() -> None:
    from campaign_orchestrator.config.loader import load_campaigns
    from campaign_orchestrator.paths import ProjectPaths

    paths = ProjectPaths.discover()
    configs = load_campaigns(paths.campaigns, paths).configs
    journey: CampaignConfig = configs["winter_sale_journey"][1]
    assert journey.audience.holdout is not None and journey.conversion.amount_column == "amount"
    low_stock: CampaignConfig = configs["low_stock_alert"][1]
    assert low_stock.audience.holdout is not None and low_stock.conversion is not None
