"""Checks deeper than the config model: templates, SQL parameters, and the live store.

``campaigns validate`` runs them all; a run's prepare task runs them before anything is
evaluated or sent, so a bad template fails the run instead of 100,000 messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from campaign_orchestrator.channels.registry import template_parts
from campaign_orchestrator.channels.locales import DEFAULT, variant_problems
from campaign_orchestrator.channels.template_renderer import step_variants
from campaign_orchestrator.channels.templating import (
    TemplateCheckError,
    TemplateFields,
    check_template_fields,
    template_environment,
    used_variables,
)
from campaign_orchestrator.audience.sql_syntax import syntax_problems
from campaign_orchestrator.run.audience import AudienceError, read_audience_sql, referenced_params
from campaign_orchestrator.store.declared_schema import declared_columns

if TYPE_CHECKING:
    import psycopg

    from campaign_orchestrator.config.campaign import CampaignConfig
    from campaign_orchestrator.paths import ProjectPaths
    from campaign_orchestrator.run.enrichment import Enrichment


def template_fields_by_step(config: CampaignConfig, paths: ProjectPaths) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """Profile fields each step's templates read, and the problems found on the way."""
    fields, problems = template_fields_of_steps(config, paths)
    return {step_id: read.profile for step_id, read in fields.items()}, problems


def template_fields_of_steps(
    config: CampaignConfig, paths: ProjectPaths
) -> tuple[dict[str, TemplateFields], list[str]]:
    """What each step's templates read (profile fields, entity paths), and the problems found."""
    env = template_environment(paths.templates)
    fields: dict[str, TemplateFields] = {}
    problems: list[str] = []
    for index, step in enumerate(config.steps):
        if step.channel == "wait":
            continue
        parts = template_parts(step.channel)
        if not parts:  # direct mail: no template
            continue
        variants = step_variants(step, paths)
        read: list[TemplateFields] = []
        used: dict[str, dict[str, frozenset[str]]] = {}
        missing: dict[str, list[str]] = {}
        for variant in variants.variants or (DEFAULT,):
            folder = variants.folder(variant)
            missing[variant] = [p for p in parts if not (paths.templates / folder / p).is_file()]
            names = [f"{folder}/{part}" for part in parts if part not in missing[variant]]
            if not variants.localized:
                names = [f"{folder}/{part}" for part in parts]  # a missing part: the error says which
                missing.pop(variant)
            try:
                read.append(check_template_fields(env, names))
                used[variant] = {name.rsplit("/", 1)[1]: used_variables(env, [name]) for name in names}
            except TemplateCheckError as exc:
                problems += [f"steps[{index}].template: {problem}" for problem in exc.problems]
                if exc.partial is not None:  # the parts without problems are checked further
                    read.append(exc.partial)
            except OSError as exc:  # a missing file: the loader reports it with the field path
                problems.append(f"steps[{index}].template: {exc}")
        if variants.localized or variants.default is None:
            problems += [
                f"steps[{index}].template: {problem}" for problem in variant_problems(variants, parts, used, missing)
            ]
        if read:
            fields[step.id] = _union_fields(read)
    return fields, problems


def _union_fields(read: list[TemplateFields]) -> TemplateFields:
    return TemplateFields(
        profile=tuple(sorted({f for t in read for f in t.profile})),
        entity=tuple(sorted({p for t in read for p in t.entity})),
        entities=tuple(sorted({p for t in read for p in t.entities})),
        uses_entities=any(t.uses_entities for t in read),
    )


def check_campaign_templates(config: CampaignConfig, paths: ProjectPaths) -> list[str]:
    fields, problems = template_fields_of_steps(config, paths)
    return problems + step_enrichments(config, paths, fields)[1]


def step_enrichments(
    config: CampaignConfig, paths: ProjectPaths, fields: dict[str, TemplateFields]
) -> tuple[dict[str, tuple[int, Enrichment]], list[str]]:
    """The entity fetch of each step whose templates use ``entity`` or ``entities`` (by step
    id, with the step's index), and the problems that stop one: checked against the entity
    catalog, without the store."""
    from campaign_orchestrator.audience.catalog import load_catalog
    from campaign_orchestrator.run.enrichment import EnrichmentError, enrichment_for

    audience = config.audience
    if audience.entity is None and not any(f.uses_entity or f.uses_entities for f in fields.values()):
        return {}, []
    catalog_path = paths.root / "include" / "entities.yaml"
    try:
        catalog = load_catalog(catalog_path)
    except (OSError, ValueError) as exc:
        return {}, [f"{catalog_path}: {exc}"]
    if audience.entity is not None and audience.entity not in catalog.entities:
        return {}, [
            f"audience.entity: unknown entity {audience.entity!r}; {catalog_path.name} has "
            f"{', '.join(sorted(catalog.entities))}"
        ]
    plans: dict[str, tuple[int, Enrichment]] = {}
    problems: list[str] = []
    for index, step in enumerate(config.steps):
        if step.id not in fields:
            continue
        try:
            enrichment = enrichment_for(config, step, fields[step.id], catalog)
        except EnrichmentError as exc:
            problems.append(str(exc))
            continue
        if enrichment is not None:
            plans[step.id] = (index, enrichment)
    return plans, problems


