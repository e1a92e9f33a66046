"""The demo audiences' plans use the indexes of migration 0009 for their selective joins.

The plans are read from EXPLAIN (no timing: performance is measured by bench/bench_preview.py)
on generated data with fresh statistics. The data is kept small enough for ANALYZE to read
every row (no sampling: the same data gives the same statistics, so the same plans), and
set up so that the selective path is the right one whatever the size: one product of 50 is
low in stock (about 1% of the bookings), and the reminder looks 7 days ahead (about 3% of
them). With every product low in stock, a scan of all bookings would be the right plan.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import sql

from campaign_orchestrator.audience.compile import compile_audience
from campaign_orchestrator.config.loader import load_campaigns
from campaign_orchestrator.paths import ProjectPaths
from campaign_orchestrator.store.demo_data import generate_demo_data
from tests.fixtures.store import CRM_TABLES

pytestmark = pytest.mark.integration

PATHS = ProjectPaths.discover()
LOW_STOCK_PRODUCT = 40  # bookings favour low product ids; this one has about 1% of them


@pytest.fixture(scope="module")
def conn(store_dsn):
    with psycopg.connect(store_dsn, autocommit=True) as connection:
        connection.execute(f"TRUNCATE {CRM_TABLES}, campaign.run, campaign.demo_data_stamp CASCADE")
        generate_demo_data(connection, profiles=5000, seed=9, bookings_per_profile=5)
        assert connection.execute("SELECT count(*) FROM crm.booking").fetchone()[0] < 30_000  # ANALYZE reads all
        connection.execute(
            "UPDATE crm.inventory SET quantity = CASE WHEN product_id = %s THEN 3 ELSE 500 END", (LOW_STOCK_PRODUCT,)
        )
        connection.execute("UPDATE crm.product SET active = true")
        # As autovacuum leaves tables at rest: statistics, and pages marked all-visible so
        # that covering indexes answer without reading the table (index-only scans).
        connection.execute("VACUUM (ANALYZE) crm.booking, crm.product, crm.inventory, crm.profile")
        yield connection


def plan_indexes(conn: psycopg.Connection, text: str, params: dict[str, Any]) -> dict[str, set[str]]:
    """Index names used by the plan of ``text``, by table."""
    statement = sql.SQL("EXPLAIN (FORMAT JSON) ") + sql.SQL(text)  # type: ignore[arg-type]  # compiled SQL
    [[plan]] = conn.execute(statement, params).fetchall()
    found: dict[str, set[str]] = {}

    def walk(node: dict[str, Any]) -> None:
        if "Index Name" in node:
            found.setdefault(node["Relation Name"], set()).add(node["Index Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return found


def config(campaign_id: str):
    return load_campaigns(PATHS.campaigns, PATHS).configs[campaign_id][1]


def test_low_stock_bookings_are_found_through_the_product_index(conn) -> None:
    compiled = compile_audience(config("low_stock_alert"), PATHS)
    block = plan_indexes(conn, compiled.blocks["low_stock_bookings"], compiled.params)
    assert "booking_product_covering_idx" in block.get("booking", set()), block
    whole = plan_indexes(conn, compiled.text, compiled.params)
    assert "booking_product_covering_idx" in whole.get("booking", set()), whole
    # Confirmed bookings in the next 45 days: the partial covering index on start dates.
    upcoming = plan_indexes(conn, compiled.blocks["upcoming"], compiled.params)
    assert upcoming.get("booking") == {"booking_upcoming_covering_idx"}, upcoming


def test_the_planner_reads_every_booking_when_every_product_is_low(conn) -> None:
    """The check above depends on the data: with nothing selective, the index is not used."""
    compiled = compile_audience(config("low_stock_alert"), PATHS)
    with conn.transaction(force_rollback=True):
        conn.execute("UPDATE crm.inventory SET quantity = 3")
        conn.execute("ANALYZE crm.inventory")
        block = plan_indexes(conn, compiled.blocks["low_stock_bookings"], compiled.params)
    assert "booking" not in block, block


def test_upcoming_confirmed_bookings_are_found_through_the_start_date_index(conn) -> None:
    compiled = compile_audience(config("upcoming_trip_reminder"), PATHS)
    indexes = plan_indexes(conn, compiled.text, compiled.params)
    assert indexes.get("booking") == {"booking_upcoming_covering_idx"}, indexes


def test_the_indexes_replaced_by_0009_are_gone(conn) -> None:
    names = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'crm'")}
    assert {"booking_product_covering_idx", "booking_upcoming_covering_idx"} <= names
    assert not {"booking_product_idx", "booking_starts_idx"} & names
