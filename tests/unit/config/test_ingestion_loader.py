"""Ingestion source validation: errors name the file, the line, the field and a fix, like
campaign files; one broken source never hides the others."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from campaign_orchestrator.config.ingestion import CsvSource, JsonLinesSource, SqlSource
from campaign_orchestrator.config.ingestion_loader import SourceFileError, load_source, load_sources
from campaign_orchestrator.paths import ProjectPaths

VALID = """
id: bookings
schedule: on_file
source:
  kind: csv
  path: include/data/bookings_*.csv
target:
  table: crm.booking
  key: booking_id
  version: updated_at
"""


@pytest.fixture
def project(tmp_path: Path) -> ProjectPaths:
    paths = ProjectPaths(tmp_path)
    (tmp_path / "dags" / "ingestion").mkdir(parents=True)
    (paths.sql / "sources").mkdir(parents=True)
    return paths


def write(paths: ProjectPaths, name: str, text: str) -> Path:
    path = paths.root / "dags" / "ingestion" / name
    path.write_text(textwrap.dedent(text))
    return path


def load(paths: ProjectPaths):
    return load_sources(paths.root / "dags" / "ingestion", paths)


def only_error(paths: ProjectPaths) -> str:
    result = load(paths)
    assert len(result.errors) == 1, result.errors
    return result.errors[0].render()


def test_a_valid_source_with_shared_defaults(project: ProjectPaths) -> None:
    write(project, "_defaults.yaml", "owner: data-team\nretries: 5\non_drift: warn\n")
    write(project, "bookings.yaml", VALID)
    result = load(project)
    assert result.ok
    path, config = result.configs["bookings"]
    assert config.dag_id == "ingest_bookings" and config.owner == "data-team" and config.retries == 5
    assert isinstance(config.source, CsvSource) and config.source.delimiter == ","
    assert config.schedule.on_file is not None and config.schedule.on_file.poll == timedelta(seconds=30)
    assert config.on_drift.new_columns == config.on_drift.missing_columns == "warn"
    assert config.target.key == ["booking_id"] and config.max_reject_share == 0.01


def test_an_unknown_field_names_file_line_and_the_right_one(project: ProjectPaths) -> None:
    path = write(project, "bookings.yaml", VALID.replace("  path:", "  delimter: ';'\n  path:"))
    assert only_error(project) == (
        f"{path}:6: source.delimter: unknown field 'delimter'; did you mean 'delimiter'? Valid fields here: "
        "columns, compression, conn_id, delimiter, encoding, header, kind, null, path, quote"
    )


def test_the_kind_of_a_source(project: ProjectPaths) -> None:
    path = write(project, "bookings.yaml", VALID.replace("kind: csv", "kind: xlsx"))
    assert only_error(project) == f"{path}:5: source.kind: unknown kind 'xlsx'; valid: csv, jsonl, parquet, sql"
    path.write_text(textwrap.dedent(VALID).replace("  kind: csv\n", ""))
    assert only_error(project) == f"{path}:4: source.kind: a source needs its kind: csv, jsonl, parquet, sql"


def test_consent_has_its_key_and_version_built_in_and_is_never_deleted(project: ProjectPaths) -> None:
    write(project, "consent.yaml", """
        schedule: "0 2 * * *"
        source: {kind: csv, path: include/data/consent.csv}
        target: {table: crm.consent}
    """)
    (_, config), = load(project).configs.values()
    assert config.target.key == ["profile_id", "channel"] and config.target.version == "updated_at"
    path = write(project, "consent.yaml", """
        schedule: "0 2 * * *"
        source: {kind: csv, path: include/data/consent.csv}
        target: {table: crm.consent, version: exported_at}
    """)
    assert "target: version: consent loads compare each record's updated_at with crm.consent.updated_at" in \
        only_error(project)
    path.write_text(textwrap.dedent("""
        schedule: "0 2 * * *"
        source: {kind: csv, path: include/data/consent.csv}
        target: {table: crm.consent}
        deletes: {snapshot: true}
    """))
    assert only_error(project) == (f"{path}:5: deletes: consent is never deleted by a load; send status opted_out "
                                   "or unknown instead")


@pytest.mark.parametrize(("change", "expected"), [
    (("  key: booking_id\n", ""), "target: key: give the business key column(s)"),
    (("kind: csv", "kind: csv\n  header: false"), "source: columns: a file without a header needs its column names"),
    (("table: crm.booking", "table: campaign.message"), "target.table: 'campaign.message': schema 'campaign' "
                                                         "belongs to the orchestrator"),
    (("table: crm.booking", "table: Bookings"), "target.table: String should match pattern"),
    (("schedule: on_file", "schedule: '0 25 * * *'"), "schedule: '0 25 * * *': the hour field '25' is out of range"),
    (("schedule: on_file", "schedule: {cron: '@daily', on_file: {}}"), "schedule: give exactly one of"),
    (("path: include/data/bookings_*.csv", "path: 'ftp://host/b.csv'"), "only s3://, file:// and local paths"),
    (("path: include/data/bookings_*.csv", "path: 'include/*/b.csv'"), "patterns (* ? [) are allowed in the file name"),
    (("  version: updated_at\n", "  version: updated_at\nmax_reject_share: 2\n"),
     "max_reject_share: Input should be less than or equal to 1"),
    (("  version: updated_at\n", "  version: updated_at\ndeletes: {tombstone: gone, snapshot: true}\n"),
     "deletes: give either tombstone: <column> or snapshot: true"),
])
def test_each_mistake_is_named(project: ProjectPaths, change: tuple[str, str], expected: str) -> None:
    write(project, "bookings.yaml", VALID.replace(*change))
    assert expected in only_error(project)


def test_a_declared_table_needs_its_columns_and_known_types(project: ProjectPaths) -> None:
    path = write(project, "loyalty.yaml", """
        schedule: "@daily"
        source: {kind: jsonl, path: include/data/loyalty.jsonl}
        target:
          table: crm.loyalty
          key: profile_id
          create: true
          columns: {profile_id: bigint, tier: txt, points: "Numeric(10, 2)"}
    """)
    message = only_error(project)
    assert message.startswith(f"{path}:8: target.columns: tier: unknown type 'txt'; did you mean 'text'?")
    path.write_text(path.read_text().replace("tier: txt", "tier: text"))
    (_, config), = load(project).configs.values()
    assert isinstance(config.source, JsonLinesSource)
    assert config.target.columns == {"profile_id": "bigint", "tier": "text", "points": "numeric(10, 2)"}
    path.write_text(path.read_text().replace("  key: profile_id\n", "  key: member_id\n"))
    assert "target: columns: the key/version column 'member_id' is not declared" in only_error(project)


def test_a_sql_source_needs_its_query_file_and_the_watermark_in_it(project: ProjectPaths) -> None:
    text = """
        schedule: "*/15 * * * *"
        source: {kind: sql, conn_id: crm_replica, query: sources/orders.sql, watermark: {column: updated_at,
                 initial: 1970-01-01}}
        target: {table: crm.orders, key: order_id, version: updated_at}
    """
    path = write(project, "orders.yaml", text)
    assert only_error(project).startswith(f"{path}:3: source.query: file not found: {project.sql}/sources/orders.sql")
    (project.sql / "sources" / "orders.sql").write_text("SELECT * FROM orders")
    assert "source.watermark: " in only_error(project) and "must filter on %(watermark)s" in only_error(project)
    (project.sql / "sources" / "orders.sql").write_text("SELECT * FROM orders WHERE updated_at > %(watermark)s")
    (_, config), = load(project).configs.values()
    assert isinstance(config.source, SqlSource) and config.source.watermark.initial == "1970-01-01"
    path.write_text(textwrap.dedent(text).replace('"*/15 * * * *"', "on_file"))
    assert "schedule.on_file: a SQL source has no files" in only_error(project)


def test_one_broken_source_hides_no_other(project: ProjectPaths) -> None:
    write(project, "bookings.yaml", VALID)
    write(project, "broken.yaml", "schedule: [\n")
    write(project, "twin.yaml", VALID)  # same id as bookings.yaml
    write(project, "empty.yaml", "")
    result = load(project)
    assert set(result.configs) == {"bookings"}
    rendered = {e.campaign_id: e.render() for e in result.errors}
    assert set(rendered) == {"ingest_broken", "ingest_bookings__duplicate", "ingest_empty"}
    assert "broken.yaml:2: (file): not valid YAML" in rendered["ingest_broken"]
    assert "id: 'bookings' is already used by" in rendered["ingest_bookings__duplicate"]
    assert "file is empty; it must be a mapping of ingestion source fields" in rendered["ingest_empty"]


def test_the_parsing_context_reads_only_the_wanted_source(project: ProjectPaths) -> None:
    write(project, "bookings.yaml", VALID)
    write(project, "other.yaml", VALID.replace("id: bookings", "id: other"))
    folder = project.root / "dags" / "ingestion"
    assert set(load_sources(folder, project, only_dag_id="ingest_other").configs) == {"other"}
    assert not load_sources(folder, project, only_dag_id="winter_sale").configs


def test_load_source_raises_with_every_problem(project: ProjectPaths) -> None:
    path = write(project, "bookings.yaml", VALID.replace("kind: csv", "kind: csv\n  quote: ','"))
    with pytest.raises(SourceFileError, match="delimiter: the delimiter and the quote must differ"):
        load_source(path, project)
