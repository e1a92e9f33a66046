"""Did it work? The lift of a run: treated against held-out recipients, per step and for the
whole campaign, with confidence intervals.

One statement (``include/sql/lift/lift.sql``) counts each group's recipients, converted
recipients and revenue in the database; this module turns those few numbers into rates, lifts
and intervals (:mod:`campaign_orchestrator.lift.intervals`). Computed on request, never
stored: ``campaigns report``, the finalize task's log and the Campaigns page each compute it
afresh, so conversions that arrive after the run are counted as soon as they are in the table.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from psycopg import sql

from campaign_orchestrator.lift.intervals import koopman_ratio, newcombe_difference, welch_difference, wilson
from campaign_orchestrator.sqlfiles import query

if TYPE_CHECKING:
    import psycopg

    from campaign_orchestrator.config.campaign import CampaignConfig, Conversion

CONFIDENCE = 0.95
MIN_GROUP = 10
"""Recipients each group needs before a lift and its interval are reported."""
WHOLE_CAMPAIGN = ""
"""The step id of the whole-campaign row in the SQL's result."""
_NUMERIC_TYPES = ("smallint", "integer", "bigint", "numeric", "real", "double precision", "money")
_TIME_TYPES = ("date", "timestamp without time zone", "timestamp with time zone")


class LiftError(ValueError):
    """The conversion table or a column the campaign names for it is not in the store."""


@dataclass(frozen=True)
class Group:
    """The recipients of one group (treated or held out) of one step."""

    recipients: int
    sent: int
    """Recipients sent a message (or rendered, in a dry run); counted per step, 0 for the whole campaign."""
    turned_away: int
    """Recipients the step's own condition turned away (they count here, and leave the branch)."""
    converted: int
    """Recipients with at least one conversion within the window."""
    revenue: float
    revenue_mean: float
    revenue_variance: float

    @property
    def rate(self) -> float | None:
        return self.converted / self.recipients if self.recipients else None

    @property
    def rate_interval(self) -> tuple[float, float] | None:
        return wilson(self.converted, self.recipients, CONFIDENCE) if self.recipients else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rate": self.rate, "rate_interval": self.rate_interval}


@dataclass
class StepLift:
    """Treated against held out for one step (``step_id``) or the whole campaign (``None``).

    ``status`` is ``ok``, ``no_holdout`` (no held-out recipient here) or ``not_enough_data``
    (``note`` says which group is too small). Relative lift is ``rate_treated / rate_held_out
    - 1``; with no held-out conversion it has no estimate and its interval no upper bound
    (``math.inf``). Revenue lift is per recipient, ``None`` without an ``amount_column``.
    """

    step_id: str | None
    started_at: datetime
    closes_at: datetime
    treated: Group
    held_out: Group
    status: str = "ok"
    note: str = ""
    caveat: str = ""
    """Why the two groups of this step are not a randomised comparison, if they are not."""
    absolute: float | None = None
    absolute_interval: tuple[float, float] | None = None
    relative: float | None = None
    relative_interval: tuple[float, float] | None = None
    revenue_lift: float | None = None
    revenue_interval: tuple[float, float] | None = None
    revenue_relative: float | None = None

    @property
    def label(self) -> str:
        return self.step_id or "whole campaign"

    @property
    def significant(self) -> bool:
        """The absolute lift's interval excludes 0."""
        low, high = self.absolute_interval or (0.0, 0.0)
        return low > 0 or high < 0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(label=self.label, treated=self.treated.as_dict(), held_out=self.held_out.as_dict())
        return data


@dataclass
class RunLift:
    """The lift of every step of a run with a holdout, and of the whole campaign."""

    table: str
    window: timedelta
    amount_column: str | None
    computed_at: datetime
    steps: list[StepLift] = field(default_factory=list)
    confidence: float = CONFIDENCE

    @property
    def measured(self) -> list[StepLift]:
        return [s for s in self.steps if s.status != "no_holdout"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "window_seconds": self.window.total_seconds(),
            "amount_column": self.amount_column,
            "computed_at": self.computed_at.isoformat(),
            "confidence": self.confidence,
            "steps": [s.as_dict() for s in self.steps],
        }


