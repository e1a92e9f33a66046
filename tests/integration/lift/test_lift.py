"""Holdout lift in a real store against an independent computation on seeded data: exact
counts per group and window, and intervals equal to statsmodels' and scipy's."""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import Decimal

import pytest

from campaign_orchestrator.config.campaign import CampaignConfig
from campaign_orchestrator.lift.compute import MIN_GROUP, LiftError, compute_lift
from campaign_orchestrator.run.checks import check_campaign_in_store
from campaign_orchestrator.paths import ProjectPaths
from tests.integration.lift.seed import (
    WINDOW,
    Booking,
    book,
    campaign_dict,
    expected,
    seed_run,
    standard_bookings,
)

pytestmark = pytest.mark.integration


def by_label(lift):
    return {s.step_id: s for s in lift.steps}


def assert_matches(step, want) -> None:
    """One step's lift equals the independent computation."""
    assert (step.treated.recipients, step.treated.converted) == (want.treated_n, want.treated_converted)
    assert (step.held_out.recipients, step.held_out.converted) == (want.held_n, want.held_converted)
    assert step.status == "ok"
    assert step.absolute == pytest.approx(want.absolute, abs=1e-12)
    assert step.absolute_interval == pytest.approx(want.newcombe(), abs=1e-9)
    assert step.relative == pytest.approx(
        (want.treated_converted / want.treated_n) / (want.held_converted / want.held_n) - 1, abs=1e-12
    )
    assert step.relative_interval == pytest.approx(want.koopman(), abs=1e-7)
    assert step.treated.rate_interval == pytest.approx(want.wilson(True), abs=1e-12)
    assert step.held_out.rate_interval == pytest.approx(want.wilson(False), abs=1e-12)
    mean_t = sum(want.treated_revenue) / want.treated_n
    mean_h = sum(want.held_revenue) / want.held_n
    assert step.treated.revenue_mean == pytest.approx(mean_t, abs=1e-9)
    assert step.held_out.revenue_mean == pytest.approx(mean_h, abs=1e-9)
    assert step.revenue_lift == pytest.approx(mean_t - mean_h, abs=1e-9)
    assert step.revenue_interval == pytest.approx(want.welch(), abs=1e-7)
    assert step.revenue_relative == pytest.approx(mean_t / mean_h - 1, abs=1e-12)


def test_lift_per_step_and_for_the_whole_campaign_equals_an_independent_computation(store, tmp_path) -> None:
    seeded = seed_run(store)
    book(store, seeded, standard_bookings(seeded))
    lift = compute_lift(store, seeded.run_key, seeded.config)
    steps = by_label(lift)
    assert list(steps) == ["mail", "sms", None]
    for step_id in ("mail", "sms", None):
        assert_matches(steps[step_id], expected(seeded, step_id))
    # The seeded edges differ between the steps: a booking at the email's start is in its
    # window but before the SMS step's; one at the end of the email's window is inside the SMS's.
    assert expected(seeded, "mail") != expected(seeded, "sms")
    # Intention to treat: opted-out members (excluded from the email) count as treated.
    excluded = store.execute(
        "SELECT count(*) FROM campaign.message WHERE run_key = %s AND step_id = 'mail' AND reason = 'opted_out'",
        (seeded.run_key,),
    ).fetchone()[0]
    assert excluded > 0 and steps["mail"].treated.recipients == len(seeded.audience - seeded.held_out)
    assert steps["mail"].treated.sent == len(seeded.audience - seeded.held_out) - excluded
    assert lift.window == WINDOW and lift.amount_column == "amount"
    assert steps["mail"].started_at == seeded.starts["mail"] and steps["mail"].closes_at == seeded.starts["mail"] + WINDOW


