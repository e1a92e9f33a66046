"""Campaign config validation: every error names the file, the line, the field and a fix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from campaign_orchestrator.config.loader import load_campaigns
from campaign_orchestrator.paths import ProjectPaths

VALID = """
id: spring_sale
description: Spring offers for recent bookers
owner: crm-team
tags: [promo]
schedule: "0 9 * * 1"
timezone: Europe/Paris
valid: {start: 2026-03-01, end: 2026-05-31}
audience:
  sql: audiences/recent.sql
  params: {days: 30}
steps:
  - id: offer
    channel: email
    template: spring
    sender: "Acme <news@acme.example>"
"""


@pytest.fixture
def project(tmp_path: Path) -> ProjectPaths:
    paths = ProjectPaths(tmp_path)
    (paths.sql / "audiences").mkdir(parents=True)
    (paths.sql / "audiences" / "recent.sql").write_text("SELECT profile_id FROM crm.profile")
    folder = paths.templates / "spring"
    folder.mkdir(parents=True)
    for part in ("subject.txt", "body.html", "body.txt"):
        (folder / part).write_text("Hi {{ profile.first_name }}")
    (tmp_path / "dags" / "campaigns").mkdir(parents=True)
    return paths


def write(paths: ProjectPaths, name: str, text: str) -> Path:
    path = paths.root / "dags" / "campaigns" / name
    path.write_text(textwrap.dedent(text))
    return path


def load(paths: ProjectPaths):
    return load_campaigns(paths.root / "dags" / "campaigns", paths)


def only_error(paths: ProjectPaths) -> str:
    result = load(paths)
    assert len(result.errors) == 1, result.errors
    return result.errors[0].render()


def test_valid_config_loads_with_defaults_merged(project: ProjectPaths) -> None:
    write(project, "_defaults.yaml", "batch_size: 250\nretries: 5\nretry_delay: 90s\nowner: default-owner\n")
    write(project, "spring_sale.yaml", VALID)
    result = load(project)
    assert result.ok
    _, config = result.configs["spring_sale"]
    assert config.batch_size == 250 and config.retries == 5
    assert config.retry_delay.total_seconds() == 90
    assert config.owner == "crm-team"  # the campaign's own value wins over the default
    assert config.schedule.cron == "0 9 * * 1"
    assert config.steps[0].purpose == "marketing" and config.steps[0].consent == "opt_in"


def test_id_defaults_to_the_file_name(project: ProjectPaths) -> None:
    write(project, "autumn.yaml", VALID.replace("id: spring_sale\n", ""))
    assert set(load(project).configs) == {"autumn"}


def test_typo_in_a_field_suggests_the_right_name_with_line(project: ProjectPaths) -> None:
    path = write(project, "spring_sale.yaml", VALID.replace("batch_size", "x").replace("owner:", "ownr:"))
    message = only_error(project)
    assert f"{path}:4: ownr: unknown field 'ownr'; did you mean 'owner'?" in message


def test_typo_inside_a_step_names_the_step_path(project: ProjectPaths) -> None:
    write(project, "spring_sale.yaml", VALID.replace("    sender:", "    sendr:"))
    message = only_error(project)
    assert "steps[0].sendr: unknown field 'sendr'; did you mean 'sender'?" in message
    assert "steps[0].sender: required field is missing" in message


def test_unknown_channel_lists_valid_channels(project: ProjectPaths) -> None:
    write(project, "spring_sale.yaml", VALID.replace("channel: email", "channel: fax"))
    message = only_error(project)
    assert "steps[0]" in message and "'fax'" in message and "'email'" in message


def test_missing_sql_file_is_named(project: ProjectPaths) -> None:
    write(project, "spring_sale.yaml", VALID.replace("audiences/recent.sql", "audiences/missing.sql"))
    message = only_error(project)
    assert "audience.sql: file not found" in message and "missing.sql" in message


def test_missing_template_part_is_named(project: ProjectPaths) -> None:
    (project.templates / "spring" / "body.txt").unlink()
    write(project, "spring_sale.yaml", VALID)
    assert "steps[0].template: template 'spring' lacks body.txt" in only_error(project)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ('"0 9 * *"', "is not a five-field cron expression"),
        ("'@fortnightly'", "unknown preset '@fortnightly'"),
        ("{once: 2026-12-01T09:00:00, cron: '@daily'}", "give exactly one of"),
    ],
)
def test_bad_schedules_say_what_is_valid(project: ProjectPaths, schedule: str, expected: str) -> None:
    write(project, "spring_sale.yaml", VALID.replace('"0 9 * * 1"', schedule))
    assert expected in only_error(project)


def test_schedule_shorthands(project: ProjectPaths) -> None:
    write(project, "a.yaml", VALID.replace("id: spring_sale", "id: a").replace('"0 9 * * 1"', "manual"))
    write(project, "b.yaml", VALID.replace("id: spring_sale", "id: b").replace('"0 9 * * 1"', "{once: 2026-12-01T09:00:00}"))
    write(project, "c.yaml", VALID.replace("id: spring_sale", "id: c").replace('"0 9 * * 1"', "'@daily'"))
    configs = load(project).configs
    assert configs["a"][1].schedule.manual
    assert configs["b"][1].schedule.once.hour == 9
    assert configs["c"][1].schedule.cron == "@daily"


def test_bad_timezone_and_window(project: ProjectPaths) -> None:
    text = VALID.replace("Europe/Paris", "Mars/Olympus").replace("end: 2026-05-31", "end: 2026-01-01")
    write(project, "spring_sale.yaml", text)
    message = only_error(project)
    assert "timezone: 'Mars/Olympus' is not an IANA time zone" in message
    assert "valid.end is before valid.start" in message


def test_broken_yaml_reports_the_line(project: ProjectPaths) -> None:
    path = write(project, "spring_sale.yaml", "id: x\nsteps: [\n  oops: : :\n")
    assert only_error(project).startswith(f"{path}:")


def test_duplicate_ids_are_rejected(project: ProjectPaths) -> None:
    write(project, "one.yaml", VALID)
    write(project, "two.yaml", VALID)
    result = load(project)
    assert set(result.configs) == {"spring_sale"}
    assert "'spring_sale' is already used by" in result.errors[0].render()


def test_one_broken_file_does_not_hide_the_others(project: ProjectPaths) -> None:
    write(project, "good.yaml", VALID.replace("id: spring_sale", "id: good"))
    write(project, "bad.yaml", VALID.replace("id: spring_sale", "id: bad").replace("batch_size", "").replace("owner", "0wner"))
    result = load(project)
    assert set(result.configs) == {"good"}
    assert [e.campaign_id for e in result.errors] == ["bad"]


def test_duplicate_step_ids_and_bad_sender(project: ProjectPaths) -> None:
    text = VALID + "  - id: offer\n    channel: email\n    template: spring\n    sender: not-an-address\n"
    write(project, "spring_sale.yaml", text)
    message = only_error(project)
    assert "'not-an-address' is not an email address" in message


def test_asset_schedules_reference_existing_campaigns_without_cycles(project: ProjectPaths) -> None:
    write(project, "a.yaml", VALID.replace("id: spring_sale", "id: a").replace('"0 9 * * 1"', "{after: [b]}"))
    write(project, "b.yaml", VALID.replace("id: spring_sale", "id: b").replace('"0 9 * * 1"', "{after: [c]}"))
    write(project, "c.yaml", VALID.replace("id: spring_sale", "id: c").replace('"0 9 * * 1"', "{after: [a]}"))
    write(project, "d.yaml", VALID.replace("id: spring_sale", "id: d").replace('"0 9 * * 1"', "{after: [zz]}"))
    write(project, "e.yaml", VALID.replace("id: spring_sale", "id: e").replace('"0 9 * * 1"',
                                                                             "{on_data: [crm.booking]}"))
    result = load(project)
    assert set(result.configs) == {"e"}
    messages = {e.campaign_id: e.render() for e in result.errors}
    assert "schedule.after: a cycle: a -> b -> c -> a" in messages["a"]
    assert "schedule.after: unknown campaign 'zz'" in messages["d"]


def test_parsing_context_loads_only_the_campaign_asked_for(project: ProjectPaths) -> None:
    folder = project.root / "dags" / "campaigns"
    write(project, "spring.yaml", VALID)
    write(project, "escaped.yaml", VALID.replace("id: spring_sale", 'id: "autumn\\u005fsale"'))
    write(project, "Broken-File.yaml", "id: [unclosed\n")
    write(project, "other.yaml", "description: [unclosed\n")

    spring = load_campaigns(folder, project, only_id="spring_sale")
    assert list(spring.configs) == ["spring_sale"] and spring.errors == []
    # An id spelled with an escape is still found.
    assert list(load_campaigns(folder, project, only_id="autumn_sale").configs) == ["autumn_sale"]
    # A broken file is found by the id its error carries (from the file name), for its placeholder DAG.
    broken = load_campaigns(folder, project, only_id="broken_file")
    assert broken.configs == {} and [e.campaign_id for e in broken.errors] == ["broken_file"]
    assert [e.campaign_id for e in load_campaigns(folder, project, only_id="other").errors] == ["other"]


def test_an_empty_file_says_so(project: ProjectPaths) -> None:
    path = write(project, "empty.yaml", "")
    assert only_error(project) == f"{path}: (file): file is empty; it must be a mapping of campaign fields"
    write(project, "empty.yaml", "# only a comment\n")
    assert "file is empty" in only_error(project)


def test_a_duplicate_step_id_names_the_step_and_its_line(project: ProjectPaths) -> None:
    path = write(project, "spring.yaml", VALID + """\
  - id: offer
    channel: email
    template: spring
    sender: "Acme <news@acme.example>"
