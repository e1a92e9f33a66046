"""Ingestion against a real store: sources written to a temporary folder, files on file://
(or moto's S3 over HTTP), loads run as a task runs them."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from campaign_orchestrator.config.ingestion import IngestionConfig
from campaign_orchestrator.config.ingestion_loader import load_source
from campaign_orchestrator.ingestion.load import run_source
from campaign_orchestrator.ingestion.loadlog import LoadOutcome
from campaign_orchestrator.paths import ProjectPaths

PROFILES = 30
PRODUCTS = 5
BOOKING_HEADER = "booking_id,profile_id,product_id,status,booked_at,starts_on,amount,updated_at"


@pytest.fixture
def ingest_store(store: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """The store emptied of loads, with profiles 1-30 and products 1-5 to link bookings to."""
    store.execute("TRUNCATE ingest.load CASCADE")
    store.execute("TRUNCATE ingest.freshness, ingest.watermark, ingest.source_schema, ingest.table_change")
    store.execute("INSERT INTO crm.profile (profile_id, email) SELECT i, 'p' || i || '@example.com' "
                  "FROM generate_series(1, %s) i", (PROFILES,))
    store.execute("INSERT INTO crm.product (product_id, sku, name, category, price) "
                  "SELECT i, 'SKU-' || i, 'Trip ' || i, 'trips', 100 FROM generate_series(1, %s) i", (PRODUCTS,))
    yield store


@pytest.fixture
def sources(tmp_path: Path) -> "Sources":
    return Sources(tmp_path)


class Sources:
    """Source files in ``tmp_path/ingestion``, data files in ``tmp_path/landing``."""

    def __init__(self, root: Path) -> None:
        self.folder = root / "ingestion"
        self.landing = root / "landing"
        self.folder.mkdir()
        self.landing.mkdir()

    def source(self, name: str, text: str) -> IngestionConfig:
        path = self.folder / f"{name}.yaml"
        path.write_text(textwrap.dedent(text).replace("{landing}", str(self.landing)))
        return load_source(path)

    def file(self, name: str, text: str) -> Path:
        path = self.landing / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path


def run(conn: psycopg.Connection, config: IngestionConfig, **kwargs) -> list[LoadOutcome]:
    return run_source(conn, config, ProjectPaths.discover(), **kwargs)


def bookings(conn: psycopg.Connection) -> dict[int, tuple]:
    """booking_id -> (status, amount as text, updated_at as ISO text)."""
    rows = conn.execute("SELECT booking_id, status, amount::text, to_char(updated_at AT TIME ZONE 'UTC', "
                        "'YYYY-MM-DD HH24:MI') FROM crm.booking ORDER BY 1").fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def booking(booking_id: int, status: str = "confirmed", updated: str = "2026-12-01 10:00", profile: int = 1,
            amount: str = "100.00", starts: str = "2027-01-15") -> str:
    return f"{booking_id},{profile},1,{status},2026-11-20 10:00:00+00,{starts},{amount},{updated}:00+00"


BOOKINGS_SOURCE = """
    id: bookings
    schedule: manual
    source: {{kind: csv, path: "{{landing}}/bookings_*.csv"}}
    target: {{table: crm.booking, key: booking_id, version: updated_at}}
    max_reject_share: {share}
"""


def bookings_source(sources: Sources, share: float = 0.5, extra: str = "") -> IngestionConfig:
    return sources.source("bookings", textwrap.dedent(BOOKINGS_SOURCE.format(share=share)) + textwrap.dedent(extra))
