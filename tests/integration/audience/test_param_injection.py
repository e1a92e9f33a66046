"""Audience parameters are bound, never pasted into SQL: quotes in them match literally.

Each case runs a real audience evaluation (compile, then ``INSERT … SELECT`` into the run's
snapshot) with a hostile value: from the campaign's ``audience.params``, from an on-demand
run's ``audience_params`` (the trigger form; ``<block>__<name>`` for a block), and in a
declarative block's ``where``. Afterwards ``crm.profile`` still has all its rows, and the
members are exactly the profiles whose column equals (or is LIKE) the value as written.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path
from typing import Any

import psycopg
import pytest

from campaign_orchestrator.audience.compile import compile_audience
from campaign_orchestrator.config.campaign import CampaignConfig
from campaign_orchestrator.paths import ProjectPaths
from campaign_orchestrator.run.audience import evaluate_audience
from campaign_orchestrator.run.runs import register_run
from tests.fixtures.store import add_profiles

pytestmark = pytest.mark.integration

DROP = "'; DROP TABLE crm.profile; --"
OR_TRUE = "x' OR '1'='1"
PERCENT = "100% off %(run_key)s"
RUNS = itertools.count()
NAMES = {1: "O'Hara", 2: DROP, 3: OR_TRUE, 4: PERCENT, 5: "Smith", 6: 'Say "hi"; --'}


@pytest.fixture
def project(tmp_path: Path) -> ProjectPaths:
    paths = ProjectPaths(tmp_path)
    (paths.sql / "audiences").mkdir(parents=True)
    (paths.sql / "audiences" / "by_name.sql").write_text(
        "SELECT profile_id FROM crm.profile WHERE last_name = %(last_name)s"
    )
    shutil.copy(ProjectPaths.discover().root / "include" / "entities.yaml", tmp_path / "include" / "entities.yaml")
    return paths


@pytest.fixture
def profiles(store: psycopg.Connection) -> psycopg.Connection:
    add_profiles(store, [{"profile_id": i, "email": f"p{i}@example.com", "last_name": name} for i, name in NAMES.items()])
    return store


def members(store: psycopg.Connection, paths: ProjectPaths, audience: dict[str, Any],
            overrides: dict[str, Any] | None = None) -> set[int]:
    config = CampaignConfig.model_validate({
        "id": "binding", "schedule": "manual", "valid": {"start": "2026-01-01"}, "audience": audience,
        "steps": [{"id": "mail", "channel": "email", "template": "t", "sender": "A <a@acme.example>"}],
    })
    run_key = register_run(store, config.id, f"run_{next(RUNS)}", None, {})  # a new run: a fresh snapshot
    evaluate_audience(store, run_key, compile_audience(config, paths, overrides), None, None)
    found = {row[0] for row in store.execute(
        "SELECT profile_id FROM campaign.audience_member WHERE run_key = %s", (run_key,))}
    # Whatever the value said, the table is whole.
    assert store.execute("SELECT count(*) FROM crm.profile").fetchone()[0] == len(NAMES)
    return found


@pytest.mark.parametrize("profile_id", sorted(NAMES))
def test_campaign_params_are_bound(profiles, project: ProjectPaths, profile_id: int) -> None:
    audience = {"sql": "audiences/by_name.sql", "params": {"last_name": NAMES[profile_id]}}
    assert members(profiles, project, audience) == {profile_id}


@pytest.mark.parametrize("value", [DROP, OR_TRUE, PERCENT])
def test_on_demand_audience_params_are_bound(profiles, project: ProjectPaths, value: str) -> None:
    """The trigger form's audience_params override the file's params, as values."""
    audience = {"sql": "audiences/by_name.sql", "params": {"last_name": "Smith"}}
    expected = {pid for pid, name in NAMES.items() if name == value}
    assert members(profiles, project, audience, {"last_name": value}) == expected


def test_block_params_and_their_overrides_are_bound(profiles, project: ProjectPaths) -> None:
    audience = {"blocks": {"named": {"sql": "audiences/by_name.sql", "params": {"last_name": "Smith"}}}}
    assert members(profiles, project, audience) == {5}
    assert members(profiles, project, audience, {"named__last_name": DROP}) == {2}
    assert members(profiles, project, audience, {"named__last_name": OR_TRUE}) == {3}


def test_declarative_block_values_are_bound(profiles, project: ProjectPaths) -> None:
    def block(condition: Any) -> dict[str, Any]:
        return {"blocks": {"who": {"from": "profile", "where": {"last_name": condition}}}}

    assert members(profiles, project, block(DROP)) == {2}
    assert members(profiles, project, block({"in": [OR_TRUE, "O'Hara", 'Say "hi"; --']})) == {1, 3, 6}
    assert members(profiles, project, block({"like": "%DROP TABLE%"})) == {2}
    assert members(profiles, project, block({"ne": OR_TRUE})) == set(NAMES) - {3}
