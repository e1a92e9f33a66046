"""The shipped sources (dags/ingestion/) load the demo files (include/data/) into a demo store,
as `make demo` does at its end, and loading them again after new demo data works the same."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

from campaign_orchestrator.ingestion.demo import load_shipped_sources
from campaign_orchestrator.paths import ProjectPaths
from campaign_orchestrator.store.demo_data import generate_demo_data

DATA = Path(__file__).resolve().parents[3] / "include" / "data"


def test_the_shipped_sources_load_the_demo_files(store) -> None:
    store.execute("DROP TABLE IF EXISTS crm.loyalty_tier")
    generate_demo_data(store, profiles=1000, seed=5)
    lines = load_shipped_sources(store, ProjectPaths.discover())
    assert not [line for line in lines if "FAILED" in line or "invalid" in line], lines
    with open(DATA / "bookings" / "bookings_2026-12-01.csv") as f:
        first = {int(r["booking_id"]) for r in csv.DictReader(f)}
    with gzip.open(DATA / "bookings" / "bookings_2026-12-02.csv.gz", "rt") as f:
        second = {int(r["booking_id"]) for r in csv.DictReader(f)}
    loaded = {r[0] for r in store.execute("SELECT booking_id FROM crm.booking WHERE booking_id >= 9000000")}
    assert loaded == (first | second) - {9_000_999, 9_001_000}  # the two bad lines of the second file
    with open(DATA / "loyalty" / "loyalty_2026-12-01.jsonl") as f:
        tiers = {r["profile_id"]: r["tier"] for r in map(json.loads, f)}
    assert dict(store.execute("SELECT profile_id, tier FROM crm.loyalty_tier").fetchall()) == tiers
    exported = store.execute("SELECT count(*) FROM crm.consent_history WHERE source = 'crm_nightly_export'"
                             ).fetchone()[0]
    changed = sum(int(n.replace(",", "")) for line in lines if line.startswith("crm_consent")
                  for n in (line.split("inserted ")[1].split(",")[0], line.split("updated ")[1].split(",")[0]))
    assert exported == changed > 0
    # New demo data, then the step again: the files load again, into the new rows.
    generate_demo_data(store, profiles=1000, seed=5)
    assert load_shipped_sources(store, ProjectPaths.discover()) == lines[:3] + [
        lines[3].replace("inserted 2,000", "inserted 0").replace("unchanged 0", "unchanged 2,000")]  # loyalty is kept
