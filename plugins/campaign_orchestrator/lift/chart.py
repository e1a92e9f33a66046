"""The geometry of the lift chart the Campaigns page draws as inline SVG (no script, no CDN):
per step, the two conversion rates as bars with their Wilson intervals as whiskers, and the
absolute lift as a point with its Newcombe interval around a zero line. The numbers and
notes beside it are the page's table (``ui/templates/_lift.html``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from campaign_orchestrator.lift.format import interval_text, points

if TYPE_CHECKING:
    from campaign_orchestrator.lift.compute import Group, RunLift, StepLift

WIDTH = 860
RATE_X, RATE_WIDTH = 160, 270
"""The rate bars' panel; their labels follow it."""
RATE_TEXT_X = 438
LIFT_X, LIFT_WIDTH = 590, 250
"""The lift's panel, 0 in its middle."""
TOP = 22
"""Room above the rows for the axes' labels."""
HEADER, BAR_ROW = 20, 22


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
    y: float
    direction: str
    """``up``, ``down`` or ``flat``: the interval lies above 0, below it, or across it."""


@dataclass(frozen=True)
class Row:
    step: StepLift
    y: float
    bars: list[Bar]
    marker: Marker | None
    lift_text: str
    """The absolute lift and its interval, or why there is none."""


@dataclass
class LiftChart:
    rows: list[Row]
    height: float
    rate_ticks: list[tuple[float, str]] = field(default_factory=list)
    lift_ticks: list[tuple[float, str]] = field(default_factory=list)
    zero_x: float = LIFT_X + LIFT_WIDTH / 2
    not_measured: list[StepLift] = field(default_factory=list)
    """Steps without held-out recipients, listed under the chart."""
    width: int = WIDTH
    rate_x: int = RATE_X
    rate_text_x: int = RATE_TEXT_X
    lift_x: int = LIFT_X


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at least ``value`` (> 0)."""
    exponent = math.floor(math.log10(value))
    return next(step * 10.0**exponent for step in (1, 2, 5, 10) if step * 10.0**exponent >= value * (1 - 1e-12))


def build_chart(lift: RunLift) -> LiftChart:
    shown = lift.measured
    rate_max = nice_ceiling(max([0.01] + [g.rate_interval[1] for s in shown for g in (s.treated, s.held_out) if g.rate_interval]))
    lift_max = nice_ceiling(max([0.005] + [abs(b) for s in shown for b in (s.absolute_interval or ()) if math.isfinite(b)]))

    def rate_x(value: float) -> float:
        return RATE_X + RATE_WIDTH * min(value, rate_max) / rate_max

    def lift_x(value: float) -> float:
        return LIFT_X + LIFT_WIDTH / 2 + (LIFT_WIDTH / 2) * max(-lift_max, min(lift_max, value)) / lift_max

    rows, y = [], float(TOP)
    for step in shown:
        groups = (("treated", "treated", step.treated), ("held_out", "held out", step.held_out))
        bars = [
            _bar(name, label, group, y + HEADER + BAR_ROW * position, rate_x)
            for position, (name, label, group) in enumerate(groups)
        ]
        marker = None
        if step.absolute is not None and step.absolute_interval is not None and _converted(step):
            low, high = step.absolute_interval
            direction = "up" if low > 0 else "down" if high < 0 else "flat"
            marker = Marker(lift_x(step.absolute), lift_x(low), lift_x(high), y + HEADER + BAR_ROW - 3, direction)
        rows.append(Row(step, y, bars, marker, _lift_text(step)))
        y += HEADER + 2 * BAR_ROW + 10
    chart = LiftChart(rows, y + 4)
    chart.rate_ticks = [(rate_x(rate_max * i / 4), f"{100 * rate_max * i / 4:g}%") for i in range(5)]
    chart.lift_ticks = [
        (lift_x(lift_max * i / 2), f"{100 * lift_max * i / 2:+g} pp" if i else "0") for i in (-2, -1, 0, 1, 2)
    ]
    chart.zero_x = lift_x(0.0)
    chart.not_measured = [s for s in lift.steps if s.status == "no_holdout"]
    return chart


def _bar(name: str, label: str, group: Group, y: float, rate_x: Callable[[float], float]) -> Bar:
    rate = group.rate or 0.0
    low, high = group.rate_interval or (0.0, 0.0)
    return Bar(
        name, label, group.recipients, group.converted, rate, low, high, y,
        width=rate_x(rate) - RATE_X,
        whisker_from=rate_x(low),
        whisker_to=rate_x(high),
        text=f"{100 * rate:.2f}% ({group.converted:,} of {group.recipients:,})",
    )


def _converted(step: StepLift) -> int:
    return step.treated.converted + step.held_out.converted


def _lift_text(step: StepLift) -> str:
    if step.absolute is None:
        return "not enough data"
    if not _converted(step):
        return "no conversion yet"
    return f"{points(step.absolute)} {interval_text(step.absolute_interval, points)}"


__all__ = ["LiftChart", "build_chart", "nice_ceiling"]