def check_campaign_deep(config: CampaignConfig, paths: ProjectPaths) -> list[str]:
    """Every check that needs no store: templates (names, fields, the profile's columns as the
    migrations declare them), SQL files (syntax, parameters), each audience block."""
    fields, problems = template_fields_of_steps(config, paths)
    problems += step_enrichments(config, paths, fields)[1]
    declared = declared_columns(paths.migrations).get("crm.profile")
    if declared:
        problems += _profile_column_problems(config, fields, set(declared), "as include/sql/migrations/ declare it")
    audience = config.audience
    if audience.sql is not None:
        problems += _check_sql_params("audience", paths.sql / audience.sql, audience.params, paths)
    for name, block in audience.blocks.items():
        if hasattr(block, "sql"):
            problems += _check_sql_params(f"audience.blocks.{name}", paths.sql / block.sql, block.params, paths)
    if audience.blocks:
        from campaign_orchestrator.audience.compile import block_problems

        problems += block_problems(config, paths)
    if audience.split is not None and audience.split.rules:
        from campaign_orchestrator.audience.catalog import load_catalog
        from campaign_orchestrator.run.audience import split_rules

        try:
            split_rules(audience.split, load_catalog(paths.root / "include" / "entities.yaml"), config.timezone)
        except (ValueError, OSError) as exc:  # AudienceCompileError is a ValueError
            problems.append(str(exc))
    return problems


def check_split_rules_in_store(conn: psycopg.Connection, config: CampaignConfig, paths: ProjectPaths) -> list[str]:
    """Plan each split rule in the store (no rows read): unknown profile columns fail here."""
    from campaign_orchestrator.audience.catalog import load_catalog
    from campaign_orchestrator.run.audience import probe_split_rules, split_rules

    try:
        rules = split_rules(config.audience.split, load_catalog(paths.root / "include" / "entities.yaml"), config.timezone)
        probe_split_rules(conn, rules)
    except AudienceError as exc:
        return [str(exc)]
    except (ValueError, OSError):
        return []  # reported by check_campaign_deep
    return []


def _profile_column_problems(
    config: CampaignConfig, read: dict[str, TemplateFields], columns: set[str], where: str
) -> list[str]:
    """Profile fields of templates and direct-mail extracts that crm.profile lacks, with "did
    you mean"; ``where`` says whose columns these are."""
    import difflib

    def unknown(name: str) -> str:
        close = difflib.get_close_matches(name, sorted(columns), n=1)
        return f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")

    problems = []
    for index, step in enumerate(config.steps):
        if step.channel == "wait":
            continue
        missing_fields = sorted(set(getattr(step, "fields", ())) - columns) if step.channel == "direct_mail" else []
        if missing_fields:
            problems.append(
                f"steps[{index}].fields: crm.profile has no column {', '.join(map(unknown, missing_fields))} "
                f"({where}); columns: {', '.join(sorted(columns))}"
            )
        used = read.get(step.id)
        missing = sorted(set(used.profile if used else ()) - columns)
        if missing:
            problems.append(
                f"steps[{index}].template: {step.template} uses profile.{', profile.'.join(missing)}, but "
                f"crm.profile has no column {', '.join(map(unknown, missing))} ({where}); "
                f"columns: {', '.join(sorted(columns))}"
            )
    return problems


def _check_sql_params(where: str, sql_path, params: dict, paths: ProjectPaths) -> list[str]:
    if not sql_path.is_file():
        return [f"{where}.sql: file not found: {sql_path}"]
    text = read_audience_sql(sql_path)
    if not text:
        return [f"{where}.sql: {sql_path} is empty; write a SELECT returning profile_id"]
    problems = syntax_problems(sql_path, text)
    missing = sorted(referenced_params(text) - set(params))
    if missing:
        problems.append(
            f"{where}.params: {sql_path.name} uses {', '.join(f'%({m})s' for m in missing)} "
            f"but no value is given; add {', '.join(missing)} under {where}.params"
        )
    unused = sorted(set(params) - referenced_params(text))
    if unused:
        problems.append(f"{where}.params: {', '.join(unused)} not used by {sql_path.name}; remove or use them")
    return problems


def check_campaign_in_store(conn: psycopg.Connection, config: CampaignConfig, paths: ProjectPaths) -> list[str]:
    """Plan the audience SQL in the store (no rows read) and check template fields exist."""
    from campaign_orchestrator.audience.compile import AudienceCompileError, compile_audience
    from campaign_orchestrator.run.audience import probe_audience_columns

    problems: list[str] = []
    try:
        compiled = compile_audience(config, paths)
        columns = probe_audience_columns(conn, compiled.text, compiled.params, compiled)
        if "profile_id" not in columns:
            problems.append(f"audience: {compiled.label} must return a profile_id column; it returns {', '.join(columns)}")
    except (AudienceCompileError, AudienceError) as exc:
        problems.append(f"audience: {exc}")
    problems += check_split_rules_in_store(conn, config, paths)
    problems += check_profile_fields(conn, config, paths)
    if config.conversion is not None:
        from campaign_orchestrator.lift.compute import conversion_problems

        problems += conversion_problems(conn, config.conversion)
    return problems


def check_profile_fields(conn: psycopg.Connection, config: CampaignConfig, paths: ProjectPaths) -> list[str]:
    """Profile fields and entity fields the templates read must exist in the store."""
    from campaign_orchestrator.run.enrichment import check_enrichment_in_store

    read, _ = template_fields_of_steps(config, paths)
    columns = {
        row[0]
        for row in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'crm' AND table_name = 'profile'"
        )
    }
    problems = _profile_column_problems(config, read, columns, "in the store")
    for index, enrichment in step_enrichments(config, paths, read)[0].values():
        problems += check_enrichment_in_store(conn, enrichment, index, config.steps[index].template)
    return problems
