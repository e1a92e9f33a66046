"""A scheduled run that starts long after its slot (a DAG unpaused days later) must not send."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from campaign_orchestrator.operators.campaign import PrepareRunOperator


def context(run_type: str, due: datetime) -> dict:
    return {"dag_run": SimpleNamespace(run_type=run_type, run_after=due), "logical_date": due}


def test_only_scheduled_runs_can_be_late() -> None:
    four_days_ago = datetime.now(timezone.utc) - timedelta(days=4)
    late = PrepareRunOperator._lateness(context("scheduled", four_days_ago))
    assert late is not None and late > timedelta(days=3, hours=23)
    assert PrepareRunOperator._lateness(context("DagRunType.SCHEDULED", four_days_ago)) is not None
    assert PrepareRunOperator._lateness(context("manual", four_days_ago)) is None
    assert PrepareRunOperator._lateness(context("asset_triggered", four_days_ago)) is None
    assert PrepareRunOperator._lateness({}) is None
