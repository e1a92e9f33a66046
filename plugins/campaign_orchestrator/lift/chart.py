"""The geometry of the lift chart the Campaigns page draws as inline SVG (no script, no CDN):
per step, the two conversion rates as bars with their Wilson intervals as whiskers, and the
absolute lift as a point with its Newcombe interval around a zero line."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from campaign_orchestrator.lift.format import interval_text, points, signed_percent

if TYPE_CHECKING:
    from campaign_orchestrator.lift.compute import Group, RunLift, StepLift

WIDTH = 760
LABEL_WIDTH = 150
RATE_X, RATE_WIDTH = 160, 300
LIFT_X, LIFT_WIDTH = 500, 240
ROW_HEIGHT = 74
TOP = 26
"""Room above the rows for the axis labels."""


@dataclass(frozen=True)
class Bar:
    group: str
    """``treated`` or ``held_out``."""
    label: str
    recipients: int
    converted: int
    rate: float
    low: float
    high: float
    y: float
    width: float
    whisker_from: float
    whisker_to: float
    text: str


@dataclass(frozen=True)
class Marker:
    """The absolute lift and its interval on the lift axis."""

    x: float
    low_x: float
    high_x: float
    significant: bool
    direction: str
    """``up``, ``down`` or ``flat``: whether the interval lies above, below or across 0."""


@dataclass(frozen=True)
class Row:
    step: StepLift
    y: float
    bars: list[Bar]
    marker: Marker | None
    lift_text: str
    relative_text: str
    revenue_text: str


@dataclass
class LiftChart:
    rows: list[Row]
    height: float
    rate_ticks: list[tuple[float, str]] = field(default_factory=list)
    lift_ticks: list[tuple[float, str]] = field(default_factory=list)
    zero_x: float = LIFT_X + LIFT_WIDTH / 2
    not_measured: list[StepLift] = field(default_factory=list)
    """Steps without held-out recipients, listed under the chart."""


def _nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at least ``value`` (> 0)."""
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * 10**exponent >= value:
            return step * 10**exponent
    return 10 ** (exponent + 1)  # pragma: no cover - the loop ends at 10


def build_chart(lift: RunLift) -> LiftChart:
    shown = lift.measured
    rate_max = _nice_ceiling(max([0.01] + [g.rate_interval[1] for s in shown for g in (s.treated, s.held_out) if g.rate_interval]))
    lift_max = _nice_ceiling(max([0.01] + [abs(b) for s in shown for b in (s.absolute_interval or ()) if math.isfinite(b)]))

    def rate_x(value: float) -> float:
        return RATE_X + RATE_WIDTH * min(value, rate_max) / rate_max

    def lift_x(value: float) -> float:
        clipped = max(-lift_max, min(lift_max, value))
        return LIFT_X + LIFT_WIDTH / 2 + (LIFT_WIDTH / 2) * clipped / lift_max

    rows = []
    for index, step in enumerate(shown):
        y = TOP + index * ROW_HEIGHT
        groups = (("treated", "treated", step.treated), ("held_out", "held out", step.held_out))
        bars = [
            _bar(name, label, group, y + 4 + 22 * position, rate_x)
            for position, (name, label, group) in enumerate(groups)
            if group.recipients
        ]
        marker = None
        if step.absolute is not None and step.absolute_interval is not None:
            low, high = step.absolute_interval
            direction = "up" if low > 0 else "down" if high < 0 else "flat"
            marker = Marker(lift_x(step.absolute), lift_x(low), lift_x(high), step.significant, direction)
        relative = signed_percent(step.relative) if step.relative is not None else "n/a"
        revenue = ""
        if lift.amount_column and step.revenue_lift is not None:
            revenue = (
                f"revenue per recipient {step.revenue_lift:+,.2f} "
                f"{interval_text(step.revenue_interval, lambda v: f'{v:+,.2f}')}"
            )
        rows.append(
            Row(
                step, y, bars, marker,
                lift_text=(
                    f"{points(step.absolute)} {interval_text(step.absolute_interval, points)}"
                    if step.absolute is not None else step.note
                ),
                relative_text=(
                    f"relative {relative} {interval_text(step.relative_interval, signed_percent)}"
                    if step.absolute is not None else ""
                ),
                revenue_text=revenue,
            )
        )
    chart = LiftChart(rows, TOP + len(rows) * ROW_HEIGHT + 4)
    chart.rate_ticks = [(rate_x(rate_max * i / 4), f"{100 * rate_max * i / 4:g}%") for i in range(5)]
    chart.lift_ticks = [(lift_x(lift_max * i / 2), f"{100 * lift_max * i / 2:+g} pp") for i in (-2, -1, 0, 1, 2)]
    chart.zero_x = lift_x(0.0)
    chart.not_measured = [s for s in lift.steps if s.status == "no_holdout"]
    return chart


def _bar(name: str, label: str, group: Group, y: float, rate_x) -> Bar:
    rate = group.rate or 0.0
    low, high = group.rate_interval or (0.0, 0.0)
    return Bar(
        name, label, group.recipients, group.converted, rate, low, high, y,
        width=max(rate_x(rate) - RATE_X, 0.0),
        whisker_from=rate_x(low),
        whisker_to=rate_x(high),
        text=f"{100 * rate:.2f}% ({group.converted:,} of {group.recipients:,})",
    )


__all__ = ["LiftChart", "build_chart"]