def compute_lift(conn: psycopg.Connection, run_key: int, config: CampaignConfig) -> RunLift | None:
    """The lift of run ``run_key``; None when the campaign has no ``conversion`` table.

    Steps come in the campaign file's order, then the whole campaign (when it has several
    message steps); steps the file no longer has follow by id.

    :raises LiftError: the conversion table or one of its columns is missing in the store.
    """
    conversion = config.conversion
    if conversion is None:
        return None
    problems = conversion_problems(conn, conversion)
    if problems:
        raise LiftError("; ".join(problems))
    rows = conn.execute(_statement(conversion), {"run_key": run_key, "window": conversion.window}).fetchall()
    groups: dict[str, dict[bool, tuple[Any, ...]]] = {}
    computed_at = None
    for step_id, held_out, started_at, closes_at, *counts, computed_at in rows:
        groups.setdefault(step_id, {})[bool(held_out)] = (started_at, closes_at, *counts)
    lift = RunLift(conversion.table, conversion.window, conversion.amount_column, computed_at or _now(conn))
    order = {s.id: i for i, s in enumerate(config.message_steps)}
    step_ids = sorted((s for s in groups if s != WHOLE_CAMPAIGN), key=lambda s: (order.get(s, len(order)), s))
    if WHOLE_CAMPAIGN in groups and len(step_ids) > 1:
        step_ids.append(WHOLE_CAMPAIGN)
    turned_away = {
        step_id: sum(int(counts[4]) for counts in by_group.values()) for step_id, by_group in groups.items()
    }
    for step_id in step_ids:
        lift.steps.append(_step_lift(step_id, groups[step_id], config, turned_away))
    return lift


def _statement(conversion: Conversion) -> sql.Composable:
    schema, table = conversion.table.split(".", 1)
    amount = (
        sql.SQL("{}::numeric").format(sql.Identifier("conversion", conversion.amount_column))
        if conversion.amount_column
        else sql.SQL("NULL::numeric")
    )
    return query(
        "lift/lift",
        conversions=sql.Identifier(schema, table),
        who=sql.Identifier(conversion.profile_column),
        when=sql.Identifier(conversion.time_column),
        amount=amount,
    )


def _now(conn: psycopg.Connection) -> datetime:
    return conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]


_EMPTY = Group(0, 0, 0, 0, 0.0, 0.0, 0.0)


def _group(counts: tuple[Any, ...] | None) -> Group:
    if counts is None:
        return _EMPTY
    recipients, sent, turned_away, converted, revenue, mean, variance = counts[2:]
    return Group(
        int(recipients), int(sent), int(turned_away), int(converted),
        float(revenue), float(mean or 0), float(variance or 0),
    )


def _step_lift(
    step_id: str, by_group: dict[bool, tuple[Any, ...]], config: CampaignConfig, turned_away: dict[str, int]
) -> StepLift:
    any_group = by_group.get(False) or by_group[True]
    treated, held_out = _group(by_group.get(False)), _group(by_group.get(True))
    lift = StepLift(
        step_id or None, any_group[0], any_group[1], treated, held_out,
        caveat=_caveat(config, step_id, turned_away) if step_id else "",
    )
    if not held_out.recipients:
        lift.status, lift.note = "no_holdout", "no held-out recipient to compare with"
        return lift
    small = [
        f"{name} {group.recipients:,} recipient{'s' if group.recipients != 1 else ''}"
        for name, group in (("treated", treated), ("held out", held_out))
        if group.recipients < MIN_GROUP
    ]
    if small:
        lift.status = "not_enough_data"
        lift.note = f"not enough data: {' and '.join(small)}; each group needs at least {MIN_GROUP}"
        return lift
    x1, n1, x2, n2 = treated.converted, treated.recipients, held_out.converted, held_out.recipients
    lift.absolute = x1 / n1 - x2 / n2
    lift.absolute_interval = newcombe_difference(x1, n1, x2, n2, CONFIDENCE)
    ratio = koopman_ratio(x1, n1, x2, n2, CONFIDENCE)
    if ratio is not None:
        lift.relative_interval = (ratio[0] - 1, ratio[1] - 1)
    if x2:
        lift.relative = (x1 / n1) / (x2 / n2) - 1
    if x1 + x2 == 0:
        lift.note = "no conversion yet in either group"
    elif x2 == 0:
        lift.note = "no held-out conversion yet: relative lift has no estimate"
    if config.conversion is not None and config.conversion.amount_column:
        lift.revenue_lift = treated.revenue_mean - held_out.revenue_mean
        lift.revenue_interval = welch_difference(
            n1, treated.revenue_mean, treated.revenue_variance,
            n2, held_out.revenue_mean, held_out.revenue_variance, CONFIDENCE,
        )
        if held_out.revenue_mean > 0:
            lift.revenue_relative = treated.revenue_mean / held_out.revenue_mean - 1
    return lift


