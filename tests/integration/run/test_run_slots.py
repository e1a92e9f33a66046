"""A scheduled slot (campaign + logical date) is one send, whatever Airflow does with its runs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from campaign_orchestrator.run.runs import register_dag_run, register_run

pytestmark = pytest.mark.integration

SLOT = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def _runs(store, campaign_id="slotted"):
    return store.execute(
        "SELECT run_key, dag_run_id, slot_generation, replaced_run_ids, status FROM campaign.run "
        "WHERE campaign_id = %s ORDER BY run_key",
        (campaign_id,),
    ).fetchall()


def test_a_recreated_run_of_a_slot_adopts_the_earlier_run(store):
    first = register_dag_run(store, "slotted", "scheduled__2026-12-07T09:00", SLOT, {})
    store.execute("UPDATE campaign.run SET status = 'succeeded', finished_at = now() WHERE run_key = %s", (first.run_key,))
    again = register_dag_run(store, "slotted", "manual__2026-12-07T09:00:00+00:00", SLOT, {})
    assert again.run_key == first.run_key and again.adopted_from == "scheduled__2026-12-07T09:00"
    assert "carrying on from its ledger" in again.describe("slotted", SLOT)
    ((run_key, dag_run_id, generation, replaced, status),) = _runs(store)
    assert (dag_run_id, generation, replaced, status) == (
        "manual__2026-12-07T09:00:00+00:00", 0, ["scheduled__2026-12-07T09:00"], "running"
    )
    # The tasks of the new DAG run find it by their run id; a retry of theirs too.
    assert register_run(store, "slotted", "manual__2026-12-07T09:00:00+00:00", SLOT, {}) == first.run_key


def test_resend_slot_is_a_new_generation_with_its_own_ledger(store):
    first = register_dag_run(store, "slotted", "r1", SLOT, {})
    resent = register_dag_run(store, "slotted", "r2", SLOT, {"resend_slot": True}, resend_slot=True)
    assert resent.run_key != first.run_key and resent.generation == 1 and resent.resent
    assert "Deliberate resend" in resent.describe("slotted", SLOT)
    # A later recreation of the slot carries on from the latest generation.
    third = register_dag_run(store, "slotted", "r3", SLOT, {})
    assert third.run_key == resent.run_key and third.adopted_from == "r2"


def test_dry_runs_neither_adopt_nor_are_adopted(store):
    dry = register_dag_run(store, "slotted", "dry", SLOT, {"dry_run": True})
    real = register_dag_run(store, "slotted", "real", SLOT, {})
    assert real.run_key != dry.run_key and real.adopted_from is None and not real.resent
    rehearsal = register_dag_run(store, "slotted", "dry2", SLOT, {"dry_run": True})
    assert rehearsal.run_key not in (dry.run_key, real.run_key)
    assert [g for _, _, g, _, _ in _runs(store)] == [0, 1, 2]


def test_runs_without_a_logical_date_are_each_their_own(store):
    a = register_dag_run(store, "slotted", "manual__a", None, {})
    b = register_dag_run(store, "slotted", "manual__b", None, {})
    assert a.run_key != b.run_key and b.adopted_from is None


def test_slots_of_other_campaigns_and_dates_are_apart(store):
    a = register_dag_run(store, "slotted", "x", SLOT, {})
    b = register_dag_run(store, "other", "x", SLOT, {})
    c = register_dag_run(store, "slotted", "y", datetime(2026, 12, 14, 9, 0, tzinfo=UTC), {})
    assert len({a.run_key, b.run_key, c.run_key}) == 3
