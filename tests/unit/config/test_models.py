"""Campaign models: split by rules, the audience's entity type, message_per options."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from campaign_orchestrator.config.base import parse_order_by

from campaign_orchestrator.config.campaign import CampaignConfig

EMAIL = {"id": "mail", "channel": "email", "template": "winter_sale", "sender": "W <w@w.example>"}
BOOKINGS = {"from": "booking", "entity_key": "booking"}


def campaign(audience: dict[str, Any], **step: Any) -> CampaignConfig:
    return CampaignConfig.model_validate({
        "id": "c", "schedule": "manual", "valid": {"start": "2026-01-01"}, "audience": audience,
        "steps": [{**EMAIL, **step}],
    })


def test_split_rules_route_steps_by_segment() -> None:
    rules = [
        {"segment": "gold", "where": {"tier": "gold", "subscription.status": "active"}},
        {"segment": "top_spenders", "top": 1000, "order_by": "lifetime_value desc"},
        {"segment": "rest"},
    ]
    config = campaign({"blocks": {"b": BOOKINGS}, "split": {"rules": rules}}, segment="top_spenders")
    assert config.audience.split is not None
    assert config.audience.split.segment_names == ["gold", "top_spenders", "rest"]
    assert [r.catch_all for r in config.audience.split.rules or []] == [False, False, True]


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ({"rules": [{"segment": "rest"}, {"segment": "gold", "where": {"tier": "gold"}}]},
         r"rules\[0\]: segment 'rest' has no where and no top, so it takes everyone left; only the last rule"),
        ({"rules": [{"segment": "a", "where": {"x": 1}}, {"segment": "a", "where": {"y": 1}}]},
         r"rules\[1\]: segment 'a' is already taken"),
        ({"rules": [{"segment": "a", "top": 5}]}, "top needs order_by"),
        ({"rules": [{"segment": "a", "top": 0, "order_by": "x"}]}, "greater than or equal to 1"),
        ({"rules": [{"segment": "a", "order_by": "x"}]}, "order_by only orders a top rule"),
        ({"rules": [{"segment": "a", "top": 5, "order_by": "x; DROP TABLE y"}]}, "is not 'column'"),
        ({"rules": [{"segment": "A b"}]}, "should match pattern"),
        ({"rules": [{"segment": "a", "where": {"tier": {"lots": 1}}}]}, "must be one operator"),
        ({"segments": {"a": 50, "b": 50}, "rules": [{"segment": "a"}]}, "either segments .* or rules"),
        ({}, "either segments .* or rules"),
    ],
)
def test_bad_split_rules_say_what_is_wrong(split: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        campaign({"blocks": {"b": BOOKINGS}, "split": split})


def test_a_step_may_only_name_a_rule_segment() -> None:
    split = {"rules": [{"segment": "gold", "where": {"tier": "gold"}}, {"segment": "rest"}]}
    with pytest.raises(ValidationError, match=r"steps\[0\].segment: unknown segment 'silver'; audience.split has gold, rest"):
        campaign({"blocks": {"b": BOOKINGS}, "split": split}, segment="silver")


def test_percent_splits_still_work() -> None:
    config = campaign({"blocks": {"b": BOOKINGS}, "split": {"segments": {"a": 30, "b": 70}}}, segment="b")
    assert config.audience.split is not None and config.audience.split.segment_names == ["a", "b"]


def test_order_by_parses_columns_and_directions() -> None:
    assert parse_order_by("lifetime_value desc, created_at") == [("lifetime_value", True), ("created_at", False)]
    assert parse_order_by("starts_on ASC") == [("starts_on", False)]
    with pytest.raises(ValueError, match="'booking.amount' is not 'column'"):
        parse_order_by("booking.amount")


def test_the_entity_type_is_inferred_from_the_union_blocks() -> None:
    assert campaign({"blocks": {"b": BOOKINGS}}).audience.entity_type() == "booking"
    assert campaign({"blocks": {"p": {"from": "profile"}}}).audience.entity_type() is None
    given = campaign({"blocks": {"s": {"sql": "audiences/by_ids.sql", "returns_entity_key": True}}, "entity": "booking"})
    assert given.audience.entity_type() == "booking"
    # an intersect block matches by profile: its entity does not mix into the keys
    mixed = {"b": BOOKINGS, "s": {"from": "subscription", "entity_key": "subscription"}}
    config = campaign({"blocks": mixed, "combine": {"union": ["b"], "intersect": ["s"]}})
    assert config.audience.entity_type() == "booking"


def test_blocks_keyed_by_different_entities_or_disagreeing_with_entity_are_rejected() -> None:
    mixed = {"b": BOOKINGS, "s": {"from": "subscription", "entity_key": "subscription"}}
    with pytest.raises(ValidationError, match=r"entity_key names different entities \(b: booking, s: subscription\)"):
        campaign({"blocks": mixed})
    with pytest.raises(ValidationError, match="entity: 'product', but the blocks' entity_key is 'booking'"):
        campaign({"blocks": {"b": BOOKINGS}, "entity": "product"})


def test_entities_options_need_message_per_profile() -> None:
    config = campaign({"blocks": {"b": BOOKINGS}}, message_per="profile", entities_order_by="starts_on desc",
                      max_entities=5)
    step = config.steps[0]
    assert (step.message_per, step.entities_order_by, step.max_entities) == ("profile", "starts_on desc", 5)
    with pytest.raises(ValidationError, match="entities_order_by and max_entities shape the `entities` list"):
        campaign({"blocks": {"b": BOOKINGS}}, max_entities=3)
    with pytest.raises(ValidationError, match="is not 'column'"):
        campaign({"blocks": {"b": BOOKINGS}}, message_per="profile", entities_order_by="starts_on sideways")
    with pytest.raises(ValidationError, match="message_per"):
        campaign({"blocks": {"b": BOOKINGS}}, message_per="booking")
