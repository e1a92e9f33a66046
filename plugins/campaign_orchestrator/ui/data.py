"""What the Campaigns page shows, read from the store: runs, funnels, failed messages.

Every function takes an open connection (one per request, see ``app.py``); SQL lives in
``sql/*.sql`` beside this module with values bound by the driver.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from campaign_orchestrator.run.report import StepReport, compute_report

log = logging.getLogger(__name__)

FEEDBACK_EVENTS = ("delivered", "opened", "clicked", "bounced", "complained")
"""Provider feedback the funnel counts, each as messages with at least one such event."""
FAILED_CSV_COLUMNS = (
    "profile_id", "entity_key", "step", "channel", "address", "status", "reason", "error", "updated_at",
)


@lru_cache(maxsize=16)
def query(name: str) -> sql.SQL:
    text = (Path(__file__).with_name("sql") / f"{name}.sql").read_text(encoding="utf-8")
    return sql.SQL(text)  # type: ignore[arg-type]  # this package's own file


@dataclass(frozen=True)
class RunSummary:
    """A run as listed: its state, and the totals of its stored report once it has one."""

    run_key: int
    dag_run_id: str
    status: str
    audience_size: int | None
    started_at: datetime
    finished_at: datetime | None
    targeted: int | None = None
    sent: int | None = None
    failed: int | None = None
    """Failed plus uncertain messages."""
    campaign_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}


def latest_runs(conn: psycopg.Connection, campaign_ids: list[str]) -> dict[str, RunSummary]:
    rows = conn.execute(query("latest_runs"), {"campaign_ids": campaign_ids}).fetchall()
    return {row[0]: RunSummary(*row[1:], campaign_id=row[0]) for row in rows}


def campaign_runs(conn: psycopg.Connection, campaign_id: str, limit: int = 25) -> list[RunSummary]:
    rows = conn.execute(query("campaign_runs"), {"campaign_id": campaign_id, "limit": limit}).fetchall()
    return [RunSummary(*row, campaign_id=campaign_id) for row in rows]


@dataclass(frozen=True)
class RunInfo:
    run_key: int
    campaign_id: str
    dag_run_id: str
    status: str
    audience_size: int | None
    started_at: datetime
    finished_at: datetime | None
    evaluated_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}


def get_run(conn: psycopg.Connection, run_key: int) -> RunInfo | None:
    row = conn.execute(query("run"), {"run_key": run_key}).fetchone()
    return RunInfo(*row) if row else None


@dataclass
class Funnel:
    """The funnel of one step, or of every step on one channel.

    The feedback counts (``delivered`` … ``complained``) are ``None`` while the store holds no
    provider feedback for the run to count them from (see :class:`Feedback`).
    """

    title: str
    channel: str
    steps: list[str]
    targeted: int = 0
    excluded: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    delivered: int | None = None
    opened: int | None = None
    clicked: int | None = None
    bounced: int | None = None
    complained: int | None = None
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    uncertain: int = 0
    pending: int = 0

    @property
    def excluded_total(self) -> int:
        return sum(self.excluded.values())

    def add(self, report: StepReport, feedback: dict[str, int] | None) -> None:
        self.targeted += report.targeted
        self.sent += report.sent
        self.failed += report.failed
        self.uncertain += report.uncertain
        self.pending += report.pending
        for reason, count in report.excluded.items():
            self.excluded[reason] = self.excluded.get(reason, 0) + count
        for reason, count in report.failures.items():
            self.failures[reason] = self.failures.get(reason, 0) + count
        if feedback is not None:
            for event in FEEDBACK_EVENTS:
                setattr(self, event, (getattr(self, event) or 0) + feedback.get(event, 0))

    def rows(self) -> list[FunnelRow]:
        """The chart, top to bottom: targeted, exclusions, sent, feedback, failures."""
        rows = [FunnelRow("targeted", "Targeted", self.targeted)]
        rows.append(FunnelRow("excluded", "Excluded", self.excluded_total))
        rows += [
            FunnelRow(f"excluded.{reason}", reason.replace("_", " "), count, level=1)
            for reason, count in sorted(self.excluded.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        rows.append(FunnelRow("sent", "Sent", self.sent))
        for event in FEEDBACK_EVENTS:
            rows.append(FunnelRow(event, event.capitalize(), getattr(self, event)))
        rows.append(FunnelRow("failed", "Failed", self.failed))
        rows += [
            FunnelRow(f"failed.{reason}", reason.replace("_", " "), count, level=1)
            for reason, count in sorted(self.failures.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        rows.append(FunnelRow("uncertain", "Uncertain", self.uncertain))
        if self.pending:
            rows.append(FunnelRow("pending", "Not sent yet", self.pending))
        return rows

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "excluded_total": self.excluded_total}


@dataclass(frozen=True)
class FunnelRow:
    metric: str
    label: str
    value: int | None
    """``None``: not measured (no provider feedback in the store)."""
    level: int = 0


@dataclass(frozen=True)
class Feedback:
    """Delivery feedback of a run, per step and event type.

    ``state`` is ``absent`` (the store has no ``campaign.delivery_event`` table), ``none`` (no
    event for this run yet: its provider sends none, or none was ingested so far),
    ``unreadable`` (a table this page cannot read) or ``ok``.
    """

    state: str
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def of(self, step_id: str) -> dict[str, int] | None:
        return self.counts.get(step_id, {}) if self.state == "ok" else None


def delivery_feedback(conn: psycopg.Connection, run_key: int) -> Feedback:
    if not conn.execute(query("delivery_feedback_table")).fetchone()[0]:  # type: ignore[index]
        return Feedback("absent")
    try:
        rows = conn.execute(
            query("delivery_feedback"), {"run_key": run_key, "event_types": list(FEEDBACK_EVENTS)}
        ).fetchall()
    except psycopg.errors.ProgrammingError as exc:  # a table of another shape than this page expects
        log.warning(
            "campaign.delivery_event cannot be read as "
            "(run_key, step_id, profile_id, entity_key, event_type, machine): %s", exc,
        )
        return Feedback("unreadable")
    counts: dict[str, dict[str, int]] = {}
    for step_id, event_type, count in rows:
        counts.setdefault(step_id, {})[event_type] = int(count)
    return Feedback("ok", counts) if counts else Feedback("none")


@dataclass
class RunFunnels:
    by_step: list[Funnel]
    by_channel: list[Funnel]
    feedback: Feedback

    @property
    def failed_messages(self) -> int:
        """Rows of the failed-messages CSV: failed plus uncertain."""
        return sum(f.failed + f.uncertain for f in self.by_step)


def run_funnels(conn: psycopg.Connection, run_key: int, config_steps: list[tuple[str, str]]) -> RunFunnels:
    """Count the ledger of a run (the same counts as its report) plus delivery feedback.

    Steps come in the campaign file's order; steps the run targeted but the file no longer
    has (it changed since) follow, so every ledger row is counted.
    """
    steps = list(config_steps)
    known = {step_id for step_id, _ in steps}
    for step_id, channel in conn.execute(query("run_steps"), {"run_key": run_key}).fetchall():
        if step_id not in known:
            steps.append((step_id, channel))
            known.add(step_id)
    reports = compute_report(conn, run_key, steps)
    feedback = delivery_feedback(conn, run_key)
    by_step = []
    by_channel: dict[str, Funnel] = {}
    for report in reports:
        step_funnel = Funnel(report.step_id, report.channel, [report.step_id])
        step_funnel.add(report, feedback.of(report.step_id))
        by_step.append(step_funnel)
        channel = by_channel.setdefault(report.channel, Funnel(report.channel, report.channel, []))
        channel.steps.append(report.step_id)
        channel.add(report, feedback.of(report.step_id))
    return RunFunnels(by_step, list(by_channel.values()), feedback)


@dataclass(frozen=True)
class LiftView:
    """A run's holdout lift and its chart, or why there is none (``error``)."""

    lift: Any = None
    """:class:`campaign_orchestrator.lift.compute.RunLift`"""
    chart: Any = None
    """:class:`campaign_orchestrator.lift.chart.LiftChart`"""
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"error": self.error, **(self.lift.as_dict() if self.lift else {})}


