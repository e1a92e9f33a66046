"""Build one Airflow DAG per campaign config. Called from a thin file in dags/.

Parse-time rules: read YAML and build DAG objects, nothing else. No database, network,
connection or Variable access happens here; the tasks do that when they run. When Airflow
runs a single task it tells us which DAG it needs (the parsing context) and only that
campaign is built.

A broken config does not take the other campaigns down and does not disappear: it becomes
a placeholder DAG (tag ``invalid-config``) whose docs show the errors and whose only task
fails with them, and the companion file ``dags/campaign_config_errors.py`` raises them as an
import error, which the Airflow UI lists prominently.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from campaign_orchestrator.config.loader import ConfigError, LoadResult, load_campaigns
from campaign_orchestrator.config.schedule import CRON_PRESETS
from campaign_orchestrator.paths import ProjectPaths

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from campaign_orchestrator.config.campaign import CampaignConfig

INVALID_TAG = "invalid-config"


def build_dags(namespace: dict[str, Any], config_dir: Path | None = None) -> LoadResult:
    """Build every campaign's DAG (or only the one Airflow asks for) into ``namespace``."""
    from airflow.sdk import get_parsing_context

    paths = ProjectPaths.discover()
    wanted = get_parsing_context().dag_id
    result = load_campaigns(config_dir or paths.campaigns, paths, only_id=wanted)
    for campaign_id, (path, config) in result.configs.items():
        namespace[f"campaign_{campaign_id}"] = build_campaign_dag(config, path, paths)
    for error in result.errors:
        if wanted is None or wanted == error.campaign_id:
            namespace[f"invalid_campaign_{error.campaign_id}"] = build_invalid_dag(error)
    return result


def build_campaign_dag(config: CampaignConfig, path: Path, paths: ProjectPaths) -> DAG:
    from airflow.sdk import DAG, TriggerRule

    from campaign_orchestrator.operators.campaign import (
        EvaluateAudienceOperator,
        FinalizeRunOperator,
        PlanBatchesOperator,
        PrepareRunOperator,
        SaveAudienceOperator,
        SendBatchOperator,
        TargetStepOperator,
        WaitStepOperator,
    )
    from campaign_orchestrator.config.journey import in_flow_order

    schedule, start, end = schedule_of(config)
    common = {"campaign_file": str(path), "campaign_id": config.id}
    with DAG(
        dag_id=config.id,
        description=config.description[:200] or None,
        doc_md=_doc(config, path),
        schedule=schedule,
        start_date=start,
        end_date=end,
        catchup=False,
        # Overlapping runs of one campaign would each send to the same people.
        max_active_runs=1,
        tags=sorted({"campaign", *config.tags}),
        default_args={
            "owner": config.owner,
            "retries": config.retries,
            "retry_delay": config.retry_delay,
            "retry_exponential_backoff": False,
        },
        template_searchpath=[str(paths.sql), str(paths.templates)],
    ) as dag:
        prepare = PrepareRunOperator(task_id="prepare_run", **common)
        evaluate = EvaluateAudienceOperator(task_id="evaluate_audience", **common)
        finalize = FinalizeRunOperator(
            task_id="finalize_report",
            trigger_rule=TriggerRule.ALL_DONE,
            retries=0,
            # Updated only when the run succeeds: campaigns scheduled `after` this one start then.
            outlets=[completed_asset(config.id)],
            **common,
        )
        if config.requires_fresh:
            from campaign_orchestrator.ingestion.operators import CheckFreshnessOperator

            # Waits deferred for fresh data, as long as a late scheduled run is still sent.
            wait_up_to = config.late_run_tolerance or timedelta(hours=2)
            check = CheckFreshnessOperator(
                task_id="check_freshness", retries=0, timeout=wait_up_to.total_seconds(),
                requirements={table: age.total_seconds() for table, age in config.requires_fresh.items()},
            )
            prepare >> check >> evaluate
        else:
            prepare >> evaluate
        if config.audience.save_as is not None:
            save = SaveAudienceOperator(task_id="save_audience", **common)
            evaluate >> save >> finalize
        # Each step is a start task (what the steps after it wait for comes from its done
        # tasks). Root steps start from the evaluated audience; the others from the steps
        # they follow, once those are done.
        starts: dict[str, Any] = {}
        dones: dict[str, list[Any]] = {}
        for step in in_flow_order(config):
            # A step after others goes on when all of them are done and none failed: a skipped
            # send (nothing to send) is fine, a failed one stops the branch.
            rule = {"trigger_rule": TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS} if step.after else {}
            if step.channel == "wait":
                task_id = step.id if step.id.startswith("wait") else f"wait_{step.id}"  # not wait_wait_...
                wait = WaitStepOperator(task_id=task_id, step_id=step.id, **rule, **common)
                starts[step.id], dones[step.id] = wait, [wait]
                continue
            target = TargetStepOperator(task_id=f"target_{step.id}", step_id=step.id, **rule, **common)
            if step.channel == "direct_mail":
                from campaign_orchestrator.operators.direct_mail import ExportDirectMailOperator

                # One extract per run: the whole step is a single, idempotent export.
                export = ExportDirectMailOperator(task_id=f"export_{step.id}", step_id=step.id, **common)
                target >> export
                starts[step.id], dones[step.id] = target, [export]
                continue
            plan = PlanBatchesOperator(task_id=f"plan_{step.id}", step_id=step.id, **common)
            send = SendBatchOperator.partial(
                task_id=f"send_{step.id}",
                step_id=step.id,
                map_index_template=(
                    "batch {{ task.batch['index'] }}/{{ task.batch['of'] }} · "
                    "{{ '{:,}'.format(task.batch['size']) }} msgs"
                ),
                **common,
            ).expand(batch=plan.output)
            target >> plan >> send
            # A step with nothing to send skips its mapped sends; the plan's success still
            # lets the steps after it go on.
            starts[step.id], dones[step.id] = target, [plan, send]
        for step in config.steps:
            start = starts[step.id]
            if not step.after:
                evaluate >> start
                continue
            for ref in step.after:
                dones[ref] >> start
        for step in config.steps:
            dones[step.id] >> finalize
    # The params go in once the tasks exist, through the DAG's own ParamsDict (storing Param
    # objects validates nothing). Given to DAG(), Airflow deep-copies them into each task it
    # creates (once per __init__ of the task's class hierarchy) and checks every default
    # against its JSON Schema, for each scheduled campaign: half the parse time of a thousand
    # campaigns (bench/bench_parse.py). A task run merges the DAG's params with the trigger's
    # values and validates those (process_params); the defaults are constants, checked once
    # by the unit tests.
    dag.params.update(trigger_params(config))
    return dag


