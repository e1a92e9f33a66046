"""Batch bounds: contiguous, complete, and never more than Airflow will map."""

from __future__ import annotations

from campaign_orchestrator.run.targeting import plan_batches


def test_batches_cover_every_message_once_in_order() -> None:
    batches = plan_batches(2_345, 1_000)
    assert [(b["lo"], b["hi"], b["size"]) for b in batches] == [(1, 1000, 1000), (1001, 2000, 1000), (2001, 2345, 345)]
    assert {b["of"] for b in batches} == {3} and [b["index"] for b in batches] == [1, 2, 3]
    assert plan_batches(0, 1_000) == []


def test_a_large_audience_gets_larger_batches_instead_of_more_than_max_map_length() -> None:
    # 1M messages in batches of 500 would be 2,000 mapped tasks; Airflow expands 1,024 at most.
    batches = plan_batches(1_000_000, 500, max_batches=1_024)
    assert len(batches) == 1_024
    assert batches[0]["lo"] == 1 and batches[-1]["hi"] == 1_000_000
    assert all(a["hi"] + 1 == b["lo"] for a, b in zip(batches, batches[1:]))
    assert sum(b["size"] for b in batches) == 1_000_000
    # Below the cap, the configured size stands.
    assert len(plan_batches(10_000, 500, max_batches=1_024)) == 20
