"""Tables a source declares (created, recorded, in the entity catalog for audiences at once),
and schema drift upstream: reported by name, failing or warning by policy, never silent."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from campaign_orchestrator.audience.catalog import load_catalog
from campaign_orchestrator.config.loader import load_campaigns
from campaign_orchestrator.ingestion.load import LoadFailed
from campaign_orchestrator.ingestion.schema import SchemaError
from campaign_orchestrator.paths import ProjectPaths
from tests.integration.ingestion.conftest import BOOKING_HEADER, booking, bookings_source, run

ROOT = Path(__file__).resolve().parents[3]
LOYALTY = """
    id: loyalty
    schedule: "@daily"
    source: {kind: csv, path: "{landing}/loyalty_*.csv"}
    target:
      table: loyalty.tier
      create: true
      key: profile_id
      version: updated_at
      columns: {profile_id: bigint, tier: varchar(12), points: integer, updated_at: timestamptz}
      entity: {name: loyalty, links: {profile: profile_id}}
"""

CAMPAIGN = """
    id: gold_members
    schedule: manual
    valid: {start: 2026-01-01}
    audience:
      blocks:
        gold: {from: loyalty, where: {tier: gold, points: {gte: 100}}}
    steps:
      - {id: offer, channel: email, template: winter_sale, sender: "A <a@b.example>"}
"""


@pytest.fixture
def loyalty(ingest_store, sources, monkeypatch):
    ingest_store.execute("DROP SCHEMA IF EXISTS loyalty CASCADE")
    monkeypatch.setenv("CAMPAIGNS_INGESTION_DIR", str(sources.folder))
    yield sources.source("loyalty", LOYALTY)
    ingest_store.execute("DROP SCHEMA IF EXISTS loyalty CASCADE")


def test_a_declared_table_is_created_recorded_and_usable_by_audiences_at_once(ingest_store, sources, loyalty,
                                                                             tmp_path, monkeypatch) -> None:
    sources.file("loyalty_1.csv", """
        profile_id,tier,points,updated_at
        1,gold,500,2026-12-01 00:00:00+00
        2,gold,50,2026-12-01 00:00:00+00
        3,silver,900,2026-12-01 00:00:00+00
        4,platinum-plus-x,900,2026-12-01 00:00:00+00
    """)
    (outcome,) = run(ingest_store, loyalty.model_copy(update={"max_reject_share": 0.5}))
    assert (outcome.inserted, outcome.rejected) == (3, 1)  # 'platinum-plus-x' is longer than varchar(12)
    reason = ingest_store.execute("SELECT reason FROM ingest.reject").fetchone()[0]
    assert reason == "tier: 'platinum-plus-x' is not a valid character varying(12)"
    changes = [r[0] for r in ingest_store.execute("SELECT statement FROM ingest.table_change ORDER BY change_id")]
    assert changes == ['CREATE SCHEMA IF NOT EXISTS "loyalty"',
                       'CREATE TABLE "loyalty"."tier" ("profile_id" bigint NOT NULL, "tier" varchar(12), "points" '
                       'integer, "updated_at" timestamptz, PRIMARY KEY ("profile_id"))']
    # The entity is in the catalog for audience blocks, and an audience on it counts in the store.
    catalog = load_catalog(ROOT / "include" / "entities.yaml")
    assert catalog.entity("loyalty").table == "loyalty.tier"
    assert [(h.source, h.target) for h in catalog.path("loyalty", "profile")] == [("loyalty", "profile")]
    folder = tmp_path / "campaigns"
    folder.mkdir()
    (folder / "gold_members.yaml").write_text(textwrap.dedent(CAMPAIGN))
    result = load_campaigns(folder, ProjectPaths.discover())
    assert result.ok, [e.render() for e in result.errors]
    from campaign_orchestrator.run.calculate import calculate_campaign

    counts = calculate_campaign(ingest_store, result.configs["gold_members"][1], ProjectPaths.discover())
    assert counts.audience.members == 1  # profile 1: gold with 500 points


def test_declared_columns_are_added_never_retyped(ingest_store, sources, loyalty) -> None:
    sources.file("loyalty_1.csv", "profile_id,tier,points,updated_at\n1,gold,5,2026-12-01 00:00:00+00\n")
    run(ingest_store, loyalty)
    grown = sources.source("loyalty", LOYALTY.replace("updated_at: timestamptz}", "updated_at: timestamptz, "
                                                                                    "since: date}"))
    sources.file("loyalty_2.csv", "profile_id,tier,points,updated_at,since\n1,gold,7,2026-12-02 00:00:00+00,2020-01-01\n")
    (outcome,) = run(ingest_store, grown)
    assert outcome.updated == 1
    assert ingest_store.execute("SELECT statement FROM ingest.table_change ORDER BY change_id DESC LIMIT 1"
                                ).fetchone()[0] == 'ALTER TABLE "loyalty"."tier" ADD COLUMN "since" date'
    assert ingest_store.execute("SELECT points, since::text FROM loyalty.tier").fetchone() == (7, "2020-01-01")
    retyped = sources.source("loyalty", LOYALTY.replace("points: integer", "points: 'numeric(10,2)'"))
    with pytest.raises(SchemaError, match=r"target.columns.points: declared numeric\(10,2\) but loyalty.tier.points "
                                          r"is integer; a load never retypes a column"):
        run(ingest_store, retyped)
    missing = sources.source("loyalty", LOYALTY.replace("create: true", "create: false").replace("loyalty.tier",
                                                                                                  "loyalty.nope"))
    with pytest.raises(SchemaError, match="target.table: loyalty.nope does not exist in the store; declare its"):
        run(ingest_store, missing)


def test_a_conflicting_entity_is_left_out_and_reported(ingest_store, sources, loyalty, capsys) -> None:
    from campaign_orchestrator.cli import main

    sources.source("clash", LOYALTY.replace("id: loyalty", "id: clash").replace("name: loyalty", "name: booking")
                   .replace("loyalty.tier", "loyalty.clash"))
    assert load_catalog(ROOT / "include" / "entities.yaml").entity("booking").table == "crm.booking"
    assert main(["ingest", "validate"]) == 1
    assert "clash.yaml: target.entity.name: 'booking' is already an entity of include/entities.yaml" in \
        capsys.readouterr().err


def test_a_new_column_upstream_fails_the_load_or_is_reported_by_policy(ingest_store, sources) -> None:
    config = bookings_source(sources)
    sources.file("bookings_1.csv", "\n".join([BOOKING_HEADER + ",channel", booking(1) + ",web"]) + "\n")
    with pytest.raises(LoadFailed, match=r"new column\(s\) upstream: 'channel' not in crm.booking"):
        run(ingest_store, config)
    assert ingest_store.execute("SELECT count(*) FROM crm.booking").fetchone()[0] == 0
    error = ingest_store.execute("SELECT status, error FROM ingest.load").fetchone()
    assert error[0] == "failed" and "on_drift.new_columns: warn" in error[1]
    config = bookings_source(sources, extra="on_drift: {new_columns: warn}\n")
    (outcome,) = run(ingest_store, config)
    assert outcome.inserted == 1
    assert outcome.warnings == ["new column(s) upstream: 'channel' not in crm.booking; not loaded "
                                "(on_drift.new_columns: warn)"]
    assert ingest_store.execute("SELECT warnings FROM ingest.load WHERE status = 'succeeded'").fetchone()[0] == \
        outcome.warnings


PROFILES = """
    id: profiles
    schedule: manual
    source: {kind: csv, path: "{landing}/profiles_*.csv"}
    target: {table: crm.profile, key: profile_id, version: updated_at}
