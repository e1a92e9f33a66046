"""PostgreSQL's error positions, mapped back to the user's own file: through psycopg's
placeholder numbering (``%(days)s`` is sent as ``$1``) and through the wrapper that splices
a block's SQL into the audience statement."""

from __future__ import annotations

from pathlib import Path

import pytest

from campaign_orchestrator.config.campaign import CampaignConfig
from campaign_orchestrator.paths import ProjectPaths
from campaign_orchestrator.run.checks import check_campaign_in_store

pytestmark = pytest.mark.integration

ROOT = ProjectPaths.discover().root
SQL = """-- recent bookers
SELECT b.profile_id
FROM crm.booking AS b
WHERE b.booked_at > now() - make_interval(days => %(days)s::integer)
  AND b.amount >= %(min_amount)s AND %(min_amount)s >= 0
  AND b.no_such_column = 1
"""
LINE, COLUMN = 6, SQL.splitlines()[5].index("b.no_such_column") + 1


@pytest.fixture
def paths(tmp_path: Path) -> ProjectPaths:
    (tmp_path / "include" / "sql" / "audiences").mkdir(parents=True)
    (tmp_path / "include" / "sql" / "audiences" / "recent.sql").write_text(SQL)
    (tmp_path / "include" / "entities.yaml").write_text((ROOT / "include" / "entities.yaml").read_text())
    (tmp_path / "include" / "templates").mkdir()
    return ProjectPaths(tmp_path)


def campaign(audience: dict) -> CampaignConfig:
    return CampaignConfig.model_validate({
        "id": "positions", "schedule": "manual", "audience": audience,
        "steps": [{"id": "mail", "channel": "email", "template": "t", "sender": "W <w@w.example>"}],
    })


def test_an_sql_audience_error_is_at_its_line_and_column_despite_placeholders(store, paths):
    config = campaign({"sql": "audiences/recent.sql", "params": {"days": 30, "min_amount": 10}})
    problems = [p for p in check_campaign_in_store(store, config, paths) if "rejected" in p]
    assert problems == [
        f"audience: {paths.sql / 'audiences/recent.sql'}:{LINE}:{COLUMN}: PostgreSQL rejected the audience SQL: "
        'column b.no_such_column does not exist'
    ]


def test_an_sql_block_error_is_at_its_own_files_line_and_column(store, paths):
    config = campaign({
        "blocks": {
            "everyone": {"from": "profile"},
            "recent": {"sql": "audiences/recent.sql", "params": {"days": 30, "min_amount": 10}},
        },
        "combine": {"union": ["everyone"], "exclude": ["recent"]},
    })
    problems = [p for p in check_campaign_in_store(store, config, paths) if "rejected" in p]
    assert problems == [
        f"audience: {paths.sql / 'audiences/recent.sql'}:{LINE}:{COLUMN}: PostgreSQL rejected block recent: "
        'column b.no_such_column does not exist'
    ]
