"""Lift through a real run: the shipped low_stock_alert (10% holdout, two segment steps) with
`airflow dags test`, then customers book, and `campaigns report` shows the lift of each step
and of the whole campaign equal to a computation from the run's snapshot and the bookings."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from campaign_orchestrator.cli import main
from campaign_orchestrator.store.demo_data import generate_demo_data
from tests.fixtures.airflow import dags_test
from tests.integration.lift.seed import Expected

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
CAMPAIGN = "low_stock_alert"


def test_a_real_run_reports_the_lift_of_each_step_and_of_the_campaign(
    airflow_db, store, smtp_server, tmp_path, monkeypatch, capsys
) -> None:
    generate_demo_data(store, profiles=20000, seed=7)
    folder = tmp_path / "campaigns"
    shutil.copytree(ROOT / "dags" / "campaigns", folder)
    env = {"AIRFLOW_CONN_SMTP_DEFAULT": smtp_server.conn_json(), "CAMPAIGNS_CONFIG_DIR": str(folder)}
    result = dags_test(CAMPAIGN, env)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "state=success" in output[-6000:], output[-6000:]
    # The finalize task logs the lift so far: the window has just opened.
    assert "Holdout lift so far" in output and "no conversion yet in either group" in output

    run_key = store.execute(
        "SELECT run_key FROM campaign.run WHERE campaign_id = %s ORDER BY run_key DESC LIMIT 1", (CAMPAIGN,)
    ).fetchone()[0]
    members = store.execute(
        "SELECT profile_id, bool_or(held_out), max(segment) FROM campaign.audience_member WHERE run_key = %s "
        "GROUP BY profile_id",
        (run_key,),
    ).fetchall()
    held = {p for p, is_held, _ in members if is_held}
    segment = {p: s for p, is_held, s in members if not is_held}
    # Customers book after the emails: every 4th treated member and every 6th held-out one,
    # in profile order, each one booking of the product's price.
    treated_sorted = sorted(segment)
    converters = set(treated_sorted[::4]) | set(sorted(held)[::6])
    store.execute(
        """
        INSERT INTO crm.booking (booking_id, profile_id, product_id, status, booked_at, starts_on, amount)
        SELECT 800000000 + p, p, 1, 'confirmed', now(), current_date + 20, 250 FROM unnest(%s::bigint[]) AS p
        """,
        (sorted(converters),),
    )
    monkeypatch.setenv("CAMPAIGNS_CONFIG_DIR", str(folder))
    assert main(["report", CAMPAIGN]) == 0
    report = capsys.readouterr().out
    lines = report[report.index("Lift: "):].splitlines()
    assert lines[0] == "Lift: recipients converting in crm.booking within 14d of each step's start, 95% intervals"

    def want(treated: set[int]) -> Expected:
        revenue = lambda group: [250.0 if p in converters else 0.0 for p in sorted(group)]  # noqa: E731
        return Expected(len(treated), len(treated & converters), len(held), len(held & converters),
                        revenue(treated), revenue(held))

    expectations = {
        # A segment step targets its segment and records the whole holdout (the held out have no segment).
        "invite_email": want({p for p, s in segment.items() if s == "subscribers"}),
        "digest_email": want({p for p, s in segment.items() if s == "everyone_else"}),
        "whole campaign": want(set(segment)),
    }
    for label, expected in expectations.items():
        index = next(i for i, line in enumerate(lines) if line[:20].strip() == label)
        rows = {line[21:31].strip(): line[32:].split() for line in lines[index:index + 2]}
        assert [rows["treated"][i] for i in (0, 2)] == [f"{expected.treated_n:,}", f"{expected.treated_converted:,}"]
        assert rows["held out"][:3] == [f"{expected.held_n:,}", "–", f"{expected.held_converted:,}"]
        low, high = expected.newcombe()
        assert lines[index + 2].strip().startswith(
            f"lift {100 * expected.absolute:+.2f} pp [{100 * low:+.2f} pp, {100 * high:+.2f} pp]"
        )
        w_low, w_high = expected.welch()
        assert f"[{w_low:+,.2f}, {w_high:+,.2f}]" in lines[index + 3]
    block = "\n".join(lines)
    # Segments chosen by rules are not a randomised comparison; the whole campaign is.
    assert block.count("segment subscribers was chosen by rules") == 1
    assert block.count("segment everyone_else was chosen by rules") == 1
    print("\n" + "\n".join(lines))
