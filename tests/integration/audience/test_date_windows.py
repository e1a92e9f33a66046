"""Date windows of declarative conditions: calendar days for date columns (in the campaign's
time zone), rolling days from now for timestamps, both directions alike, against the same
windows computed here in Python."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from campaign_orchestrator.audience.catalog import load_catalog
from campaign_orchestrator.audience.compile import EntityBlockCompiler, _DIALECT
from campaign_orchestrator.config.audience import EntityBlock
from campaign_orchestrator.paths import ProjectPaths
from tests.fixtures.store import add_profiles

pytestmark = pytest.mark.integration

CATALOG = load_catalog(ProjectPaths.discover().root / "include" / "entities.yaml")
# Far apart: at any moment these two zones are on different calendar days.
ZONES = ("Pacific/Kiritimati", "Pacific/Pago_Pago")


@pytest.fixture
def bookings(store):
    """Bookings every 3 hours from 10 days ago to 10 days ahead (booked_at), starting every day
    from 12 days ago to 12 days ahead (starts_on, in UTC's calendar)."""
    add_profiles(store, [{"profile_id": 1, "email": "a@example.com"}])
    store.execute("INSERT INTO crm.product (product_id, sku, name, category, price) VALUES (1, 's', 'n', 'c', 1)")
    now = store.execute("SELECT now()").fetchone()[0]
    rows = []
    for i in range(-80, 81):
        rows.append((1000 + i, now + timedelta(hours=3 * i) + timedelta(minutes=7), (now + timedelta(days=i // 6)).date()))
    with store.cursor() as cur:
        cur.executemany(
            "INSERT INTO crm.booking (booking_id, profile_id, product_id, status, booked_at, starts_on, amount) "
            "VALUES (%s, 1, 1, 'confirmed', %s, %s, 1)",
            rows,
        )
    return store, now, rows


def _matching(conn, where: dict, timezone: str) -> set[int]:
    block = EntityBlock.model_validate({"from": "booking", "where": where, "entity_key": "booking"})
    select = EntityBlockCompiler(CATALOG, "w", block, timezone).select()
    compiled = select.compile(dialect=_DIALECT, compile_kwargs={"render_postcompile": True})
    return {int(key) for _, key in conn.execute(str(compiled), compiled.params).fetchall()}


@pytest.mark.parametrize("days", [0, 1, 3, 7])
def test_timestamps_roll_from_now_the_same_both_ways(bookings, days):
    conn, _, rows = bookings
    now = conn.execute("SELECT now()").fetchone()[0]  # each statement's now() is its own
    ahead = _matching(conn, {"booked_at": {"within_next_days": days}}, "UTC")
    behind = _matching(conn, {"booked_at": {"within_last_days": days}}, "UTC")
    window = timedelta(days=days)
    # 7 minutes past each 3-hour step: no row sits within a statement's clock skew of a bound.
    assert ahead == {k for k, at, _ in rows if now <= at <= now + window}
    assert behind == {k for k, at, _ in rows if now - window <= at <= now}
    assert len(ahead) == len(behind)  # symmetric: as many 3-hour steps either way
    # Upcoming means upcoming: nothing that already happened today.
    assert all(at >= now for k, at, _ in rows if k in ahead)


@pytest.mark.parametrize("timezone", ZONES)
@pytest.mark.parametrize("days", [0, 2, 10])
def test_dates_are_calendar_days_of_the_campaign_time_zone(bookings, timezone, days):
    conn, _, rows = bookings
    today = datetime.now(UTC).astimezone(ZoneInfo(timezone)).date()
    ahead = _matching(conn, {"starts_on": {"within_next_days": days}}, timezone)
    behind = _matching(conn, {"starts_on": {"within_last_days": days}}, timezone)
    assert ahead == {k for k, _, d in rows if today <= d <= today + timedelta(days=days)}
    assert behind == {k for k, _, d in rows if today - timedelta(days=days) <= d <= today}


def test_calendar_days_on_a_timestamp_run_from_local_midnight_to_local_midnight(bookings):
    conn, _, rows = bookings
    zone = ZoneInfo("Europe/Paris")
    today = datetime.now(UTC).astimezone(zone).date()

    def local_day(at: datetime) -> date:
        return at.astimezone(zone).date()

    ahead = _matching(conn, {"booked_at": {"within_next_calendar_days": 2}}, "Europe/Paris")
    behind = _matching(conn, {"booked_at": {"within_last_calendar_days": 2}}, "Europe/Paris")
    assert ahead == {k for k, at, _ in rows if today <= local_day(at) <= today + timedelta(days=2)}
    assert behind == {k for k, at, _ in rows if today - timedelta(days=2) <= local_day(at) <= today}


def test_the_window_functions_are_inlined_so_indexes_still_serve(bookings):
    conn, _, _ = bookings
    conn.execute("ANALYZE crm.booking")
    block = EntityBlock.model_validate({"from": "booking", "where": {"booked_at": {"within_last_days": 1}}})
    compiled = EntityBlockCompiler(CATALOG, "w", block, "UTC").select().compile(
        dialect=_DIALECT, compile_kwargs={"render_postcompile": True}
    )
    conn.execute("SET enable_seqscan = off")
    try:
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + str(compiled), compiled.params).fetchall())
    finally:
        conn.execute("RESET enable_seqscan")
    assert "booking_booked_at_idx" in plan, plan
