"""Checks deeper than the config model: templates, SQL parameters, and the live store.

``campaigns validate`` runs them all; a run's prepare task runs them before anything is
evaluated or sent, so a bad template fails the run instead of 100,000 messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from campaign_orchestrator.channels.registry import template_parts
from campaign_orchestrator.channels.templating import TemplateCheckError, check_templates, template_environment
from campaign_orchestrator.run.audience import AudienceError, read_audience_sql, referenced_params

if TYPE_CHECKING:
    import psycopg

    from campaign_orchestrator.config.models import CampaignConfig
    from campaign_orchestrator.paths import ProjectPaths


def template_fields_by_step(config: CampaignConfig, paths: ProjectPaths) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """Profile fields each step's templates read, and the problems found on the way."""
    env = template_environment(paths.templates)
    fields: dict[str, tuple[str, ...]] = {}
    problems: list[str] = []
    for index, step in enumerate(config.steps):
        names = [f"{step.template}/{part}" for part in template_parts(step.channel)]
        try:
            fields[step.id] = check_templates(env, names)
        except TemplateCheckError as exc:
            problems.append(f"steps[{index}].template: {exc}")
        except OSError as exc:  # a missing file: the loader reports it with the field path
            problems.append(f"steps[{index}].template: {exc}")
    return fields, problems


def check_campaign_templates(config: CampaignConfig, paths: ProjectPaths) -> list[str]:
    return template_fields_by_step(config, paths)[1]


def check_campaign_deep(config: CampaignConfig, paths: ProjectPaths) -> list[str]:
    problems = check_campaign_templates(config, paths)
    sql_path = paths.sql / config.audience.sql
    if sql_path.is_file():
        text = read_audience_sql(sql_path)
        if not text:
            problems.append(f"audience.sql: {sql_path} is empty; write a SELECT returning profile_id")
        missing = sorted(referenced_params(text) - set(config.audience.params))
        if missing:
            problems.append(
                f"audience.params: {sql_path.name} uses {', '.join(f'%({m})s' for m in missing)} "
                f"but no value is given; add {', '.join(missing)} under audience.params"
            )
        unused = sorted(set(config.audience.params) - referenced_params(text))
        if unused:
            problems.append(f"audience.params: {', '.join(unused)} not used by {sql_path.name}; remove or use them")
    return problems


def check_campaign_in_store(conn: psycopg.Connection, config: CampaignConfig, paths: ProjectPaths) -> list[str]:
    """Plan the audience SQL in the store (no rows read) and check template fields exist."""
    from campaign_orchestrator.run.audience import probe_audience_columns

    problems: list[str] = []
    sql_path = paths.sql / config.audience.sql
    try:
        columns = probe_audience_columns(conn, read_audience_sql(sql_path), dict(config.audience.params), sql_path)
        if "profile_id" not in columns:
            problems.append(f"audience.sql: {sql_path} must return a profile_id column; it returns {', '.join(columns)}")
    except AudienceError as exc:
        problems.append(f"audience.sql: {exc}")
    problems += check_profile_fields(conn, config, paths)
    return problems


def check_profile_fields(conn: psycopg.Connection, config: CampaignConfig, paths: ProjectPaths) -> list[str]:
    fields, _ = template_fields_by_step(config, paths)
    columns = {
        row[0]
        for row in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'crm' AND table_name = 'profile'"
        )
    }
    problems = []
    for index, step in enumerate(config.steps):
        unknown_fields = sorted(set(getattr(step, "fields", ())) - columns) if step.channel == "direct_mail" else []
        if unknown_fields:
            problems.append(
                f"steps[{index}].fields: {', '.join(unknown_fields)} not in crm.profile; "
                f"columns: {', '.join(sorted(columns))}"
            )
        unknown = sorted(set(fields.get(step.id, ())) - columns)
        if unknown:
            problems.append(
                f"steps[{index}].template: {step.template} uses profile.{', profile.'.join(unknown)}, "
                f"which crm.profile does not have; columns: {', '.join(sorted(columns))}"
            )
    return problems
