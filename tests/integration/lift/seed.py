"""A run with a holdout and conversions the test controls, and the lift computed from them
independently of the code under test: counts in Python from the seeded bookings, intervals by
statsmodels (Newcombe, Koopman score, Wilson) and scipy (Welch's t).

The run is a real one (audience evaluated with a holdout, two steps targeted by the library);
only its sends are stamped 'sent' in SQL, as no message needs to leave. Group membership is
read from the frozen snapshot (the hash draws it), the steps' start from their ledger rows.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import yaml
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from campaign_orchestrator.config.campaign import CampaignConfig
from campaign_orchestrator.paths import ProjectPaths
from campaign_orchestrator.run.audience import evaluate_audience
from campaign_orchestrator.run.runs import register_run
from campaign_orchestrator.run.targeting import target_step
from tests.fixtures.store import add_profiles

CAMPAIGN_ID = "lift_demo"
WINDOW = timedelta(days=3)


def campaign_dict(
    profiles: int = 500, window: str = "3d", amount_column: str | None = "amount", percent: float = 20.0
) -> dict:
    """A campaign over profiles 1..``profiles``: an email, then an SMS to everyone it reached."""
    conversion = {"table": "crm.booking", "profile_column": "profile_id", "time_column": "booked_at", "window": window}
    if amount_column:
        conversion["amount_column"] = amount_column
    return {
        "id": CAMPAIGN_ID, "schedule": "manual",
        "audience": {"sql": "audiences/by_ids.sql", "params": {"profile_ids": list(range(1, profiles + 1))},
                     "holdout": {"percent": percent, "salt": "lift-test"}},
        "conversion": conversion,
        "steps": [
            {"id": "mail", "channel": "email", "template": "winter_sale", "sender": "S <s@shop.example>"},
            {"id": "sms", "channel": "sms", "template": "winter_sale_sms", "after": "mail"},
        ],
    }


def write_campaign(folder: Path, data: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{data['id']}.yaml").write_text(yaml.safe_dump(data))
    return folder


@dataclass
class Booking:
    profile_id: int
    at: datetime
    amount: Decimal


@dataclass
class SeededRun:
    run_key: int
    config: CampaignConfig
    audience: set[int]
    held_out: set[int]
    starts: dict[str, datetime]
    """Each step's start, and the whole campaign's under ``None``."""
    bookings: list[Booking] = field(default_factory=list)


def seed_run(
    store, profiles: int = 500, outsiders: int = 10, after_step=None, steps=None, audience_sql: str | None = None,
    **options,
) -> SeededRun:
    """Profiles 1..``profiles`` are the audience (every tenth opted out of email: excluded, yet
    treated), ``outsiders`` more are not; a run of ``campaign_dict(profiles, **options)``
    evaluated with its holdout and both steps targeted, the sendable messages stamped sent.
    ``steps`` replaces the campaign's steps; ``after_step(run_key, step_id)`` runs after each
    step is sent (feedback before the next step's conditions); ``audience_sql`` replaces the
    audience's SELECT (e.g. one returning entity keys)."""
    data = campaign_dict(profiles, **options)
    if steps is not None:
        data["steps"] = steps
    config = CampaignConfig.model_validate(data)
    add_profiles(store, [
        {"profile_id": i, "email": f"u{i}@example.com", "phone": f"+336{i:08d}", "first_name": "A",
         "consent": {"email": "opted_out" if i % 10 == 3 else "opted_in", "sms": "opted_in"}}
        for i in range(1, profiles + outsiders + 1)
    ])
    store.execute("INSERT INTO crm.product (product_id, sku, name, category, price) VALUES (1, 'TRIP-1', 'Trip', 'city', 100)")
    run_key = register_run(store, config.id, "manual__lift", None, {})
    audience = config.audience
    with tempfile.TemporaryDirectory() as folder:
        source, params = ProjectPaths.discover().sql / audience.sql, dict(audience.params)
        if audience_sql is not None:
            source, params = Path(folder) / "audience.sql", {}
            source.write_text(audience_sql)
        evaluate_audience(store, run_key, source, params, None, holdout=audience.holdout)
    for step in config.message_steps:
        target_step(store, run_key, config, step)
        store.execute(
            "UPDATE campaign.message SET status = 'sent', sent_at = now() "
            "WHERE run_key = %s AND step_id = %s AND status = 'pending'",
            (run_key, step.id),
        )
        if after_step is not None:
            after_step(run_key, step.id)
        time.sleep(0.02)  # the next step starts strictly later
    members = store.execute(
        "SELECT profile_id, bool_or(held_out) FROM campaign.audience_member WHERE run_key = %s GROUP BY profile_id",
        (run_key,),
    ).fetchall()
    starts = dict(store.execute(
        "SELECT step_id, min(created_at) FROM campaign.message WHERE run_key = %s GROUP BY step_id", (run_key,)
    ).fetchall())
    starts[None] = min(starts.values())
    return SeededRun(
        run_key, config, {p for p, _ in members}, {p for p, held in members if held}, starts,
    )


def book(store, seeded: SeededRun, bookings: list[Booking]) -> None:
    """Insert the bookings (conversions) and remember them for the expectation."""
    first = len(seeded.bookings)
    with store.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO crm.booking (booking_id, profile_id, product_id, status, booked_at, starts_on, amount) "
            "VALUES (%s, %s, 1, 'confirmed', %s, current_date + 30, %s)",
            [(first + i + 1, b.profile_id, b.at, b.amount) for i, b in enumerate(bookings)],
        )
    seeded.bookings += bookings