def run_lift(conn: psycopg.Connection, run_key: int, config: Any) -> LiftView | None:
    """The lift of a run with a holdout, computed on request (so conversions that arrived since
    are counted); None when the campaign neither holds out nor has a conversion table."""
    from campaign_orchestrator.lift.chart import build_chart
    from campaign_orchestrator.lift.report import lift_to_show

    lift, problem = lift_to_show(conn, run_key, config)
    if problem:
        return LiftView(error=problem)
    return LiftView(lift, build_chart(lift)) if lift else None


def failed_messages_csv(
    connect: Callable[[], psycopg.Connection], run_key: int, chunk_rows: int = 2000
) -> Iterator[str]:
    """The failed and uncertain messages of a run as CSV text, read with a server-side cursor.

    Opens its own connection and closes it when the download ends or is abandoned, so a
    response can stream millions of rows without holding them in memory.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def take() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(FAILED_CSV_COLUMNS)
    yield take()
    conn = connect()
    try:
        with conn.transaction(), conn.cursor(name=f"failed_messages_{run_key}") as cursor:
            cursor.itersize = chunk_rows
            cursor.execute(query("failed_messages"), {"run_key": run_key})
            written = 0
            for row in cursor:
                writer.writerow([_csv_cell(value) for value in row])
                written += 1
                if written % chunk_rows == 0:
                    yield take()
            yield take()
    finally:
        conn.close()


_NUMBER_LIKE = re.compile(r"[+-]?[\d\s().-]*")


def _csv_cell(value: Any) -> Any:
    """Neutralize text a spreadsheet would run as a formula (addresses come from customers).

    A phone number such as ``+33612345678`` stays as it is.
    """
    if isinstance(value, datetime):
        return value.isoformat()
    formula_start = isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r")
    if formula_start and not _NUMBER_LIKE.fullmatch(value):
        return "'" + value
    return value


__all__ = [
    "FAILED_CSV_COLUMNS",
    "Feedback",
    "Funnel",
    "FunnelRow",
    "LiftView",
    "RunFunnels",
    "RunInfo",
    "RunSummary",
    "campaign_runs",
    "delivery_feedback",
    "failed_messages_csv",
    "get_run",
    "latest_runs",
    "run_funnels",
    "run_lift",
]
