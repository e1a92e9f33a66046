"""`campaigns store demo-data` replaces only what it generated, and never empties a table it
does not own (a user's table referencing crm.profile, anyone's customers, campaign history)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from campaign_orchestrator.cli import main
from campaign_orchestrator.store.demo_data import DemoDataRefused, generate_demo_data
from tests.fixtures.store import add_profiles

pytestmark = pytest.mark.integration


@pytest.fixture
def own_table(store: psycopg.Connection) -> Iterator[str]:
    """A user's own table with a foreign key to crm.profile, dropped after the test (the
    session's store is shared, and other tests regenerate demo data in it)."""
    store.execute("CREATE SCHEMA IF NOT EXISTS myco")
    store.execute(
        "CREATE TABLE myco.class_booking (class_booking_id bigint PRIMARY KEY, "
        "profile_id bigint NOT NULL REFERENCES crm.profile ON DELETE CASCADE, title text)"
    )
    try:
        yield "myco.class_booking"
    finally:
        store.execute("DROP SCHEMA myco CASCADE")


def _count(conn: psycopg.Connection, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # test's own table names


def test_a_referencing_table_with_rows_is_never_emptied_even_with_force(store, own_table):
    generate_demo_data(store, profiles=200, seed=3)
    store.execute(f"INSERT INTO {own_table} SELECT profile_id, profile_id, 'yoga' FROM crm.profile LIMIT 40")
    for force in (False, True):
        with pytest.raises(DemoDataRefused, match=r"myco\.class_booking references crm\.profile .*40 rows"):
            generate_demo_data(store, profiles=300, seed=4, force=force)
    assert _count(store, own_table) == 40
    assert _count(store, "crm.profile") == 200  # the refusal changed nothing


def test_an_empty_referencing_table_is_left_alone_and_the_data_replaced(store, own_table):
    generate_demo_data(store, profiles=200, seed=3)
    counts = generate_demo_data(store, profiles=300, seed=4)
    assert counts["profile"] == 300 == _count(store, "crm.profile")
    # Its foreign key survives (the generator drops and restores only its own tables' keys).
    constraints = store.execute(
        "SELECT count(*) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f'", (own_table,)
    ).fetchone()[0]
    assert constraints == 1


def test_data_it_did_not_generate_is_refused_unless_forced(store):
    add_profiles(store, [{"profile_id": 900_001, "email": "real@customer.example", "consent": {"email": "opted_in"}}])
    with pytest.raises(DemoDataRefused, match=r"not filled by demo-data: crm\.profile has 1 rows"):
        generate_demo_data(store, profiles=100, seed=1)
    assert _count(store, "crm.profile") == 1
    generate_demo_data(store, profiles=100, seed=1, force=True)
    assert _count(store, "crm.profile") == 100


def test_rows_added_or_changed_after_generation_are_refused(store):
    generate_demo_data(store, profiles=100, seed=1)
    add_profiles(store, [{"profile_id": 900_002, "email": "new@customer.example"}])
    with pytest.raises(DemoDataRefused, match=r"crm\.profile has 101 rows; demo-data generated 100"):
        generate_demo_data(store, profiles=100, seed=1)
    store.execute("DELETE FROM crm.profile WHERE profile_id = 900002")
    store.execute("UPDATE crm.profile SET first_name = 'Changed' WHERE profile_id = 7")
    with pytest.raises(DemoDataRefused, match=r"rows of crm\.profile were changed"):
        generate_demo_data(store, profiles=100, seed=1)


def test_campaign_history_made_on_demo_data_is_replaced_with_it(store):
    generate_demo_data(store, profiles=100, seed=1)
    store.execute("INSERT INTO campaign.run (campaign_id, dag_run_id) VALUES ('winter_sale', 'manual__1')")
    generate_demo_data(store, profiles=100, seed=1)  # the demo's own runs go with the demo data
    assert _count(store, "campaign.run") == 0


def test_the_cli_refuses_with_the_reason_and_the_way_out(store, capsys):
    add_profiles(store, [{"profile_id": 900_003, "email": "real@customer.example"}])
    assert main(["store", "demo-data", "--profiles", "50"]) == 1
    err = capsys.readouterr().err
    assert "replaces only data it generated" in err and "crm.profile has 1 rows" in err and "--force" in err
    assert _count(store, "crm.profile") == 1