def _caveat(config: CampaignConfig, step_id: str, turned_away: dict[str, int]) -> str:
    """Why held-out and treated recipients of ``step_id`` were not drawn alike, if so.

    Held-out members pass every condition (they flow on to keep the holdout whole), so after a
    step whose ``when`` turned treated members away (``turned_away``: per step, in this run),
    the treated who remain are a selection (e.g. the non-openers) and the held out are not. A
    segment drawn by rules holds chosen members, while the held out of its step are the whole
    holdout. The step's own condition is no such bias: whoever it turned away still counts as
    treated here.
    """
    try:
        step = config.step(step_id)
    except KeyError:
        return ""
    reasons = []
    filtered = sorted(ref for ref in _upstream_conditions(config, step_id) if turned_away.get(ref))
    if filtered:
        counts = ", ".join(f"{ref} ({turned_away[ref]:,})" for ref in filtered)
        reasons.append(f"the conditions of {counts} turned treated members away before this step")
    split = config.audience.split
    if getattr(step, "segment", None) and split is not None and split.rules is not None:
        reasons.append(f"segment {step.segment} was chosen by rules, the held out are the whole holdout")
    if not reasons:
        return ""
    return "not a randomised comparison: " + "; ".join(reasons) + " (the whole campaign's row is randomised)"


def _upstream_conditions(config: CampaignConfig, step_id: str) -> set[str]:
    """Message steps before ``step_id`` (through waits, forks and joins) that have a ``when``."""
    found: set[str] = set()
    pending, seen = list(config.step(step_id).after), set()
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        before = config.step(ref)
        if getattr(before, "when", None):
            found.add(ref)
        pending.extend(before.after)
    return found


def conversion_problems(conn: psycopg.Connection, conversion: Conversion) -> list[str]:
    """What the store lacks for ``conversion``: the table, its columns, or their types."""
    schema, table = conversion.table.split(".", 1)
    columns = dict(
        conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
            (schema, table),
        ).fetchall()
    )
    if not columns:
        return [f"conversion.table: the store has no table {conversion.table}; create it or name another"]
    problems = []
    wanted = [
        ("profile_column", conversion.profile_column, None),
        ("time_column", conversion.time_column, _TIME_TYPES),
        ("amount_column", conversion.amount_column, _NUMERIC_TYPES),
    ]
    for name, column, types in wanted:
        if column is None:
            continue
        if column not in columns:
            close = difflib.get_close_matches(column, sorted(columns), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; columns: {', '.join(sorted(columns))}"
            problems.append(f"conversion.{name}: {conversion.table} has no column {column!r}{hint}")
        elif types is not None and columns[column] not in types:
            kind = "a date or timestamp" if types is _TIME_TYPES else "a number"
            problems.append(f"conversion.{name}: {conversion.table}.{column} is {columns[column]}, not {kind}")
    return problems


__all__ = ["CONFIDENCE", "MIN_GROUP", "Group", "LiftError", "RunLift", "StepLift", "compute_lift", "conversion_problems"]