def trigger_params(config: CampaignConfig) -> dict[str, Any]:
    """The trigger form's params (the on-demand options of a run)."""
    from airflow.sdk import Param

    return {
        "override_max_audience": Param(
            False,
            type="boolean",
            title="Override the audience-size guardrail",
            description=f"Send even if the audience exceeds guardrails.max_audience "
            f"({config.guardrails.max_audience or 'not set'}).",
        ),
        "audience_params": Param(
            {},
            type="object",
            title="Audience parameters for this run",
            description="Override the config's audience params, e.g. {\"min_bookings\": 3}; a block's "
            "param by its name, or as {\"<block>__<name>\": value} when several blocks have it. "
            "An unknown name fails the run (with the valid names).",
        ),
        "limit": Param(
            None, type=["null", "integer"], minimum=1, title="Limit",
            description="Target at most this many audience members (first by profile id).",
        ),
        "dry_run": Param(
            False, type="boolean", title="Dry run",
            description="Render every message to files (.out/dry-runs/ or $CAMPAIGNS_DRY_RUN_DIR); send nothing.",
        ),
        "proof_to": Param(
            [], type="array", items={"type": "string"}, title="Send proofs to",
            description="Only send each step's message to these test addresses, personalized with "
            "proof_profile_id; the audience and the ledger are not touched.",
        ),
        "time_scale": Param(
            1.0, type="number", minimum=0, title="Time scale of waits",
            description="Multiply every wait step by this: 1 is real time; 0.001 turns two days "
            "into three minutes for a rehearsal; 0 skips the waits.",
        ),
        "resend_slot": Param(
            False, type="boolean", title="Send this slot again",
            description="A scheduled slot (this logical date) is sent once: a run Airflow recreates for it "
            "carries on from the earlier run's ledger. Tick to send the slot a second time, to everyone.",
        ),
        "proof_profile_id": Param(
            None, type=["null", "integer"], title="Proof profile",
            description="Whose data personalizes the proofs.",
        ),
    }


