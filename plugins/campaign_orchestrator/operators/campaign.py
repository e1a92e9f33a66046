"""The tasks of a campaign run. Each operator stores its arguments and calls the library.

Operators open no connection in ``__init__``: DAG files build them at parse time. At run time
each task reloads its campaign's config from the same file the DAG was built from, and finds
its run in the store by the DAG run id, so XCom carries only counts and batch bounds.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from campaign_orchestrator.channels.base import TransientSendError
from campaign_orchestrator.config.loader import CampaignFileError, load_campaign
from campaign_orchestrator.paths import ProjectPaths
from campaign_orchestrator.store.connect import store_connection

if TYPE_CHECKING:
    import psycopg
    from airflow.sdk import Context

    from campaign_orchestrator.config.campaign import CampaignConfig

log = logging.getLogger(__name__)

QUIET_HOURS_RECHECK = timedelta(minutes=15)
"""How long a batch waiting for quiet hours to end sleeps (deferred, no worker slot) between tries."""


class CampaignOperator(BaseOperator):
    """Base of the campaign tasks: knows its campaign file and how to reach the store."""

    ui_color = "#e8f1fb"

    def __init__(self, *, campaign_file: str, campaign_id: str, store_conn_id: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.campaign_file = campaign_file
        self.campaign_id = campaign_id
        self.store_conn_id = store_conn_id

    @cached_property
    def paths(self) -> ProjectPaths:
        return ProjectPaths.discover()

    @cached_property
    def campaign(self) -> CampaignConfig:
        path = Path(self.campaign_file)
        try:
            loaded = load_campaign(path, self.paths)
        except CampaignFileError as exc:
            raise AirflowFailException(f"The campaign config is invalid:\n{exc}") from exc
        if loaded.id != self.campaign_id:
            raise AirflowFailException(f"{path} no longer defines campaign {self.campaign_id!r}")
        return loaded

    def connect(self) -> psycopg.Connection:
        return store_connection(self.store_conn_id)

    def run_key(self, conn: psycopg.Connection, context: Context) -> int:
        row = conn.execute(
            "SELECT run_key FROM campaign.run WHERE campaign_id = %s AND dag_run_id = %s",
            (self.campaign_id, context["run_id"]),
        ).fetchone()
        if row is None:
            raise AirflowFailException(
                f"run {context['run_id']} of {self.campaign_id} is not registered; the prepare task must run first"
            )
        return int(row[0])


class PrepareRunOperator(CampaignOperator):
    """Apply pending store migrations, check templates, and register the run."""

    def execute(self, context: Context) -> dict[str, Any]:
        from campaign_orchestrator.run.checks import check_campaign_templates, check_profile_fields
        from campaign_orchestrator.run.runs import register_dag_run
        from campaign_orchestrator.store.migrations import migrate

        config = self.campaign
        problems = check_campaign_templates(config, self.paths)
        if problems:
            raise AirflowFailException("Templates of this campaign cannot be rendered:\n" + "\n".join(problems))
        self._check_unsubscribe(config)
        self._check_tracking(config)
        params = dict(context.get("params") or {})
        if params.get("proof_to"):
            self._send_proofs(config, params)
            raise AirflowSkipException("Proof run: proofs sent to the seed addresses; the audience is not touched")
        with self.connect() as conn:
            applied = migrate(conn, self.paths.migrations)
            if applied:
                log.info("Applied store migrations: %s", ", ".join(m.path.name for m in applied))
            problems = check_profile_fields(conn, config, self.paths)
            if problems:
                raise AirflowFailException("Templates use fields the store lacks:\n" + "\n".join(problems))
            registered = register_dag_run(
                conn, config.id, context["run_id"], context.get("logical_date"), params,
                resend_slot=bool(params.get("resend_slot")),
            )
            run_key = registered.run_key
            log.info(registered.describe(config.id, context.get("logical_date")))
            late = self._lateness(context)
            if late is not None and config.late_run_tolerance is not None and late > config.late_run_tolerance:
                conn.execute(
                    "UPDATE campaign.run SET status = 'skipped', finished_at = now() WHERE run_key = %s", (run_key,)
                )
                raise AirflowSkipException(
                    f"This scheduled run was due {late} ago (more than late_run_tolerance "
                    f"{config.late_run_tolerance}), e.g. because the DAG was just unpaused: nothing is sent. "
                    f"Trigger the campaign by hand to send now."
                )
        return {"run_key": run_key, "adopted_from": registered.adopted_from}

    @staticmethod
    def _lateness(context: Context) -> timedelta | None:
        """How late a scheduled run starts; None for manual and asset-triggered runs."""
        dag_run = context.get("dag_run")
        if dag_run is None or str(getattr(dag_run, "run_type", "")).lower().rsplit(".", 1)[-1] != "scheduled":
            return None
        due = getattr(dag_run, "run_after", None) or context.get("logical_date")
        return datetime.now(timezone.utc) - due if due else None

    @staticmethod
    def _check_unsubscribe(config: CampaignConfig) -> None:
        """Marketing email needs its signed unsubscribe link: fail the run now, not each message."""
        if not any(s.channel == "email" and s.purpose == "marketing" for s in config.message_steps):
            return
        from campaign_orchestrator.unsubscribe.tokens import UnsubscribeNotConfigured, load_settings

        try:
            load_settings().url("")
        except UnsubscribeNotConfigured as exc:
            raise AirflowFailException(
                f"Marketing emails need a one-click unsubscribe link (RFC 8058): {exc}"
            ) from exc

    @staticmethod
    def _check_tracking(config: CampaignConfig) -> None:
        """An email step that tracks opens or clicks needs a signing secret: fail the run now."""
        if not any(s.channel == "email" and (s.tracks.opens or s.tracks.clicks) for s in config.message_steps):
            return
        from campaign_orchestrator.tracking.settings import TrackingNotConfigured, load_settings

        try:
            load_settings().endpoint  # noqa: B018 - a base URL is needed, not only a secret
        except TrackingNotConfigured as exc:
            raise AirflowFailException(f"Tracked emails need signed tracking links: {exc}") from exc

    def _send_proofs(self, config: CampaignConfig, params: dict[str, Any]) -> None:
        from campaign_orchestrator.run.proof import ProofError, send_proof

        profile_id = params.get("proof_profile_id")
        if profile_id is None:
            raise AirflowFailException("proof_to needs proof_profile_id: whose data personalizes the proof")
        failed = []
        with self.connect() as conn:
            for step in config.message_steps:
                if step.channel == "direct_mail":
                    log.info("Step %s: direct mail has no proof send", step.id)
                    continue
                try:
                    results = send_proof(conn, config, step, self.paths, int(profile_id), list(params["proof_to"]))
                except ProofError as exc:
                    raise AirflowFailException(f"step {step.id}: {exc}") from exc
                for address, outcome in results:
                    log.info("Proof of step %s to %s: %s %s", step.id, address, outcome.status, outcome.error or "")
                    if outcome.status != "sent":
                        failed.append(f"{step.id} -> {address}: {outcome.reason} {outcome.error or ''}")
        if failed:
            raise AirflowFailException("Some proofs were not sent:\n" + "\n".join(failed))


class EvaluateAudienceOperator(CampaignOperator):
    """Evaluate the audience SQL inside PostgreSQL into the run's frozen snapshot."""

    def execute(self, context: Context) -> dict[str, Any]:
        from campaign_orchestrator.audience.compile import AudienceCompileError, compile_audience
        from campaign_orchestrator.run.audience import AudienceError, GuardrailExceeded, evaluate_audience

        config = self.campaign
        params = context.get("params") or {}
        limit = None if params.get("override_max_audience") else config.guardrails.max_audience
        with self.connect() as conn:
            run_key = self.run_key(conn, context)
            try:
                audience = compile_audience(config, self.paths, dict(params.get("audience_params") or {}))
                if params.get("limit"):
                    audience = audience.limited(int(params["limit"]))
                result = evaluate_audience(
                    conn, run_key, audience, None, limit, config.audience.holdout, config.audience.split
                )
            except (AudienceCompileError, AudienceError, GuardrailExceeded) as exc:
                raise AirflowFailException(str(exc)) from exc
        log.info("Audience: %s members%s", f"{result.size:,}", " (frozen earlier)" if result.frozen_earlier else "")
        return {"audience_size": result.size}


