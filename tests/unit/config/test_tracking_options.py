"""Per-step tracking options and conditions that may count machine opens."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from campaign_orchestrator.config.channels import EmailStep
from campaign_orchestrator.config.steps import Condition

BASE = {"id": "offer", "channel": "email", "template": "t", "sender": "a@b.example"}


@pytest.mark.parametrize(
    ("given", "opens", "clicks"),
    [
        ({}, True, True),
        ({"purpose": "transactional"}, False, False),
        ({"purpose": "transactional", "tracking": True}, True, True),
        ({"tracking": False}, False, False),
        ({"tracking": {"opens": False}}, False, True),
        ({"tracking": {"clicks": False}}, True, False),
    ],
)
def test_tracking_defaults_and_shorthands(given: dict, opens: bool, clicks: bool) -> None:
    tracks = EmailStep(**BASE, **given).tracks
    assert (tracks.opens, tracks.clicks) == (opens, clicks)


def test_unknown_tracking_option_is_refused() -> None:
    with pytest.raises(ValidationError, match="links"):
        EmailStep(**BASE, tracking={"links": True})


@pytest.mark.parametrize("outcome", ["opened", "clicked", "not_opened", "not_clicked"])
def test_include_machine_on_opens_and_clicks(outcome: str) -> None:
    condition = Condition(step="offer", outcome=outcome, include_machine=True)
    assert condition.describe().endswith("(machine opens included)")
    assert not Condition(step="offer", outcome=outcome).include_machine


@pytest.mark.parametrize("given", [{"step": "offer", "outcome": "sent"}, {"converted": True}])
def test_include_machine_elsewhere_is_refused(given: dict) -> None:
    with pytest.raises(ValidationError, match="include_machine applies to the outcomes opened"):
        Condition(**given, include_machine=True)