def test_conversions_before_the_step_or_outside_the_window_do_not_count(store, tmp_path) -> None:
    seeded = seed_run(store, profiles=120)
    t0 = seeded.starts["mail"]
    treated = sorted(seeded.audience - seeded.held_out)
    held = sorted(seeded.held_out)
    book(store, seeded, [
        *(Booking(p, t0 - timedelta(seconds=1), Decimal(10)) for p in treated[:20]),        # before the send
        *(Booking(p, t0 + WINDOW, Decimal(10)) for p in treated[20:40]),                      # the window has closed
        *(Booking(p, t0 + WINDOW + timedelta(days=30), Decimal(10)) for p in held[:10]),     # long after
        Booking(treated[50], t0 + WINDOW - timedelta(seconds=1), Decimal(7)),                 # the last second inside
        Booking(held[12], t0 + timedelta(minutes=5), Decimal(9)),
        Booking(max(seeded.audience) + 3, t0 + timedelta(hours=1), Decimal(10)),             # not in the audience
    ])
    mail = by_label(compute_lift(store, seeded.run_key, seeded.config))["mail"]
    assert (mail.treated.converted, mail.held_out.converted) == (1, 1)
    assert mail.treated.revenue == 7 and mail.held_out.revenue == 9
    assert_matches(mail, expected(seeded, "mail"))


def test_a_longer_window_counts_later_conversions(store, tmp_path) -> None:
    seeded = seed_run(store, profiles=150, window="10d")
    book(store, seeded, standard_bookings(seeded))
    steps = by_label(compute_lift(store, seeded.run_key, seeded.config))
    assert_matches(steps["mail"], expected(seeded, "mail", window=timedelta(days=10)))
    # The bookings one minute after a 3-day window are inside a 10-day one.
    assert steps["mail"].treated.converted > expected(seeded, "mail").treated_converted


def test_no_conversion_at_all_gives_a_difference_interval_and_no_relative_lift(store, tmp_path) -> None:
    seeded = seed_run(store, profiles=200)
    mail = by_label(compute_lift(store, seeded.run_key, seeded.config))["mail"]
    want = expected(seeded, "mail")
    assert mail.status == "ok" and mail.absolute == 0
    assert mail.absolute_interval == pytest.approx(want.newcombe(), abs=1e-9)
    assert mail.relative is None and mail.relative_interval is None
    assert mail.revenue_interval is None  # no variation: Welch's interval does not exist
    assert mail.note == "no conversion yet in either group"


def test_no_held_out_conversion_leaves_the_relative_lift_unbounded(store, tmp_path) -> None:
    seeded = seed_run(store, profiles=200)
    t0 = seeded.starts["mail"]
    book(store, seeded, [Booking(p, t0 + timedelta(hours=2), Decimal(50))
                         for p in sorted(seeded.audience - seeded.held_out)[::6]])
    mail = by_label(compute_lift(store, seeded.run_key, seeded.config))["mail"]
    want = expected(seeded, "mail")
    assert want.held_converted == 0 and mail.relative is None
    low, high = mail.relative_interval
    assert low == pytest.approx(want.koopman()[0], abs=1e-7) and math.isinf(high)
    assert mail.absolute_interval == pytest.approx(want.newcombe(), abs=1e-9)
    assert mail.revenue_interval == pytest.approx(want.welch(), abs=1e-7)
    assert "no held-out conversion" in mail.note


def test_tiny_groups_report_not_enough_data(store, tmp_path) -> None:
    seeded = seed_run(store, profiles=14)
    book(store, seeded, [Booking(p, seeded.starts["mail"] + timedelta(hours=1), Decimal(5)) for p in seeded.audience])
    mail = by_label(compute_lift(store, seeded.run_key, seeded.config))["mail"]
    held, treated = len(seeded.held_out), len(seeded.audience - seeded.held_out)
    assert held < MIN_GROUP or treated < MIN_GROUP
    assert mail.status == "not_enough_data"
    assert mail.absolute is None and mail.absolute_interval is None and mail.revenue_interval is None
    assert f"held out {held:,} recipient" in mail.note and "at least 10" in mail.note
    assert (mail.treated.recipients, mail.held_out.recipients) == (treated, held)


