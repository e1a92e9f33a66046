"""The lift table as text: ``campaigns report`` and the finalize task's log."""

from __future__ import annotations

import math
from datetime import timedelta, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from campaign_orchestrator.lift.compute import Group, RunLift, StepLift

_INDENT = " " * 21


def duration_text(window: timedelta) -> str:
    """``7d``, ``36h``, ``90m``: how a campaign file writes it."""
    seconds = int(window.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def signed_percent(value: float, digits: int = 1) -> str:
    """``+4.2%``, ``-0.3%``, ``∞`` (a bound that does not exist)."""
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{100 * value:+.{digits}f}%"


def points(value: float) -> str:
    """A difference of proportions in percentage points: ``+2.01 pp``."""
    return f"{100 * value:+.2f} pp"


def interval_text(interval: tuple[float, float] | None, show) -> str:
    if interval is None:
        return "[no interval]"
    return f"[{show(interval[0])}, {show(interval[1])}]"


def format_lift(lift: RunLift) -> str:
    """One block per step: each group's recipients, conversions, rate (and revenue per
    recipient), then the absolute and relative lift with their intervals."""
    revenue = lift.amount_column is not None
    confidence = f"{lift.confidence:.0%}"
    lines = [
        f"Lift: recipients converting in {lift.table} within {duration_text(lift.window)} of each step's start, "
        f"{confidence} intervals",
        "treated: every recipient not held out, sent or not (intention to treat); "
        "* the absolute lift's interval excludes 0",
    ]
    header = f"{'step':<20} {'group':<10} {'recipients':>10} {'sent':>8} {'converted':>10} {'rate':>8}"
    if revenue:
        header += f" {'revenue/recip.':>15}"
    lines += [header, "-" * len(header)]
    for step in lift.steps:
        lines += _step_lines(step, revenue, lift)
    if not lift.steps:
        lines.append("no step of this run has been targeted yet")
    return "\n".join(lines)


def _group_line(label: str, name: str, group: Group, revenue: bool, whole: bool) -> str:
    rate = f"{100 * group.rate:.2f}%" if group.rate is not None else "–"
    sent = "–" if whole or name == "held out" else f"{group.sent:,}"
    line = f"{label[:20]:<20} {name:<10} {group.recipients:>10,} {sent:>8} {group.converted:>10,} {rate:>8}"
    if revenue:
        line += f" {group.revenue_mean:>15,.2f}"
    return line


def _step_lines(step: StepLift, revenue: bool, lift: RunLift) -> list[str]:
    whole = step.step_id is None
    lines = [_group_line(step.label, "treated", step.treated, revenue, whole)]
    if step.status == "no_holdout":
        return lines + [f"{_INDENT}no holdout: {step.note}"]
    lines.append(_group_line("", "held out", step.held_out, revenue, whole))
    if step.status == "not_enough_data" or not step.treated.converted + step.held_out.converted:
        lines.append(f"{_INDENT}{step.note}")
    else:
        relative = signed_percent(step.relative) if step.relative is not None else "n/a"
        lines.append(
            f"{_INDENT}lift {points(step.absolute or 0.0)} {interval_text(step.absolute_interval, points)}, "
            f"relative {relative} {interval_text(step.relative_interval, signed_percent)}"
            + ("  *" if step.significant else "")
        )
        if revenue:
            revenue_relative = (
                f", relative {signed_percent(step.revenue_relative)}" if step.revenue_relative is not None else ""
            )
            lines.append(
                f"{_INDENT}revenue per recipient {step.revenue_lift or 0.0:+,.2f} "
                f"{interval_text(step.revenue_interval, lambda v: f'{v:+,.2f}')}{revenue_relative}"
            )
        if step.note:
            lines.append(f"{_INDENT}{step.note}")
    if step.closes_at > lift.computed_at:
        closes = step.closes_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        lines.append(f"{_INDENT}window open until {closes}: conversions still arriving")
    if step.caveat:
        lines.append(f"{_INDENT}{step.caveat}")
    return lines


__all__ = ["duration_text", "format_lift", "interval_text", "points", "signed_percent"]
