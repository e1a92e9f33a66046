"""Audience parameter overrides (`--param`, the trigger form's audience_params): a name that
sets nothing is an error with the valid names, a block's parameter goes by its own name."""

from __future__ import annotations

from pathlib import Path

import pytest

from campaign_orchestrator.audience.compile import UnknownAudienceParam, compile_audience, resolve_params
from campaign_orchestrator.config.campaign import CampaignConfig
from campaign_orchestrator.paths import ProjectPaths


@pytest.fixture
def paths(tmp_path: Path) -> ProjectPaths:
    sql = tmp_path / "include" / "sql" / "audiences"
    sql.mkdir(parents=True)
    (sql / "lapsed.sql").write_text("SELECT profile_id FROM crm.profile WHERE created_at < now() - make_interval(days => %(days)s)")
    (sql / "recent.sql").write_text("SELECT profile_id FROM crm.booking WHERE booked_at > now() - make_interval(days => %(days)s) AND amount > %(min_amount)s")
    (sql / "buyers.sql").write_text("SELECT profile_id FROM crm.booking GROUP BY 1 HAVING count(*) >= %(min_bookings)s")
    (tmp_path / "include" / "entities.yaml").write_text(
        "profile: profile\nentities:\n  profile: {table: crm.profile, key: profile_id}\n"
    )
    return ProjectPaths(tmp_path)


def campaign(audience: dict) -> CampaignConfig:
    return CampaignConfig.model_validate({
        "id": "params", "schedule": "manual", "valid": {"start": "2026-01-01"}, "audience": audience,
        "steps": [{"id": "mail", "channel": "email", "template": "t", "sender": "W <w@w.example>"}],
    })


SQL_AUDIENCE = {"sql": "audiences/buyers.sql", "params": {"min_bookings": 1}}
BLOCKS = {"blocks": {"lapsed": {"sql": "audiences/lapsed.sql", "params": {"days": 90}},
                     "everyone": {"from": "profile"}},
          "combine": {"union": ["everyone"], "exclude": ["lapsed"]}}


def test_an_unknown_name_is_an_error_with_did_you_mean(paths):
    with pytest.raises(UnknownAudienceParam, match=r"'min_bokings'; did you mean 'min_bookings'\? .* has: min_bookings"):
        resolve_params(campaign(SQL_AUDIENCE), paths, {"min_bokings": 3})
    with pytest.raises(UnknownAudienceParam, match=r"unknown audience parameter 'no_such_param'"):
        compile_audience(campaign(SQL_AUDIENCE), paths, {"no_such_param": 5})


def test_a_known_name_of_an_sql_audience_is_bound(paths):
    query = compile_audience(campaign(SQL_AUDIENCE), paths, {"min_bookings": 3})
    assert query.params == {"min_bookings": 3}


def test_a_plain_name_one_block_uses_applies_to_that_block(paths):
    query = compile_audience(campaign(BLOCKS), paths, {"days": 1})
    assert query.params["lapsed__days"] == 1
    assert resolve_params(campaign(BLOCKS), paths, {"lapsed__days": 7}) == {"lapsed__days": 7}


def test_a_name_several_blocks_use_must_say_which(paths):
    both = {"blocks": {"lapsed": {"sql": "audiences/lapsed.sql", "params": {"days": 90}},
                       "recent": {"sql": "audiences/recent.sql", "params": {"days": 30, "min_amount": 10}}}}
    with pytest.raises(UnknownAudienceParam, match=r"'days' is used by blocks lapsed, recent: say which, e\.g\. lapsed__days"):
        resolve_params(campaign(both), paths, {"days": 1})
    assert resolve_params(campaign(both), paths, {"recent__days": 1, "min_amount": 5}) == {
        "recent__days": 1, "recent__min_amount": 5
    }
    with pytest.raises(UnknownAudienceParam, match=r"did you mean 'lapsed__days'"):
        resolve_params(campaign(both), paths, {"lapsed__dayz": 1})


def test_an_audience_without_parameters_says_so(paths):
    with pytest.raises(UnknownAudienceParam, match=r"none \(its audience takes no parameters\)"):
        resolve_params(campaign({"blocks": {"everyone": {"from": "profile"}}}), paths, {"days": 1})