def test_one_profile_with_several_entities_is_one_recipient(store) -> None:
    # Two bookings per profile in the audience: one message (ledger row) per booking.
    two_each = "SELECT profile_id, b AS entity_key FROM crm.profile, (VALUES ('b1'), ('b2')) AS v(b) WHERE profile_id <= 60"
    seeded = seed_run(store, profiles=60, audience_sql=two_each)
    rows = store.execute(
        "SELECT count(*), count(DISTINCT profile_id) FROM campaign.message WHERE run_key = %s AND step_id = 'mail'",
        (seeded.run_key,),
    ).fetchone()
    assert rows == (120, 60)
    book(store, seeded, standard_bookings(seeded))
    assert_matches(by_label(compute_lift(store, seeded.run_key, seeded.config))["mail"], expected(seeded, "mail"))


def test_without_an_amount_column_there_is_no_revenue_lift(store, tmp_path) -> None:
    seeded = seed_run(store, profiles=100, amount_column=None)
    book(store, seeded, standard_bookings(seeded))
    mail = by_label(compute_lift(store, seeded.run_key, seeded.config))["mail"]
    assert mail.revenue_lift is None and mail.revenue_interval is None
    assert mail.treated.converted == expected(seeded, "mail").treated_converted


def test_a_column_the_store_lacks_is_named_with_the_fix(store, tmp_path) -> None:
    seeded = seed_run(store, profiles=20)
    data = campaign_dict()
    data["conversion"].update(amount_column="amout", time_column="starts_on")
    config = CampaignConfig.model_validate(data)
    with pytest.raises(LiftError, match=r"conversion.amount_column: crm.booking has no column 'amout'; did you mean 'amount'\?"):
        compute_lift(store, seeded.run_key, config)
    data["conversion"].update(amount_column="status", time_column="booked_at")
    # `campaigns validate --store` checks the conversion table with the rest.
    problems = check_campaign_in_store(store, CampaignConfig.model_validate(data), ProjectPaths.discover())
    assert problems == ["conversion.amount_column: crm.booking.status is text, not a number"]
    data["conversion"]["table"] = "crm.bookings"
    with pytest.raises(LiftError, match="the store has no table crm.bookings"):
        compute_lift(store, seeded.run_key, CampaignConfig.model_validate(data))


def test_after_a_condition_the_step_counts_who_it_turned_away_and_the_next_is_flagged(store) -> None:
    mail = {"id": "mail", "channel": "email", "template": "winter_sale", "sender": "S <s@shop.example>"}
    steps = [
        mail,
        {"id": "sms", "channel": "sms", "template": "winter_sale_sms", "after": "mail",
         "when": {"step": "mail", "outcome": "not_opened"}},
        {**mail, "id": "reminder", "after": "sms"},
    ]
    opened: set[int] = set()

    def open_some(run_key: int, step_id: str) -> None:
        if step_id != "mail":
            return
        rows = store.execute(
            "SELECT profile_id FROM campaign.message WHERE run_key = %s AND step_id = 'mail' AND status = 'sent' "
            "AND profile_id %% 3 = 0", (run_key,)).fetchall()
        opened.update(p for (p,) in rows)
        store.execute(
            "INSERT INTO campaign.delivery_event (provider_message_id, run_key, step_id, profile_id, entity_key, "
            "channel, event_type, occurred_at, provider_event_id) "
            "SELECT 'm-' || p, %s, 'mail', p, '', 'email', 'opened', now(), 'e-' || p FROM unnest(%s::bigint[]) AS p",
            (run_key, sorted(opened)),
        )

    seeded = seed_run(store, profiles=300, steps=steps, after_step=open_some)
    book(store, seeded, standard_bookings(seeded))
    lift = by_label(compute_lift(store, seeded.run_key, seeded.config))
    treated = seeded.audience - seeded.held_out
    # Intention to treat: the openers the SMS step turned away still count as its treated.
    assert opened and lift["sms"].treated.recipients == len(treated)
    assert lift["sms"].treated.turned_away == len(opened) and lift["sms"].caveat == ""
    # They left the branch: the reminder's treated are the rest, its held out the whole holdout.
    assert lift["reminder"].treated.recipients == len(treated - opened)
    assert lift["reminder"].held_out.recipients == len(seeded.held_out)
    assert lift["reminder"].caveat.startswith(
        f"not a randomised comparison: the conditions of sms ({len(opened):,}) turned treated members away"
    )
    assert lift[None].caveat == "" and lift[None].treated.recipients == len(treated)