class SaveAudienceOperator(CampaignOperator):
    """Save the run's evaluated audience as a new version of a named saved audience."""

    def execute(self, context: Context) -> dict[str, Any]:
        from campaign_orchestrator.audience.saved import save_audience

        save_as = self.campaign.audience.save_as
        assert save_as is not None
        with self.connect() as conn:
            saved = save_audience(
                conn, self.run_key(conn, context), self.campaign_id, context["run_id"], save_as.name, save_as.retention
            )
        log.info("Saved audience %s version %s: %s members", saved.name, saved.version, f"{saved.size:,}")
        return {"name": saved.name, "version": saved.version, "size": saved.size}


class TargetStepOperator(CampaignOperator):
    """Apply consent, suppression and address rules of one step; write its ledger rows."""

    def __init__(self, *, step_id: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.step_id = step_id

    def execute(self, context: Context) -> dict[str, Any]:
        from campaign_orchestrator.run.targeting import target_step

        config = self.campaign
        step = config.step(self.step_id)
        with self.connect() as conn:
            result = target_step(conn, self.run_key(conn, context), config, step)
        for reason, count in result.excluded.items():
            log.info("Excluded %s: %s", reason, f"{count:,}")
        log.info("Step %s: %s sendable messages", step.id, f"{result.sendable:,}")
        return {"sendable": result.sendable, "excluded": result.excluded}


class PlanBatchesOperator(CampaignOperator):
    """Cut a step's sendable messages into batch bounds, the only thing mapped sends receive."""

    def __init__(self, *, step_id: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.step_id = step_id

    def execute(self, context: Context) -> list[dict[str, int]]:
        from campaign_orchestrator.run.targeting import plan_batches

        with self.connect() as conn:
            row = conn.execute(
                "SELECT sendable FROM campaign.run_step WHERE run_key = %s AND step_id = %s",
                (self.run_key(conn, context), self.step_id),
            ).fetchone()
        sendable = int(row[0]) if row else 0
        max_batches = _max_map_length()
        batches = plan_batches(sendable, self.campaign.batch_size, max_batches)
        if not batches:
            log.info("Nothing to send for step %s: the send tasks are skipped", self.step_id)
            return batches
        largest = batches[0]["size"]
        log.info("%s messages in %s batches of up to %s", f"{sendable:,}", len(batches), f"{largest:,}")
        if largest > self.campaign.batch_size:
            log.warning(
                "batch_size %s would make more than %s mapped send tasks (Airflow's core.max_map_length): "
                "batches hold up to %s messages instead", self.campaign.batch_size, max_batches, largest,
            )
        return batches


def _max_map_length() -> int:
    """How many mapped task instances Airflow expands at most (``[core] max_map_length``)."""
    from airflow.configuration import conf

    return conf.getint("core", "max_map_length", fallback=1024)


class SendBatchOperator(CampaignOperator):
    """Send one batch of one step; mapped over the planned batch bounds."""

    template_fields = ("batch",)

    def __init__(self, *, step_id: str, batch: dict[str, int] | Any, **kwargs) -> None:
        super().__init__(**kwargs)
        self.step_id = step_id
        self.batch = batch

    def execute(self, context: Context) -> dict[str, Any]:
        from campaign_orchestrator.channels.factory import build_channel
        from campaign_orchestrator.channels.registry import effective_connection_id
        from campaign_orchestrator.run.enrichment import EnrichmentError, step_enrichment
        from campaign_orchestrator.run.send import Batch, BatchSender, CircuitBreakerOpen, SendPolicy
        from campaign_orchestrator.run.throttle import NoLimit, build_limiter

        config = self.campaign
        step = config.step(self.step_id)
        batch = Batch.from_xcom(self.batch)
        with self.connect() as conn:
            run_key = self.run_key(conn, context)
            window_opened_at = self._window_opened_at(conn, run_key, config, step)
        policy = SendPolicy(
            deadline=window_opened_at + config.send_window if config.send_window else None,
            max_error_rate=config.guardrails.max_error_rate,
            min_messages=config.guardrails.error_rate_min_messages,
        )
        renderer, open_sender = build_channel(step, config, run_key, self.paths)
        try:
            enrichment = step_enrichment(config, step, renderer.template_fields, self.paths)
        except EnrichmentError as exc:
            raise AirflowFailException(str(exc)) from exc
        dry_run = bool((context.get("params") or {}).get("dry_run"))
        if dry_run:
            from campaign_orchestrator.channels.dry_run import FileSender, dry_run_folder

            folder = dry_run_folder(self.paths.root, config.id, context["run_id"], step.id)
            open_sender = partial(FileSender, folder)
            log.info("Dry run: messages are rendered to %s; nothing is sent", folder)
        policies = self._policies()
        limiter = NoLimit() if dry_run else build_limiter(
            self.connect,
            channel=step.channel,
            conn_id=effective_connection_id(step),
            provider=getattr(step, "provider", None),
            campaign_id=config.id,
            step_id=step.id,
            step_rate=step.rate_per_second,
            paths=self.paths,
        )
        sender = BatchSender(
            self.connect, run_key, step, renderer, open_sender,
            on_uncertain=config.on_uncertain, limiter=limiter, policy=policy, dry_run=dry_run,
            frequency_caps=() if dry_run else policies.frequency_caps,
            quiet_hours=() if dry_run else policies.quiet_rules(step.channel),
            enrichment=enrichment,
        )
        log.info("Sending %s of step %s", batch.label(), step.id)
        started = time.monotonic()
        try:
            stats = sender.run(batch)
        except TransientSendError as exc:
            # An ordinary failure: Airflow retries the task, which resumes from the ledger.
            raise RuntimeError(str(exc)) from exc
        except CircuitBreakerOpen as exc:
            # Retrying would burn more of the list: fail for good, an operator decides.
            raise AirflowFailException(str(exc)) from exc
        finally:
            limiter.close()
        from campaign_orchestrator.metrics import emit_batch

        emit_batch(config.id, step.id, step.channel, stats, time.monotonic() - started)
        if stats.deferred:
            # Quiet hours in some recipients' time zones, or their own send times still ahead:
            # free the worker slot and come back.
            from airflow.providers.standard.triggers.temporal import DateTimeTrigger

            wake = datetime.now(timezone.utc) + QUIET_HOURS_RECHECK
            if stats.resume_at is not None:
                wake = min(wake, stats.resume_at)
            if policy.deadline is not None:
                wake = min(wake, policy.deadline)
            log.info("%s: %d messages wait for quiet hours to end or for their send time; deferring until %s",
                     batch.label(), stats.deferred, wake)
            self.defer(trigger=DateTimeTrigger(moment=wake), method_name="resume_after_quiet_hours")
        log.info("%s done: %s", batch.label(), stats.as_dict())
        return stats.as_dict()

    def resume_after_quiet_hours(self, context: Context, event: Any = None) -> dict[str, Any]:
        return self.execute(context)

    @staticmethod
    def _window_opened_at(conn: psycopg.Connection, run_key: int, config: CampaignConfig, step: Any) -> datetime:
        """When the step's send window opens: when it was targeted (the run's start for a
        first step; after the waits for a later one), plus up to a day (scaled like the wait)
        when each recipient's own time of day times it."""
        from campaign_orchestrator.run.journey import timing_wait

        wait = timing_wait(config, step)
        return conn.execute(
            """
            SELECT greatest(r.started_at, coalesce(rs.filtered_at, r.started_at))
                   + coalesce((SELECT interval '1 day' * w.time_scale FROM campaign.run_wait w
                               WHERE w.run_key = r.run_key AND w.step_id = %(wait)s), interval '0')
            FROM campaign.run r
            LEFT JOIN campaign.run_step rs ON rs.run_key = r.run_key AND rs.step_id = %(step)s
            WHERE r.run_key = %(run_key)s
            """,
            {"run_key": run_key, "step": step.id, "wait": wait.id if wait else None},
        ).fetchone()[0]


    def _policies(self):
        from campaign_orchestrator.run.policies import load_policies

        try:
            return load_policies(Path(self.campaign_file).parent)
        except ValueError as exc:  # sending without the caps and quiet hours would break them
            raise AirflowFailException(str(exc)) from exc


class FinalizeRunOperator(CampaignOperator):
    """Compute the run report from the ledger, store it, print it; fail if anything is unsent."""

    def execute(self, context: Context) -> dict[str, Any]:
        from campaign_orchestrator.run.report import compute_report, format_report, store_report
        from campaign_orchestrator.run.runs import finish_run

        from campaign_orchestrator.metrics import emit_report

        config = self.campaign
        if (context.get("params") or {}).get("proof_to"):
            log.info("Proof run: no audience, no report")
            return {"proof": True}
        with self.connect() as conn:
            run_key = self.run_key(conn, context)
            run = conn.execute(
                "SELECT evaluated_at, coalesce(audience_size, 0), status FROM campaign.run WHERE run_key = %s",
                (run_key,),
            ).fetchone()
            if run[2] == "skipped":
                log.info("Run skipped (too late to send): no report")
                return {"skipped": True}
            targeted_steps = {
                r[0] for r in conn.execute("SELECT step_id FROM campaign.run_step WHERE run_key = %s", (run_key,))
            }
            reports = compute_report(conn, run_key, [(s.id, s.channel) for s in config.message_steps])
            store_report(conn, run_key, reports)
            problems = []
            if run[0] is None:
                problems.append("the audience was never evaluated (see the evaluate_audience task)")
            problems += [
                f"step {s.id} was never targeted" for s in config.message_steps if s.id not in targeted_steps
            ]
            problems += [
                f"step {r.step_id}: {r.pending:,} messages still pending after all send attempts"
                for r in reports
                if r.pending
            ]
            guard = config.guardrails
            problems += [
                f"step {r.step_id}: {r.failed:,} of {r.sent + r.failed:,} messages failed "
                f"(over guardrails.max_error_rate {guard.max_error_rate:.0%})"
                for r in reports
                if r.sent + r.failed >= guard.error_rate_min_messages
                and r.failed > guard.max_error_rate * (r.sent + r.failed)
            ]
            finish_run(conn, run_key, succeeded=not problems)
        emit_report(config.id, reports)
        log.info("Run report\n%s", format_report(config.id, int(run[1]), reports))
        from campaign_orchestrator.config.journey import is_journey

        if is_journey(config):
            from campaign_orchestrator.run.funnel import compute_funnel, format_funnel

            with self.connect() as conn:
                log.info("Funnel per step\n%s", format_funnel(compute_funnel(conn, run_key, config)))
        self._log_lift(run_key)
        if problems:
            raise AirflowFailException("The run did not complete: " + "; ".join(problems))
        return {"audience_size": int(run[1]), "steps": [r.as_dict() for r in reports]}

    def _log_lift(self, run_key: int) -> None:
        """Log the holdout lift so far; a report that cannot be computed does not fail the run."""
        import psycopg

        from campaign_orchestrator.lift.report import lift_section

        try:
            with self.connect() as conn:
                section = lift_section(conn, run_key, self.campaign)
        except psycopg.Error as exc:
            log.warning("Lift not computed: %s", exc)
            return
        if section:
            log.info("Holdout lift so far (`campaigns report` recomputes it as conversions arrive)\n%s", section)


class WaitStepOperator(CampaignOperator):
    """A wait between steps: records when the branch reached it, then defers until it is due.

    Deferred, the wait holds no worker slot, however many days it lasts; the triggerer wakes
    it. The due time is stored with the run on first entry, so a retried or cleared wait
    keeps it. The trigger form's ``time_scale`` multiplies the wait (0.001 turns two days
    into under three minutes) for tests and rehearsals.
    """

    ui_color = "#fdf3d8"

    def __init__(self, *, step_id: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.step_id = step_id

    def execute(self, context: Context) -> dict[str, Any]:
        from campaign_orchestrator.run.journey import enter_wait

        wait = self.campaign.step(self.step_id)
        scale = (context.get("params") or {}).get("time_scale")
        scale = 1.0 if scale is None else float(scale)
        if scale < 0:
            raise AirflowFailException(f"time_scale must be 0 or more, not {scale}")
        with self.connect() as conn:
            entered, due = enter_wait(conn, self.run_key(conn, context), wait, scale)
        now = datetime.now(timezone.utc)
        if due > now:
            from airflow.providers.standard.triggers.temporal import DateTimeTrigger

            log.info("Wait %s: entered %s, due %s (time_scale %g); deferring", wait.id, entered, due, scale)
            self.defer(trigger=DateTimeTrigger(moment=due), method_name="execute_complete")
        return self.execute_complete(context)

    def execute_complete(self, context: Context, event: Any = None) -> dict[str, Any]:
        log.info("Wait %s is over; the steps after it go on", self.step_id)
        return {"waited": self.step_id}


class ConfigErrorOperator(BaseOperator):
    """Stands in for a campaign whose config is invalid: fails with the validation errors."""

    ui_color = "#f8d7da"

    def __init__(self, *, errors: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.errors = errors

    def execute(self, context: Context) -> None:
        raise AirflowFailException(f"This campaign's config is invalid; fix it and the DAG comes back:\n{self.errors}")


__all__ = [
    "ConfigErrorOperator",
    "EvaluateAudienceOperator",
    "FinalizeRunOperator",
    "PlanBatchesOperator",
    "PrepareRunOperator",
    "SendBatchOperator",
    "TargetStepOperator",
    "WaitStepOperator",
]
