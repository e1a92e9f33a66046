"""The Campaigns page's ingestion view: each loaded table's freshness and its last load's
counts, and for a campaign that waits on data the time from the file landing to its run."""

from __future__ import annotations

import os
import textwrap
import time

import pytest

from campaign_orchestrator.config.ingestion_loader import load_source
from campaign_orchestrator.ingestion.load import run_source
from campaign_orchestrator.paths import ProjectPaths
from campaign_orchestrator.run.runs import register_run
from tests.integration.ingestion.conftest import BOOKING_HEADER, booking
from tests.integration.ui.test_campaigns_api import PREFIX, admin_token, bearer, client  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration

ON_DATA = """
    id: fresh_bookings
    schedule: {on_data: [crm.booking]}
    valid: {start: 2026-01-01}
    audience: {sql: audiences/winter_sale.sql, params: {min_bookings: 1, lookback_days: 365}}
    steps:
      - {id: thanks, channel: email, template: winter_sale, sender: "Wanderly <offers@wanderly.example>"}
"""


def test_the_page_shows_each_tables_freshness_last_load_and_the_landing_latency(
    client, admin_token, campaign_run, store, tmp_path  # noqa: F811 - fixtures
) -> None:
    store.execute("TRUNCATE ingest.load CASCADE")
    store.execute("TRUNCATE ingest.freshness, ingest.source_schema")
    (campaign_run.campaigns_dir / "fresh_bookings.yaml").write_text(textwrap.dedent(ON_DATA))
    landing = tmp_path / "landing"
    landing.mkdir()
    profile = store.execute("SELECT min(profile_id) FROM crm.profile").fetchone()[0]
    (landing / "bookings_1.csv").write_text("\n".join([
        BOOKING_HEADER, booking(9_000_001, profile=profile), booking(9_000_002, profile=profile),
        booking(9_000_003, profile=profile, amount="x")]) + "\n")
    landed = time.time() - 90  # the file landed a minute and a half before the campaign starts
    os.utime(landing / "bookings_1.csv", (landed, landed))
    source = tmp_path / "bookings.yaml"
    source.write_text(textwrap.dedent(f"""
        id: bookings
        schedule: manual
        source: {{kind: csv, path: "{landing}/bookings_*.csv"}}
        target: {{table: crm.booking, key: booking_id, version: updated_at}}
        max_reject_share: 0.5
    """))
    run_source(store, load_source(source), ProjectPaths.discover())
    run_key = register_run(store, "fresh_bookings", "asset_triggered__ui_test", None, {})

    body = client.get(f"{PREFIX}/api/campaigns", headers=bearer(admin_token)).json()
    (table,) = body["data"]
    load = store.execute("SELECT load_id, status, inserted, updated, unchanged, deleted, rejected, landed_at "
                         "FROM ingest.load").fetchone()
    assert table["table"] == "crm.booking" and table["source_id"] == "bookings"
    assert (table["last_load_id"], table["last_status"], table["inserted"], table["updated"], table["unchanged"],
            table["deleted"], table["rejected"]) == load[:7] == (load[0], "succeeded", 2, 0, 0, 0, 1)
    started = store.execute("SELECT started_at FROM campaign.run WHERE run_key = %s", (run_key,)).fetchone()[0]
    campaigns = {c["id"]: c for c in body["campaigns"]}
    latency = campaigns["fresh_bookings"]["data_latency"]
    assert latency["seconds"] == round((started - load[7]).total_seconds(), 1) >= 90
    assert campaigns["fresh_bookings"]["data_tables"] == ["crm.booking"]
    assert campaigns["winter_sale"]["data_latency"] is None

    html = client.get(f"{PREFIX}/", headers=bearer(admin_token)).text
    assert 'id="data-freshness"' in html and 'data-table="crm.booking"' in html
    assert "file landed → run started:" in html and "bookings_1.csv" in html
