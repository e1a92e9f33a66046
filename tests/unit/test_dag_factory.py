"""The DAG factory's trigger params: set on each campaign DAG without Airflow's per-DAG check
of their defaults (a parse-time cost), so the defaults are checked here, once, and a task
still sees the DAG's params merged with a trigger's values, validated."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.sdk import ParamsDict
from airflow.sdk.definitions.param import process_params
from airflow.sdk.exceptions import ParamValidationError

from campaign_orchestrator.config.loader import load_campaigns
from campaign_orchestrator.dag_factory import build_campaign_dag, trigger_params
from campaign_orchestrator.paths import ProjectPaths

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def campaigns():
    paths = ProjectPaths.discover()
    result = load_campaigns(ROOT / "dags" / "campaigns", paths)
    assert result.configs, "the repository ships demo campaigns"
    return paths, result.configs


def test_every_default_is_valid_against_its_schema(campaigns) -> None:
    _, configs = campaigns
    for _, config in configs.values():
        params = trigger_params(config)
        assert ParamsDict(params).validate() == {name: param.value for name, param in params.items()}


def test_a_task_sees_the_dag_params_merged_with_the_trigger_and_validated(campaigns) -> None:
    paths, configs = campaigns
    path, config = configs["winter_sale"]
    dag = build_campaign_dag(config, path, paths)
    assert set(dag.params) == set(trigger_params(config))
    task = dag.get_task("prepare_run")
    assert dict(task.params) == {}  # not copied into each task: a task run reads the DAG's
    merged = process_params(dag, task, {"dry_run": True, "limit": 10}, suppress_exception=False)
    assert merged["dry_run"] is True and merged["limit"] == 10 and merged["proof_to"] == []
    with pytest.raises(ParamValidationError, match="limit"):
        process_params(dag, task, {"limit": 0}, suppress_exception=False)
