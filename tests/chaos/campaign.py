"""A campaign run for the chaos tests, driven through the real operators.

:class:`ChaosRun` builds a project folder (a short email template, an audience
SQL file, a campaign YAML, the demo's ``_policies.yaml``), fills the store with ``profiles``
consenting profiles set-based in SQL, and runs ``prepare_run``, ``evaluate_audience``,
``target_<step>`` and ``plan_<step>`` in this process with the operators' own ``execute``.
Send attempts run in processes of a :class:`~tests.chaos.send_task.Worker` that a test can kill;
``finalize`` runs ``finalize_report``, which fails if anything is left pending.
"""

from __future__ import annotations

import os
import shutil
import textwrap
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from tests.chaos.send_task import EXIT_RETRY, AttemptResult, Worker

ROOT = Path(__file__).resolve().parents[2]
RUN_ID = "manual__chaos"


def address(i: int) -> str:
    return f"user{i}@chaos.example"


@dataclass
class ChaosRun:
    root: Path
    store: psycopg.Connection
    worker: Worker
    campaign_id: str = "chaos"
    step_id: str = "offer_email"
    conn_id: str = "smtp_chaos"
    provider: str = "smtp"
    batch_size: int = 10_000
    on_uncertain: str = "skip"
    extra_env: dict[str, str] = field(default_factory=dict)
    batches: list[dict[str, int]] = field(default_factory=list)
    run_key: int = 0

    @property
    def campaign_file(self) -> Path:
        return self.root / "dags" / "campaigns" / f"{self.campaign_id}.yaml"

    def write_project(self) -> None:
        (self.root / "include" / "sql" / "audiences").mkdir(parents=True, exist_ok=True)
        # The orchestrator's own SQL, migrations and entity catalog are the project's.
        for shared in ("sql/orchestrator", "sql/migrations", "entities.yaml"):
            link = self.root / "include" / shared
            if not link.exists():
                link.symlink_to(ROOT / "include" / shared)
        (self.root / "include" / "sql" / "audiences" / "everyone.sql").write_text(
            "SELECT profile_id FROM crm.profile WHERE email LIKE %(domain)s"
        )
        # A short message: the sink's parsing, not the template, would set the pace otherwise.
        template = self.root / "include" / "templates" / "chaos"
        template.mkdir(parents=True, exist_ok=True)
        (template / "subject.txt").write_text("Winter offers for {{ profile.first_name }}")
        (template / "body.txt").write_text(
            "Hi {{ profile.first_name }},\nup to 30% off until March.\nUnsubscribe: {{ unsubscribe_url }}\n"
        )
        (template / "body.html").write_text(
            "<p>Hi {{ profile.first_name }},</p>\n<p>Up to 30% off until March"
            "{% if profile.city %} from {{ profile.city }}{% endif %}.</p>\n"
            '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>\n'
        )
        campaigns = self.campaign_file.parent
        campaigns.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "dags" / "campaigns" / "_policies.yaml", campaigns / "_policies.yaml")
        text = textwrap.dedent(f"""\
            id: {self.campaign_id}
            description: Chaos test campaign
            schedule: manual
            timezone: UTC
            valid: {{start: 2026-01-01}}
            batch_size: {self.batch_size}
            on_uncertain: {self.on_uncertain}
            send_window: null
            audience:
              sql: audiences/everyone.sql
              params: {{domain: "%@chaos.example"}}
            steps:
              - id: {self.step_id}
                channel: email
                purpose: marketing
                template: chaos
                sender: "Wanderly <offers@wanderly.example>"
                connection_id: {self.conn_id}
                provider: {self.provider}
            """)
        self.campaign_file.write_text(text)

    def seed(self, profiles: int) -> None:
        """``profiles`` opted-in profiles with distinct addresses, in two set-based statements."""
        with self.store.transaction():
            self.store.execute(
                """
                INSERT INTO crm.profile (profile_id, email, first_name, city)
                SELECT i, 'user' || i || '@chaos.example', 'P' || i, CASE WHEN i %% 3 = 0 THEN 'Lyon' END
                FROM generate_series(1, %s) AS i
                """,
                (profiles,),
            )
            self.store.execute(
                "INSERT INTO crm.consent (profile_id, channel, status, source) "
                "SELECT profile_id, 'email', 'opted_in', 'chaos' FROM crm.profile"
            )
        self.store.execute("ANALYZE crm.profile, crm.consent")

    def env(self) -> dict[str, str]:
        return {**os.environ, "CAMPAIGNS_HOME": str(self.root), **self.extra_env}

    def _operator(self, cls: type, task_id: str, **kwargs: Any):
        return cls(task_id=task_id, campaign_file=str(self.campaign_file), campaign_id=self.campaign_id, **kwargs)

    def context(self) -> dict[str, Any]:
        return {"run_id": RUN_ID, "params": {}}

    def prepare(self, profiles: int) -> int:
        """Write the project, seed, and run every task before the sends; return sendable."""
        from campaign_orchestrator.operators.campaign import (
            EvaluateAudienceOperator,
            PlanBatchesOperator,
            PrepareRunOperator,
            TargetStepOperator,
        )

        self.write_project()
        self.seed(profiles)
        with self.home():
            self.run_key = self._operator(PrepareRunOperator, "prepare_run").execute(self.context())["run_key"]
            self._operator(EvaluateAudienceOperator, "evaluate_audience").execute(self.context())
            target = self._operator(TargetStepOperator, f"target_{self.step_id}", step_id=self.step_id)
            sendable = target.execute(self.context())["sendable"]
            plan = self._operator(PlanBatchesOperator, f"plan_{self.step_id}", step_id=self.step_id)
            self.batches = plan.execute(self.context())
        return sendable

    @contextmanager
    def home(self) -> Iterator[None]:
        """This project as ``CAMPAIGNS_HOME`` of the operators run in this process."""
        previous = os.environ.get("CAMPAIGNS_HOME")
        os.environ["CAMPAIGNS_HOME"] = str(self.root)
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop("CAMPAIGNS_HOME", None)
            else:
                os.environ["CAMPAIGNS_HOME"] = previous

    def start_attempt(self, batches: list[dict[str, int]] | None = None, env: dict[str, str] | None = None):
        """A send task attempt of ``batches`` (default: all, one after another), running now;
        ``env`` adds to the run's environment (e.g. another SMTP server for this worker)."""
        return self.worker.start({**self.env(), **(env or {})}, str(self.campaign_file), self.campaign_id,
                                 self.step_id, RUN_ID, batches if batches is not None else self.batches)

    def attempt(self, batches: list[dict[str, int]] | None = None, env: dict[str, str] | None = None,
                timeout: float = 600) -> AttemptResult:
        return self.worker.wait(*self.start_attempt(batches, env), timeout=timeout)

    def run_to_completion(self, batches: list[dict[str, int]] | None = None, env: dict[str, str] | None = None,
                          max_attempts: int = 10) -> list[AttemptResult]:
        """Retry the sends until an attempt finishes them all, as Airflow's retries would."""
        results = []
        for _ in range(max_attempts):
            results.append(self.attempt(batches, env))
            if results[-1].exitcode == 0:
                return results
            assert results[-1].exitcode == EXIT_RETRY, results[-1].log_tail
        raise AssertionError(f"not done after {max_attempts} attempts: {results[-1].log_tail}")

    def finalize(self) -> dict[str, Any]:
        from campaign_orchestrator.operators.campaign import FinalizeRunOperator

        with self.home():
            return self._operator(FinalizeRunOperator, "finalize_report").execute(self.context())

    def ledger(self) -> Counter:
        return Counter(dict(self.store.execute(
            "SELECT status, count(*) FROM campaign.message WHERE run_key = %s AND seq IS NOT NULL GROUP BY status",
            (self.run_key,),
        ).fetchall()))

    def sendable_rows(self) -> list[tuple[int, str, str, str | None, str | None]]:
        """(profile_id, entity_key, status, reason, provider_message_id) of every sendable ledger row."""
        return self.store.execute(
            "SELECT profile_id, entity_key, status, reason, provider_message_id FROM campaign.message "
            "WHERE run_key = %s AND seq IS NOT NULL ORDER BY seq",
            (self.run_key,),
        ).fetchall()

    def message_id(self, profile_id: int, entity_key: str) -> str:
        """The Message-ID the renderer gives this ledger row (derived from its key)."""
        from campaign_orchestrator.channels.messages import email_message_id as message_id

        return message_id(self.run_key, self.step_id, profile_id, entity_key, "wanderly.example")