"""


def test_a_column_removed_upstream_fails_the_load_or_keeps_its_values_by_policy(ingest_store, sources) -> None:
    sources.file("profiles_1.csv", "profile_id,first_name,city,updated_at\n1,Ann,Lyon,2027-01-01 00:00:00+00\n")
    run(ingest_store, sources.source("profiles", PROFILES))
    sources.file("profiles_2.csv", "profile_id,first_name,updated_at\n1,Anne,2027-01-02 00:00:00+00\n")
    with pytest.raises(LoadFailed, match=r"column\(s\) removed upstream: 'city' \(delivered by the last load\) not in "
                                         r"the source. Restore them upstream"):
        run(ingest_store, sources.source("profiles", PROFILES))
    (outcome,) = run(ingest_store, sources.source("profiles", PROFILES + "    on_drift: {missing_columns: warn}\n"))
    assert outcome.updated == 1 and outcome.warnings == [
        "column(s) removed upstream: 'city' (delivered by the last load) not in the source; crm.profile keeps their "
        "values (on_drift.missing_columns: warn)"]
    assert ingest_store.execute("SELECT first_name, city FROM crm.profile WHERE profile_id = 1").fetchone() == \
        ("Anne", "Lyon")


def test_a_required_column_removed_upstream_stops_the_load_even_with_warn(ingest_store, sources) -> None:
    sources.file("bookings_1.csv", "\n".join([BOOKING_HEADER, booking(1, amount="80.00")]) + "\n")
    run(ingest_store, bookings_source(sources))
    line = booking(1, "completed", "2026-12-02 10:00", amount="80.00").replace(",80.00", "")
    sources.file("bookings_2.csv", BOOKING_HEADER.replace(",amount", "") + "\n" + line + "\n")
    with pytest.raises(LoadFailed, match=r"crm.booking.amount is required \(NOT NULL, no default\) but the source does "
                                         r"not deliver it \(removed upstream; even with on_drift.missing_columns: warn"):
        run(ingest_store, bookings_source(sources, extra="on_drift: {missing_columns: warn}\n"))
    assert ingest_store.execute("SELECT status, amount::text FROM crm.booking").fetchone() == ("confirmed", "80.00")
