"""The demo data generator: deterministic, realistic mixes, intact schema, on a real PostgreSQL.

Runs against its own database on 127.0.0.1:5432 (``CAMPAIGNS_TEST_PG`` overrides the server),
created with a random suffix and dropped at the end.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import date, timedelta

import psycopg
import pytest

from campaign_orchestrator.paths import ProjectPaths
from campaign_orchestrator.store.demo_data import TABLES, demo_sql_file, generate_demo_data, load_steps
from campaign_orchestrator.store.migrations import migrate

pytestmark = pytest.mark.integration

SERVER = os.environ.get("CAMPAIGNS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PROFILES = 2_000
ANCHOR = date(2026, 1, 15)
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"  # the one targeting uses

# Every table's rows in a fixed order; consent_history without its serial id.
ORDERED_ROWS = {
    "profile": "SELECT t::text FROM crm.profile t ORDER BY profile_id",
    "consent": "SELECT t::text FROM crm.consent t ORDER BY profile_id, channel",
    "consent_history": """
        SELECT (profile_id, channel, status, source, recorded_at)::text FROM crm.consent_history
        ORDER BY profile_id, channel, recorded_at, status, source
    """,
    "suppression": "SELECT t::text FROM crm.suppression t ORDER BY channel, address",
    "plan": "SELECT t::text FROM crm.plan t ORDER BY plan_id",
    "product": "SELECT t::text FROM crm.product t ORDER BY product_id",
    "inventory": "SELECT t::text FROM crm.inventory t ORDER BY product_id",
    "subscription": "SELECT t::text FROM crm.subscription t ORDER BY subscription_id",
    "booking": "SELECT t::text FROM crm.booking t ORDER BY booking_id",
}


@pytest.fixture(scope="module")
def conn() -> Iterator[psycopg.Connection]:
    try:
        admin = psycopg.connect(SERVER, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.fail(f"no PostgreSQL at {SERVER}: {exc}; start it (see .ci/run)")
    name = f"demo_data_test_{secrets.token_hex(4)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(SERVER.rsplit("/", 1)[0] + f"/{name}", autocommit=True) as db:
            migrate(db, ProjectPaths.discover().migrations)
            yield db
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def fingerprint(conn: psycopg.Connection) -> dict[str, tuple[int, str]]:
    out = {}
    for table, query in ORDERED_ROWS.items():
        row = conn.execute(f"SELECT count(*), md5(coalesce(string_agg(r, E'\\n'), '')) FROM ({query}) AS rows(r)").fetchone()
        out[table] = (row[0], row[1])
    return out


def schema_objects(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """Every constraint and index of the crm schema with its definition."""
    rows = conn.execute(
        """
        SELECT conrelid::regclass::text || '.' || conname, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'crm'::regnamespace
        UNION ALL
        SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid)
        FROM pg_index WHERE indrelid::regclass::text LIKE 'crm.%'
        ORDER BY 1
        """
    ).fetchall()
    return [tuple(r) for r in rows]


def scalar(conn: psycopg.Connection, query: str, *params) -> int:
    row = conn.execute(query, params or None).fetchone()
    assert row is not None
    return row[0]


@pytest.fixture(scope="module")
def generated(conn: psycopg.Connection) -> dict:
    """Generate twice with the same parameters; keep the counts and both fingerprints."""
    before = schema_objects(conn)
    first_counts = generate_demo_data(conn, PROFILES, seed=42, anchor=ANCHOR)
    first = fingerprint(conn)
    second_counts = generate_demo_data(conn, PROFILES, seed=42, anchor=ANCHOR)
    second = fingerprint(conn)
    return {
        "counts": (first_counts, second_counts),
        "fingerprints": (first, second),
        "schema": (before, schema_objects(conn)),
    }


def test_same_parameters_give_identical_rows(generated: dict) -> None:
    first, second = generated["fingerprints"]
    assert first == second
    assert generated["counts"][0] == generated["counts"][1]


def test_counts_match_the_tables(conn: psycopg.Connection, generated: dict) -> None:
    counts, _ = generated["counts"]
    assert list(counts) == list(TABLES)
    for table in TABLES:
        assert counts[table] == scalar(conn, f"SELECT count(*) FROM crm.{table}"), table
    assert counts["profile"] == PROFILES
    assert counts["plan"] == 4
    assert counts["product"] == 50 == counts["inventory"]
    assert 1.3 * PROFILES <= counts["booking"] <= 1.8 * PROFILES
    assert 0.30 * PROFILES <= counts["subscription"] <= 0.40 * PROFILES  # 30 in 100, a tenth of them twice
    assert scalar(conn, "SELECT count(DISTINCT profile_id) FROM crm.subscription") == pytest.approx(
        0.30 * PROFILES, rel=0.1
    )


def test_schema_is_intact_after_generation(generated: dict) -> None:
    """Foreign keys and indexes dropped for the bulk load are all back, unchanged."""
    before, after = generated["schema"]
    assert after == before
    assert any("FOREIGN KEY" in definition for _, definition in after)


def test_another_seed_gives_other_rows(conn: psycopg.Connection, generated: dict) -> None:
    generate_demo_data(conn, PROFILES, seed=7, anchor=ANCHOR)
    other = fingerprint(conn)
    first, _ = generated["fingerprints"]
    assert other["profile"] != first["profile"]
    assert other["booking"] != first["booking"]
    generate_demo_data(conn, PROFILES, seed=42, anchor=ANCHOR)
    assert fingerprint(conn) == first


def test_consent_mix_per_channel(conn: psycopg.Connection, generated: dict) -> None:
    def share(channel: str, status: str | None) -> float:
        if status is None:
            missing = PROFILES - scalar(conn, "SELECT count(*) FROM crm.consent WHERE channel = %s", channel)
            return missing / PROFILES
        count = scalar(conn, "SELECT count(*) FROM crm.consent WHERE channel = %s AND status = %s", channel, status)
        return count / PROFILES

    # ±4 points is about 4 standard deviations at 2,000 profiles.
    assert share("email", "opted_in") == pytest.approx(0.70, abs=0.04)
    assert share("email", "opted_out") == pytest.approx(0.15, abs=0.03)
    assert share("email", "unknown") == pytest.approx(0.10, abs=0.03)
    assert share("email", None) == pytest.approx(0.05, abs=0.02)
    assert share("sms", "opted_in") == pytest.approx(0.35, abs=0.04)
    assert share("direct_mail", None) == pytest.approx(0.35, abs=0.04)
    # Push consent follows the device token: opted in only with one.
    assert scalar(
        conn,
        """
        SELECT count(*) FROM crm.consent c JOIN crm.profile p USING (profile_id)
        WHERE c.channel = 'push' AND c.status = 'opted_in' AND p.push_token IS NULL
        """,
    ) == 0
    sources = {r[0] for r in conn.execute("SELECT DISTINCT source FROM crm.consent")}
    assert {"signup_form", "preference_center", "import"} <= sources
    # The trigger recorded every consent row.
    assert scalar(conn, "SELECT count(*) FROM crm.consent_history") == scalar(conn, "SELECT count(*) FROM crm.consent")


def test_emails_include_missing_invalid_and_duplicate(conn: psycopg.Connection, generated: dict) -> None:
    missing = scalar(conn, "SELECT count(*) FROM crm.profile WHERE nullif(btrim(email), '') IS NULL")
    assert missing / PROFILES == pytest.approx(0.02, abs=0.01)
    invalid = scalar(
        conn, "SELECT count(*) FROM crm.profile WHERE btrim(email) <> '' AND btrim(email) !~ %s", EMAIL_PATTERN
    )
    assert 0 < invalid / PROFILES <= 0.02
    # The same address on two profiles, written differently.
    duplicates = conn.execute(
        """
        SELECT lower(btrim(email)) AS address, array_agg(email ORDER BY profile_id) AS spellings
        FROM crm.profile WHERE btrim(email) ~ %s
        GROUP BY 1 HAVING count(*) > 1
        """,
        (EMAIL_PATTERN,),
    ).fetchall()
    assert 0 < len(duplicates) <= 0.01 * PROFILES
    assert all(len(set(spellings)) > 1 for _, spellings in duplicates)
    # Most addresses follow first.last.<id>@example.com and are unique as written.
    assert scalar(conn, "SELECT count(*) FROM crm.profile WHERE email ~ '^[a-z]+\\.[a-z]+\\.[0-9]+@example\\.com$'") > (
        0.6 * PROFILES
    )


def test_phones_push_addresses_and_locales(conn: psycopg.Connection, generated: dict) -> None:
    no_phone = scalar(conn, "SELECT count(*) FROM crm.profile WHERE phone IS NULL")
    assert no_phone / PROFILES == pytest.approx(0.10, abs=0.03)
    e164 = scalar(conn, "SELECT count(*) FROM crm.profile WHERE phone ~ '^\\+[1-9][0-9]{6,14}$'")
    assert 0 < PROFILES - no_phone - e164 <= 0.03 * PROFILES  # a few malformed numbers
    with_token = scalar(conn, "SELECT count(*) FROM crm.profile WHERE push_token IS NOT NULL")
    assert with_token / PROFILES == pytest.approx(0.40, abs=0.04)
    assert scalar(conn, "SELECT count(*) FROM crm.profile WHERE (push_token IS NULL) <> (push_platform IS NULL)") == 0
    incomplete = scalar(
        conn, "SELECT count(*) FROM crm.profile WHERE address_line1 IS NULL OR postal_code IS NULL OR city IS NULL"
    )
    assert incomplete / PROFILES == pytest.approx(0.05, abs=0.02)
    pairs = dict(conn.execute("SELECT DISTINCT time_zone, locale FROM crm.profile").fetchall())
    assert {"en", "fr", "de", "es", "it"} == set(pairs.values())
    assert pairs["Europe/Paris"] == "fr" and pairs["America/New_York"] == "en" and pairs["Europe/Berlin"] == "de"
    valid_zones = {r[0] for r in conn.execute("SELECT name FROM pg_timezone_names")}
    assert set(pairs) <= valid_zones


def test_suppression_is_normalized(conn: psycopg.Connection, generated: dict) -> None:
    email = scalar(conn, "SELECT count(*) FROM crm.suppression WHERE channel = 'email'")
    assert 0 < email <= 0.01 * PROFILES
    assert scalar(conn, "SELECT count(*) FROM crm.suppression WHERE address <> lower(btrim(address))") == 0
    reasons = {r[0] for r in conn.execute("SELECT DISTINCT reason FROM crm.suppression WHERE channel = 'email'")}
    assert reasons <= {"hard_bounce", "complaint", "unsubscribe"}
    # Each suppressed email belongs to some profile.
    assert scalar(
        conn,
        """
        SELECT count(*) FROM crm.suppression s WHERE s.channel = 'email'
          AND NOT EXISTS (SELECT FROM crm.profile p WHERE lower(btrim(p.email)) = s.address)
        """,
    ) == 0


def test_bookings_subscriptions_and_inventory_reference_existing_rows(
    conn: psycopg.Connection, generated: dict
) -> None:
    orphans = scalar(
        conn,
        """
        SELECT count(*) FROM crm.booking b
        WHERE NOT EXISTS (SELECT FROM crm.profile p WHERE p.profile_id = b.profile_id)
           OR NOT EXISTS (SELECT FROM crm.product p WHERE p.product_id = b.product_id)
        """,
    )
    assert orphans == 0
    assert scalar(
        conn,
        """
        SELECT count(*) FROM crm.subscription s
        WHERE NOT EXISTS (SELECT FROM crm.profile p WHERE p.profile_id = s.profile_id)
           OR NOT EXISTS (SELECT FROM crm.plan p WHERE p.plan_id = s.plan_id)
        """,
    ) == 0
    assert scalar(conn, "SELECT count(*) FROM crm.product p LEFT JOIN crm.inventory i USING (product_id) WHERE i IS NULL") == 0
    assert scalar(conn, "SELECT count(*) FROM crm.inventory WHERE quantity <= reorder_level") > 0
    # Some profiles have several bookings, some none.
    per_profile = dict(
        conn.execute(
            "SELECT n, count(*) FROM (SELECT count(*) AS n FROM crm.booking GROUP BY profile_id) x GROUP BY n"
        ).fetchall()
    )
    assert max(per_profile) >= 4
    assert sum(per_profile.values()) < PROFILES


def test_booking_dates_follow_the_anchor(conn: psycopg.Connection, generated: dict) -> None:
    row = conn.execute(
        "SELECT min(starts_on), max(starts_on), max(booked_at)::date, max(booked_at) < %s::date FROM crm.booking",
        (ANCHOR,),
    ).fetchone()
    assert row[0] >= ANCHOR - timedelta(days=60)
    assert row[1] <= ANCHOR + timedelta(days=120)
    assert row[3] is True  # nothing booked after the anchor
    statuses = dict(
        conn.execute(
            "SELECT status, count(*) FROM crm.booking GROUP BY status"
        ).fetchall()
    )
    assert set(statuses) == {"confirmed", "cancelled", "completed"}
    assert scalar(conn, "SELECT count(*) FROM crm.booking WHERE status = 'confirmed' AND starts_on < %s", ANCHOR) == 0
    assert scalar(conn, "SELECT count(*) FROM crm.booking WHERE status = 'completed' AND starts_on >= %s", ANCHOR) == 0
    # Nothing in the profile or consent data is dated after the anchor either.
    assert scalar(conn, "SELECT count(*) FROM crm.profile WHERE updated_at > %s::date OR created_at > updated_at", ANCHOR) == 0
    assert scalar(conn, "SELECT count(*) FROM crm.consent WHERE updated_at > %s::date", ANCHOR) == 0


def test_a_failed_run_keeps_the_previous_data(conn: psycopg.Connection, generated: dict, tmp_path) -> None:
    """A step failing after the load (here: one appended to a copy of the file) rolls it all back."""
    before, schema = fingerprint(conn), schema_objects(conn)
    broken = tmp_path / "include" / "sql" / "demo" / "generate.sql"
    broken.parent.mkdir(parents=True)
    broken.write_text(demo_sql_file().read_text(encoding="utf-8") + "\n-- step: boom\nSELECT 1 / 0;\n", encoding="utf-8")
    with pytest.raises(psycopg.errors.DivisionByZero):
        generate_demo_data(conn, 500, seed=1, anchor=ANCHOR, paths=ProjectPaths(tmp_path))
    assert fingerprint(conn) == before
    assert schema_objects(conn) == schema
    with pytest.raises(ValueError, match="profiles"):
        generate_demo_data(conn, 0)


def test_generator_file_has_no_stray_percent_signs() -> None:
    """The driver parses %(name)s placeholders; any other percent sign breaks a step."""
    for step in load_steps(demo_sql_file()):
        if step.has_params:
            stray = step.sql.replace("%(", "")
            assert "%" not in stray, step.name


def test_bookings_per_profile_scales_each_profiles_bookings(conn: psycopg.Connection, generated: dict) -> None:
    """For benchmarks at scale (e.g. 5M bookings on 1M profiles); the default data stays as it was."""
    first, _ = generated["fingerprints"]
    default_bookers = {r[0] for r in conn.execute("SELECT DISTINCT profile_id FROM crm.booking")}
    try:
        counts = generate_demo_data(conn, PROFILES, seed=42, anchor=ANCHOR, bookings_per_profile=5)
        assert counts["booking"] == scalar(conn, "SELECT count(*) FROM crm.booking")
        assert counts["booking"] / PROFILES == pytest.approx(5, rel=0.05)
        # Scaled per profile: who books is unchanged, and some book more than 9 times (ids
        # then step by 100 per profile instead of 10).
        assert {r[0] for r in conn.execute("SELECT DISTINCT profile_id FROM crm.booking")} == default_bookers
        assert scalar(conn, "SELECT max(n) FROM (SELECT count(*) AS n FROM crm.booking GROUP BY profile_id) x") > 9
        assert scalar(conn, "SELECT count(*) FROM crm.booking WHERE booking_id / 100 <> profile_id") == 0
        # The other tables are the default ones, row for row; the new bookings are deterministic.
        scaled = fingerprint(conn)
        assert {t: v for t, v in scaled.items() if t != "booking"} == {t: v for t, v in first.items() if t != "booking"}
        generate_demo_data(conn, PROFILES, seed=42, anchor=ANCHOR, bookings_per_profile=5)
        assert fingerprint(conn) == scaled
        with pytest.raises(ValueError, match="bookings_per_profile must be in"):
            generate_demo_data(conn, PROFILES, bookings_per_profile=0)
    finally:
        generate_demo_data(conn, PROFILES, seed=42, anchor=ANCHOR)
    assert fingerprint(conn) == first
