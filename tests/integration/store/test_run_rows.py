"""A run's snapshot and ledger rows go with the run (migration 0012): deleted with it, and
emptied by TRUNCATE … CASCADE, as their foreign keys made them before they were dropped."""

from __future__ import annotations

import pytest

from campaign_orchestrator.run.runs import register_run

pytestmark = pytest.mark.integration


def add_rows(conn, run_key: int) -> None:
    """Two members of the run, and a ledger row for one of them."""
    conn.execute(
        "INSERT INTO campaign.audience_member (run_key, profile_id, entity_key) VALUES (%s, 1, ''), (%s, 2, 'b7')",
        (run_key, run_key),
    )
    conn.execute(
        "INSERT INTO campaign.message (run_key, step_id, profile_id, campaign_id, channel, purpose, seq, status) "
        "VALUES (%s, 'mail', 1, 'c', 'email', 'marketing', 1, 'pending')",
        (run_key,),
    )


def rows_by_run(conn) -> dict[str, list[tuple[int, int]]]:
    return {
        table: conn.execute(
            f"SELECT run_key, count(*)::int FROM campaign.{table} GROUP BY run_key ORDER BY run_key"
        ).fetchall()
        for table in ("audience_member", "message")
    }


def test_deleting_runs_deletes_their_snapshot_and_ledger_rows(store) -> None:
    kept, deleted, also_deleted = (register_run(store, "c", run_id, None, {}) for run_id in ("r1", "r2", "r3"))
    for run_key in (kept, deleted, also_deleted):
        add_rows(store, run_key)
    store.execute("DELETE FROM campaign.run WHERE run_key IN (%s, %s)", (deleted, also_deleted))
    assert rows_by_run(store) == {"audience_member": [(kept, 2)], "message": [(kept, 1)]}


@pytest.mark.parametrize("statement", [
    "TRUNCATE campaign.run CASCADE",
    # as include/sql/demo/generate.sql does, naming the tables the trigger would empty too
    "TRUNCATE campaign.message, campaign.audience_member, campaign.run RESTART IDENTITY CASCADE",
])
def test_truncating_runs_empties_the_snapshot_and_ledger(store, statement) -> None:
    add_rows(store, register_run(store, "c", "r1", None, {}))
    store.execute(statement)
    assert rows_by_run(store) == {"audience_member": [], "message": []}
