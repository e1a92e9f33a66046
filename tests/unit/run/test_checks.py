"""`campaigns validate` without a store: what a newcomer's mistakes look like, every one
reported, each pointing at the user's own file, line and column."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from campaign_orchestrator.cli import main

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    shutil.copytree(ROOT / "include", root / "include")
    shutil.copytree(ROOT / "dags" / "campaigns", root / "dags" / "campaigns")
    monkeypatch.setenv("CAMPAIGNS_HOME", str(root))
    return root


def validate(capsys) -> str:
    assert main(["validate"]) == 1
    return capsys.readouterr().err


def test_profile_fields_are_checked_against_the_migrations_columns(project: Path, capsys) -> None:
    (project / "include/templates/winter_sale/subject.txt").write_text("Hi {{ profile.frist_name }}")
    err = validate(capsys)
    assert "winter_sale uses profile.frist_name, but crm.profile has no column 'frist_name' " in err
    assert "(did you mean 'first_name'?) (as include/sql/migrations/ declare it)" in err


def test_a_column_a_migration_adds_is_known(project: Path, capsys) -> None:
    folder = project / "include/templates/winter_sale"
    for subject in [folder / "subject.txt", *folder.glob("*/subject.txt")]:  # every locale variant alike
        subject.write_text("Hi {{ profile.loyalty_tier }}")
    assert "profile.loyalty_tier" in validate(capsys)
    (project / "include/sql/migrations/0900_loyalty.sql").write_text(
        "ALTER TABLE crm.profile ADD COLUMN loyalty_tier text;\n"
    )
    assert main(["validate"]) == 0


def test_every_template_error_is_reported_not_only_the_first(project: Path, capsys) -> None:
    folder = project / "include/templates/winter_sale"
    (folder / "subject.txt").write_text("{{ profle.first_name }} {{ campain.id }}")
    (folder / "body.txt").write_text("Hello\n{{ profile }}\n{% if %}")  # a syntax error too
    (folder / "body.html").write_text("<p>{{ profile.frist_name }}</p>")
    err = validate(capsys)
    assert "winter_sale/subject.txt:1: unknown name 'campain'; did you mean 'campaign'?" in err
    assert "winter_sale/subject.txt:1: unknown name 'profle'; did you mean 'profile'?" in err
    assert "winter_sale/body.txt:3: " in err  # the syntax error, at its line
    assert "profile.frist_name" in err  # body.html still checked


def test_an_unknown_entity_in_a_block_says_so_with_did_you_mean(project: Path, capsys) -> None:
    config = project / "dags/campaigns/low_stock_alert.yaml"
    config.write_text(config.read_text().replace("from: booking", "from: bookng"))
    assert "audience.blocks.upcoming: unknown entity 'bookng'; did you mean 'booking'?" in validate(capsys)


def test_every_broken_block_is_reported(project: Path, capsys) -> None:
    config = project / "dags/campaigns/low_stock_alert.yaml"
    text = config.read_text().replace("from: booking", "from: bookng").replace("from: inventory", "from: inventry")
    config.write_text(text)
    err = validate(capsys)
    assert "audience.blocks.upcoming: unknown entity 'bookng'" in err
    assert "audience.blocks.low_stock_bookings: unknown entity 'inventry'; did you mean 'inventory'?" in err


def test_an_sql_syntax_error_points_at_the_users_own_line_and_column(project: Path, capsys) -> None:
    sql = project / "include/sql/audiences/winter_sale.sql"
    lines = sql.read_text().splitlines()
    # After two placeholders (which psycopg would send as $1, $2), a doubled comparison.
    at = next(i for i, line in enumerate(lines) if line.startswith("HAVING"))
    lines[at] = "HAVING count(*) >= >= %(min_bookings)s::integer"
    sql.write_text("\n".join(lines) + "\n")
    err = validate(capsys)
    column = lines[at].index(">= >=") + 4
    assert f"winter_sale.sql:{at + 1}:{column}: PostgreSQL's parser rejected it: syntax error at or near \">=\"" in err


def test_an_sql_file_that_is_not_one_select_says_so(project: Path, capsys) -> None:
    (project / "include/sql/audiences/winter_sale.sql").write_text(
        "DELETE FROM crm.profile WHERE %(min_bookings)s > 0 AND %(lookback_days)s > 0"
    )
    assert "must be one SELECT statement (found DELETE)" in validate(capsys)
