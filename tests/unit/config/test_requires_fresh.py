"""``requires_fresh``: store tables and the age their data may have, checked before any DAG."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from campaign_orchestrator.config.loader import load_campaigns
from campaign_orchestrator.paths import ProjectPaths

ROOT = Path(__file__).resolve().parents[3]


def load_with(tmp_path: Path, requires_fresh) -> tuple:
    data = yaml.safe_load((ROOT / "dags" / "campaigns" / "winter_sale.yaml").read_text())
    data["requires_fresh"] = requires_fresh
    (tmp_path / "winter_sale.yaml").write_text(yaml.safe_dump(data))
    result = load_campaigns(tmp_path, ProjectPaths.discover())
    return result.configs.get("winter_sale"), [e.render() for e in result.errors]


def test_ages_per_table(tmp_path: Path) -> None:
    (path, config), errors = load_with(tmp_path, {"crm.booking": "2h", "crm.consent": 900})
    assert not errors
    assert config.requires_fresh == {"crm.booking": timedelta(hours=2), "crm.consent": timedelta(minutes=15)}


@pytest.mark.parametrize(("value", "message"), [
    ({"booking": "2h"}, "requires_fresh: 'booking' must be schema.table, e.g. crm.booking"),
    ({"crm.booking": "soon"}, "requires_fresh: 'soon' is not a duration"),
    ({"crm.booking": "0s"}, "requires_fresh: crm.booking: the age must be more than 0"),
    (["crm.booking"], "requires_fresh: a mapping of store tables to the age their data may have"),
])
def test_mistakes_are_named(tmp_path: Path, value, message: str) -> None:
    config, errors = load_with(tmp_path, value)
    assert config is None and len(errors) == 1 and message in errors[0], errors