@dataclass(frozen=True)
class Tally:
    """What a finished run's ledger and the provider's side say about every sendable message."""

    sendable: int
    sent: int
    uncertain: int
    delivered: int
    """Messages the provider accepted, counting copies."""
    delivered_uncertain: int
    """Uncertain messages the provider did accept: the ledger could not know."""
    uncertain_reasons: frozenset[str]


def check_exactly_once(run: ChaosRun, at_provider: Counter, statuses: tuple[str, ...] = ("sent", "uncertain")) -> Tally:
    """Assert nothing is lost or doubled: every sendable row is sent or uncertain, every sent
    message reached the provider exactly once, none reached it twice, and the provider got
    nothing the ledger does not know of. ``at_provider`` counts Message-IDs received."""
    rows = run.sendable_rows()
    lost = [r for r in rows if r[2] not in statuses]
    assert not lost, f"{len(lost)} sendable messages neither sent nor uncertain, e.g. {lost[:5]}"
    # By Message-ID, derived from the ledger key (the SES MessageId the row keeps is another id).
    sent_ids = {run.message_id(pid, key) for pid, key, status, _, _ in rows if status == "sent"}
    uncertain = [r for r in rows if r[2] == "uncertain"]
    uncertain_ids = {run.message_id(pid, key) for pid, key, _, _, _ in uncertain}
    duplicates = {mid: n for mid, n in at_provider.items() if n > 1}
    assert not duplicates, f"{len(duplicates)} messages delivered more than once, e.g. {list(duplicates.items())[:5]}"
    missing = sent_ids - set(at_provider)
    assert not missing, f"{len(missing)} messages recorded as sent never reached the provider"
    unknown = set(at_provider) - sent_ids - uncertain_ids
    assert not unknown, f"the provider got {len(unknown)} messages the ledger does not know of"
    return Tally(
        sendable=len(rows),
        sent=len(sent_ids),
        uncertain=len(uncertain),
        delivered=sum(at_provider.values()),
        delivered_uncertain=len(uncertain_ids & set(at_provider)),
        uncertain_reasons=frozenset(reason for _, _, _, reason, _ in uncertain),
    )