""")
    assert only_error(project) == (
        f"{path}:17: steps[1].id: step id 'offer' is already the id of steps[0]; step ids must be unique "
        "(they name the step's tasks and ledger rows)"
    )


@pytest.mark.parametrize(("cron", "field", "allowed"), [
    ("0 25 * * *", "hour '25'", "0-23"), ("60 9 * * *", "minute '60'", "0-59"), ("0 9 0 * *", "day '0'", "1-31"),
    ("0 9 * 13 *", "month '13'", "1-12 or JAN-DEC"), ("0 9 * * 8", "weekday '8'", "0-6 or SUN-SAT"),
])
def test_an_out_of_range_cron_field_is_named(project: ProjectPaths, cron: str, field: str, allowed: str) -> None:
    write(project, "spring.yaml", VALID.replace('"0 9 * * 1"', f'"{cron}"'))
    error = only_error(project)
    assert f":6: schedule: '{cron}': the {field.split()[0]} field {field.split()[1]} is out of range" in error
    assert f"takes {allowed}" in error


def test_valid_is_optional_for_a_manual_campaign_and_required_otherwise(project: ProjectPaths) -> None:
    manual = "\n".join(line for line in VALID.splitlines() if not line.startswith("valid:"))
    write(project, "spring.yaml", manual.replace('"0 9 * * 1"', "manual"))
    assert load(project).ok
    path = write(project, "spring.yaml", manual)
    assert only_error(project).startswith(f"{path}: valid: required for a scheduled campaign")


def test_shared_rule_files_are_validated_with_the_campaigns(project: ProjectPaths) -> None:
    write(project, "spring.yaml", VALID)
    policies = write(project, "_policies.yaml", "frequency_caps:\n  - {channel: email, max: 3, per: 7d}\n"
                     "  - {channel: fax, max: 1, per: 1d}\nquiet_hourz: []\n")
    rates = write(project, "_rate_limits.yaml", "email:smtp_default: 20\nfax:x: 5\n")
    result = load(project)
    assert "spring_sale" in result.configs  # the campaigns still load
    rendered = {error.campaign_id: error.render() for error in result.errors}
    assert f"{policies}:3: frequency_caps[1].channel: Input should be 'email'" in rendered["_policies"]
    assert f"{policies}:4: quiet_hourz: unknown field 'quiet_hourz'; did you mean 'quiet_hours'?" in rendered["_policies"]
    assert f"{rates}: (file): key 'fax:x' must be channel:connection_id" in rendered["_rate_limits"]