def standard_bookings(seeded: SeededRun) -> list[Booking]:
    """Conversions inside, before and after the window, on its edges, and of outsiders."""
    t0 = seeded.starts["mail"]
    bookings = []
    for pid in range(1, max(seeded.audience) + 11):
        treated = pid in seeded.audience and pid not in seeded.held_out
        held = pid in seeded.held_out
        if treated and pid % 4 == 0:
            bookings.append(Booking(pid, t0 + timedelta(hours=1), Decimal(100 + (pid % 7) * 10)))
        if treated and pid % 12 == 0:  # a second conversion of the same recipient: counted once, revenue added
            bookings.append(Booking(pid, t0 + timedelta(days=2), Decimal("55.50")))
        if held and pid % 5 == 0:
            bookings.append(Booking(pid, t0 + timedelta(hours=3), Decimal("90.25")))
        if pid % 9 == 1:  # before the step, and after its window: never counted
            bookings.append(Booking(pid, t0 - timedelta(minutes=1), Decimal(500)))
            bookings.append(Booking(pid, t0 + WINDOW + timedelta(minutes=1), Decimal(500)))
        if pid % 50 == 7:  # at the email step's start: in its window, before the SMS step's
            bookings.append(Booking(pid, t0, Decimal(30)))
        if pid % 50 == 8:  # at the end of the email's window (excluded), inside the SMS step's
            bookings.append(Booking(pid, t0 + WINDOW, Decimal(40)))
    return bookings


@dataclass
class Expected:
    treated_n: int
    treated_converted: int
    held_n: int
    held_converted: int
    treated_revenue: list[float]
    held_revenue: list[float]

    @property
    def absolute(self) -> float:
        return self.treated_converted / self.treated_n - self.held_converted / self.held_n

    def newcombe(self) -> tuple[float, float]:
        low, high = confint_proportions_2indep(
            self.treated_converted, self.treated_n, self.held_converted, self.held_n, method="newcomb", compare="diff"
        )
        return float(low), float(high)

    def koopman(self) -> tuple[float, float]:
        low, high = confint_proportions_2indep(
            self.treated_converted, self.treated_n, self.held_converted, self.held_n,
            method="score", compare="ratio", correction=False,
        )
        return float(low) - 1, float(high) - 1

    def wilson(self, treated: bool) -> tuple[float, float]:
        x, n = (self.treated_converted, self.treated_n) if treated else (self.held_converted, self.held_n)
        low, high = proportion_confint(x, n, method="wilson")
        return float(low), float(high)

    def welch(self) -> tuple[float, float]:
        result = stats.ttest_ind(self.treated_revenue, self.held_revenue, equal_var=False)
        interval = result.confidence_interval(0.95)
        return float(interval.low), float(interval.high)


def expected(seeded: SeededRun, step_id: str | None, window: timedelta = WINDOW) -> Expected:
    """The lift's inputs for a step (or the whole campaign, ``None``) from the seeded data."""
    start = seeded.starts[step_id]
    revenue: dict[int, Decimal] = {}
    converted: set[int] = set()
    for b in seeded.bookings:
        if b.profile_id in seeded.audience and start <= b.at < start + window:
            converted.add(b.profile_id)
            revenue[b.profile_id] = revenue.get(b.profile_id, Decimal(0)) + b.amount
    treated = sorted(seeded.audience - seeded.held_out)
    held = sorted(seeded.held_out)
    return Expected(
        len(treated), len(converted & set(treated)), len(held), len(converted & set(held)),
        [float(revenue.get(p, 0)) for p in treated], [float(revenue.get(p, 0)) for p in held],
    )
