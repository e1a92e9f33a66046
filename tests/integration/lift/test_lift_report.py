"""`campaigns report` prints the lift table of the latest run, recomputed as conversions arrive."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest

from campaign_orchestrator.cli import main
from tests.integration.lift.seed import (
    CAMPAIGN_ID,
    Booking,
    book,
    campaign_dict,
    expected,
    seed_run,
    standard_bookings,
    write_campaign,
)

pytestmark = pytest.mark.integration


def lift_lines(output: str) -> list[str]:
    return output[output.index("Lift: "):].splitlines()


SENT = "SELECT count(*) FROM campaign.message WHERE run_key = %s AND step_id = %s AND status = 'sent'"


def group_rows(lines: list[str], label: str) -> tuple[int, dict[str, list[str]]]:
    """Where a step's rows start, and each group's numbers: recipients, sent, converted, rate,
    revenue per recipient (columns: step 20 characters, group 10)."""
    index = next(i for i, line in enumerate(lines) if line[:20].strip() == label)
    return index, {line[21:31].strip(): line[32:].split() for line in lines[index:index + 2]}


def test_report_prints_a_lift_table_per_step_equal_to_the_seeded_data(store, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CAMPAIGNS_CONFIG_DIR", str(write_campaign(tmp_path / "campaigns", campaign_dict())))
    seeded = seed_run(store)
    assert main(["report", CAMPAIGN_ID]) == 0
    before = lift_lines(capsys.readouterr().out)
    assert before[0] == (
        "Lift: recipients converting in crm.booking within 3d of each step's start, 95% intervals"
    )
    assert "no conversion yet in either group" in "\n".join(before)

    book(store, seeded, standard_bookings(seeded))  # conversions arrive after the run
    assert main(["report", CAMPAIGN_ID]) == 0
    lines = lift_lines(capsys.readouterr().out)
    for label, step_id in (("mail", "mail"), ("sms", "sms"), ("whole campaign", None)):
        want = expected(seeded, step_id)
        rate_t = f"{100 * want.treated_converted / want.treated_n:.2f}%"
        rate_h = f"{100 * want.held_converted / want.held_n:.2f}%"
        revenue_t = f"{sum(want.treated_revenue) / want.treated_n:,.2f}"
        revenue_h = f"{sum(want.held_revenue) / want.held_n:,.2f}"
        index, rows = group_rows(lines, label)
        sent = "–" if step_id is None else f"{store.execute(SENT, (seeded.run_key, step_id)).fetchone()[0]:,}"
        assert rows == {
            "treated": [f"{want.treated_n:,}", sent, f"{want.treated_converted:,}", rate_t, revenue_t],
            "held out": [f"{want.held_n:,}", "–", f"{want.held_converted:,}", rate_h, revenue_h],
        }
        lift_line, revenue_line = lines[index + 2].strip(), lines[index + 3].strip()
        low, high = want.newcombe()
        rel_low, rel_high = want.koopman()
        relative = (want.treated_converted / want.treated_n) / (want.held_converted / want.held_n) - 1
        assert lift_line.startswith(
            f"lift {100 * want.absolute:+.2f} pp [{100 * low:+.2f} pp, {100 * high:+.2f} pp], "
            f"relative {100 * relative:+.1f}% [{100 * rel_low:+.1f}%, {100 * rel_high:+.1f}%]"
        ), lift_line
        assert lift_line.endswith("*") == (low > 0 or high < 0)
        w_low, w_high = want.welch()
        mean_diff = sum(want.treated_revenue) / want.treated_n - sum(want.held_revenue) / want.held_n
        assert revenue_line.startswith(f"revenue per recipient {mean_diff:+,.2f} [{w_low:+,.2f}, {w_high:+,.2f}]")
    assert any(re.search(r"window open until \d{4}-\d\d-\d\d \d\d:\d\d UTC", line) for line in lines)


def test_report_says_when_a_group_is_too_small(store, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CAMPAIGNS_CONFIG_DIR", str(write_campaign(tmp_path / "campaigns", campaign_dict(12))))
    seeded = seed_run(store, profiles=12)
    book(store, seeded, [Booking(p, seeded.starts["mail"] + timedelta(hours=1), Decimal(5)) for p in seeded.audience])
    assert main(["report", CAMPAIGN_ID]) == 0
    text = "\n".join(lift_lines(capsys.readouterr().out))
    assert "not enough data: treated" in text and "each group needs at least 10" in text
    assert " pp " not in text  # no lift printed from a handful of people


def test_a_holdout_without_a_conversion_table_says_what_to_add(store, tmp_path, monkeypatch, capsys) -> None:
    data = campaign_dict(30)
    del data["conversion"]
    monkeypatch.setenv("CAMPAIGNS_CONFIG_DIR", str(write_campaign(tmp_path / "campaigns", data)))
    seed_run(store, profiles=30)
    assert main(["report", CAMPAIGN_ID]) == 0
    out = capsys.readouterr().out
    assert "Lift: the campaign holds members out but names no conversion table; add e.g." in out and "window: 7d" in out
