"""The run report: computed from the ledger, stored in campaign.step_report, printed in the log."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

if TYPE_CHECKING:
    import psycopg


@dataclass
class StepReport:
    step_id: str
    channel: str
    targeted: int = 0
    excluded: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    failed: int = 0
    uncertain: int = 0
    pending: int = 0
    rendered: int = 0
    """Messages a dry run rendered to files instead of sending."""
    held_out: int = 0
    """The control group: members who got no message by design (audience.holdout)."""
    units: int = 0
    """Billable units of sent messages (SMS segments); 0 where a channel has none."""
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def excluded_total(self) -> int:
        return sum(self.excluded.values())

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "excluded_total": self.excluded_total}


def compute_report(conn: psycopg.Connection, run_key: int, steps: list[tuple[str, str]]) -> list[StepReport]:
    """Count the ledger of a run by step, status and reason."""
    reports = {step_id: StepReport(step_id, channel) for step_id, channel in steps}
    rows = conn.execute(
        """
        SELECT step_id, status, coalesce(reason, ''), count(*), coalesce(sum(units), 0)
        FROM campaign.message WHERE run_key = %s
        GROUP BY step_id, status, coalesce(reason, '')
        """,
        (run_key,),
    ).fetchall()
    for step_id, status, reason, count, units in rows:
        report = reports.get(step_id)
        if report is None:
            continue
        report.targeted += count
        if status == "excluded":
            report.excluded[reason] = report.excluded.get(reason, 0) + count
        elif status == "sent":
            report.sent += count
            report.units += int(units)
        elif status == "failed":
            report.failed += count
            report.failures[reason or "failed"] = report.failures.get(reason or "failed", 0) + count
        elif status == "uncertain":
            report.uncertain += count
        elif status == "held_out":
            report.held_out += count
        elif status == "rendered":
            report.rendered += count
        else:  # pending or sending: a batch never completed
            report.pending += count
    return list(reports.values())


def store_report(conn: psycopg.Connection, run_key: int, reports: list[StepReport]) -> None:
    with conn.transaction():
        for r in reports:
            conn.execute(
                """
                INSERT INTO campaign.step_report
                    (run_key, step_id, channel, targeted, excluded, sent, failed, uncertain, pending, units,
                     held_out, rendered)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (run_key, step_id) DO UPDATE SET
                    targeted = EXCLUDED.targeted, excluded = EXCLUDED.excluded, sent = EXCLUDED.sent,
                    failed = EXCLUDED.failed, uncertain = EXCLUDED.uncertain, pending = EXCLUDED.pending,
                    units = EXCLUDED.units, held_out = EXCLUDED.held_out, rendered = EXCLUDED.rendered,
                    computed_at = now()
                """,
                (
                    run_key, r.step_id, r.channel, r.targeted, Jsonb(r.excluded),
                    r.sent, r.failed, r.uncertain, r.pending, r.units, r.held_out, r.rendered,
                ),
            )


def format_report(campaign_id: str, audience_size: int, reports: list[StepReport]) -> str:
    lines = [f"Campaign {campaign_id}: audience {audience_size:,}"]
    header = f"{'step':<20} {'channel':<8} {'targeted':>9} {'excluded':>9} {'sent':>8} {'failed':>7} {'uncertain':>9} {'pending':>8}"
    lines += [header, "-" * len(header)]
    for r in reports:
        lines.append(
            f"{r.step_id:<20} {r.channel:<8} {r.targeted:>9,} {r.excluded_total:>9,} {r.sent:>8,} "
            f"{r.failed:>7,} {r.uncertain:>9,} {r.pending:>8,}"
        )
        if r.rendered:
            lines.append(f"{'':<20}   dry run: {r.rendered:,} messages rendered to files, none sent")
        if r.held_out:
            lines.append(f"{'':<20}   held out (control group): {r.held_out:,}")
        if r.units:
            lines.append(f"{'':<20}   segments: {r.units:,} ({r.units / max(r.sent, 1):.2f} per message)")
        for reason, count in sorted(r.excluded.items(), key=lambda kv: -kv[1]):
            lines.append(f"{'':<20}   excluded: {reason:<22} {count:>9,}")
        for reason, count in sorted(r.failures.items(), key=lambda kv: -kv[1]):
            lines.append(f"{'':<20}   failed:   {reason:<22} {count:>9,}")
    return "\n".join(lines)