def build_invalid_dag(error: ConfigError, kind: str = "campaign", command: str = "campaigns validate") -> DAG:
    """The placeholder DAG of a broken config file (a campaign, or an ingestion source)."""
    from airflow.sdk import DAG

    from campaign_orchestrator.operators.campaign import ConfigErrorOperator

    rendered = error.render()
    with DAG(
        dag_id=error.campaign_id,
        description=f"INVALID CONFIG: {error.problems[0].message}"[:200],
        doc_md=f"## This {kind}'s config is invalid\n\n```\n{rendered}\n```\n\nRun `{command}` locally.",
        schedule=None,
        start_date=datetime(2020, 1, 1, tzinfo=ZoneInfo("UTC")),
        catchup=False,
        tags=[INVALID_TAG],
    ) as dag:
        ConfigErrorOperator(task_id="config_error", errors=rendered, retries=0)
    return dag


def config_error_summary(config_dir: Path | None = None) -> str | None:
    """All config errors as one message, or None: raised by dags/campaign_config_errors.py."""
    paths = ProjectPaths.discover()
    result = load_campaigns(config_dir or paths.campaigns, paths)
    if result.ok:
        return None
    files = "\n\n".join(error.render() for error in result.errors)
    return (
        f"{len(result.errors)} campaign config file(s) are invalid; their DAGs fail until fixed "
        f"(the other campaigns are unaffected):\n\n{files}"
    )


def schedule_of(config: CampaignConfig) -> tuple[Any, datetime, datetime | None]:
    from airflow.sdk import CronTriggerTimetable

    tz = ZoneInfo(config.timezone)
    valid = config.valid
    # A manual campaign needs no window: it runs when triggered, from any date on.
    start = _localize(valid.start, tz) if valid is not None else datetime(2020, 1, 1, tzinfo=tz)
    end = _localize(valid.end, tz, end_of_day=True) if valid is not None and valid.end is not None else None
    sched = config.schedule
    if sched.manual:
        return None, start, end
    if sched.after or sched.on_data:
        # Every listed asset must have been updated since the last run (Airflow's AND).
        return [completed_asset(c) for c in sched.after] + [data_asset(t) for t in sched.on_data], start, end
    if sched.once is not None:
        return "@once", _localize(sched.once, tz), end
    cron = CRON_PRESETS.get(sched.cron, sched.cron)  # type: ignore[arg-type]  # cron is set here
    # Trigger semantics: a campaign scheduled at 09:00 runs at 09:00 local time, not at the
    # end of a data interval; the time zone makes DST changes move with local time.
    return CronTriggerTimetable(cron, timezone=config.timezone), start, end


def completed_asset(campaign_id: str):
    """The Asset a campaign's successful run updates: its end, which other campaigns can follow."""
    from airflow.sdk import Asset

    return Asset(name=f"campaign_completed_{campaign_id}", uri=f"campaign://{campaign_id}/completed")


def data_asset(table: str):
    """The Asset an ingestion updates when it has loaded new rows into a store table."""
    from airflow.sdk import Asset

    schema, name = table.split(".", 1)
    return Asset(name=f"campaign_store_{schema}_{name}", uri=f"campaign-store://{schema}/{name}")


def _localize(value: datetime | date, tz: ZoneInfo, end_of_day: bool = False) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=tz)
    moment = datetime.combine(value, time.max if end_of_day else time.min)
    return moment.replace(tzinfo=tz) if not end_of_day else moment.replace(tzinfo=tz, microsecond=0)


def _audience_doc(config: CampaignConfig) -> str:
    if config.audience.sql is not None:
        return f"`include/sql/{config.audience.sql}`"
    return "blocks " + ", ".join(f"`{name}`" for name in config.audience.blocks)


def _step_doc(step: Any) -> str:
    after = f" after {', '.join(step.after)}" if step.after else ""
    if step.channel == "wait":
        wait = step.wait
        what = f"until {wait.until} ({wait.timezone})" if hasattr(wait, "until") else str(wait)
        return f"- **{step.id}**: wait {what}{after}"
    text = f"- **{step.id}**: {step.channel} ({step.purpose})" + (
        f", template `{step.template}`" if hasattr(step, "template") else ""
    )
    conditions = " and ".join(c.describe() for c in step.when)
    return text + after + (f", when {conditions}" if conditions else "")


def _doc(config: CampaignConfig, path: Path) -> str:
    steps = "\n".join(_step_doc(s) for s in config.steps)
    return (
        f"### {config.id}\n\n{config.description}\n\n"
        f"- config: `{path.name}`\n- audience: {_audience_doc(config)}\n"
        f"- owner: {config.owner}\n\n**Steps**\n\n{steps}\n"
    )


__all__ = ["build_campaign_dag", "build_dags", "build_invalid_dag", "config_error_summary"]
