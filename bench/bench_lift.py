"""The holdout lift of a run, as ``campaigns report`` and the run page compute it on request,
beside bare baselines from the same run.

    python bench/bench_lift.py --profiles 1000000 [--steps 3] [--json bench-results/lift.json]

In a scratch database (demo data, ``--seed``): a run of every profile with a 10% holdout and
``--steps`` steps, each targeted by the library (one ledger row per profile and step), and one
conversion (a booking in the window) for every 13th profile. Measured, best of ``--repeat``:

- ``lift``: :func:`compute_lift`, the one statement and the intervals of every step and of the
  whole campaign;
- ``bare ledger pass``: ``SELECT step_id, profile_id, bool_or(...) FROM campaign.message WHERE
  run_key = … GROUP BY step_id, profile_id``, the one pass over the ledger any per-recipient
  answer needs, counted, nothing joined;
- ``bare conversions``: the conversions in the window, counted by the time column's index.

The scratch database is dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parents[1]
try:
    import campaign_orchestrator  # noqa: F401
except ImportError:  # not installed: use the checkout
    sys.path.insert(0, str(ROOT / "plugins"))

from campaign_orchestrator.config.campaign import CampaignConfig  # noqa: E402
from campaign_orchestrator.lift.compute import compute_lift  # noqa: E402
from campaign_orchestrator.paths import ProjectPaths  # noqa: E402
from campaign_orchestrator.run.audience import evaluate_audience  # noqa: E402
from campaign_orchestrator.run.runs import register_run  # noqa: E402
from campaign_orchestrator.run.targeting import target_step  # noqa: E402
from campaign_orchestrator.store.demo_data import generate_demo_data  # noqa: E402
from campaign_orchestrator.store.migrations import migrate  # noqa: E402

PATHS = ProjectPaths.discover()


def config(steps: int) -> CampaignConfig:
    mail = {"channel": "email", "template": "winter_sale", "sender": "W <w@w.example>"}
    return CampaignConfig.model_validate({
        "id": "bench_lift", "schedule": "manual",
        "audience": {"sql": "audiences/by_ids.sql", "holdout": {"percent": 10, "salt": "bench"}},
        "conversion": {"table": "crm.booking", "profile_column": "profile_id", "time_column": "booked_at",
                       "window": "7d", "amount_column": "amount"},
        "steps": [{**mail, "id": f"step_{i}", **({"after": f"step_{i - 1}"} if i else {})} for i in range(steps)],
    })


def best(repeat: int, function, *args) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = function(*args)
        times.append(time.perf_counter() - started)
    return min(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)

    scratch = f"bench_lift_{secrets.token_hex(4)}"
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{scratch}"')
    dsn = make_conninfo(**{**conninfo_to_dict(args.dsn), "dbname": scratch})
    campaign = config(args.steps)
    results: dict[str, object] = {"profiles": args.profiles, "steps": args.steps}
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn, PATHS.migrations)
            generate_demo_data(conn, args.profiles, args.seed)
            run_key = register_run(conn, campaign.id, "bench", None, {})
            with tempfile.TemporaryDirectory() as folder:  # every profile
                audience = Path(folder) / "everyone.sql"
                audience.write_text("SELECT profile_id FROM crm.profile")
                evaluate_audience(conn, run_key, audience, {}, None, holdout=campaign.audience.holdout)
            started = time.perf_counter()
            for step in campaign.message_steps:
                target_step(conn, run_key, campaign, step)
            print(f"{args.profiles:,} profiles x {args.steps} steps targeted in {time.perf_counter() - started:.1f}s")
            conn.execute(
                """
                INSERT INTO crm.booking (booking_id, profile_id, product_id, status, booked_at, starts_on, amount)
                SELECT 4000000000 + profile_id, profile_id, 1, 'confirmed', now() + interval '1 hour',
                       current_date + 30, 100 + profile_id % 300
                FROM crm.profile WHERE profile_id % 13 = 0
                """
            )
            for table in ("crm.booking", "campaign.message", "campaign.audience_member"):
                conn.execute(f"VACUUM ANALYZE {table}")
            ledger_rows = conn.execute("SELECT count(*) FROM campaign.message WHERE run_key = %s", (run_key,)).fetchone()[0]
            seconds, lift = best(args.repeat, compute_lift, conn, run_key, campaign)
            bare_ledger, _ = best(args.repeat, lambda: conn.execute(
                "SELECT count(*) FROM (SELECT step_id, profile_id, bool_or(status = 'held_out') FROM campaign.message "
                "WHERE run_key = %s GROUP BY step_id, profile_id) AS recipients", (run_key,)).fetchone())
            bare_conversions, _ = best(args.repeat, lambda: conn.execute(
                "SELECT count(*) FROM crm.booking WHERE booked_at >= now() - interval '1 day' "
                "AND booked_at < now() + interval '7 days'").fetchone())
            floor = bare_ledger + bare_conversions
            results.update(
                ledger_rows=ledger_rows,
                lift={"seconds": round(seconds, 3), "steps_reported": len(lift.steps)},
                bare_ledger={"seconds": round(bare_ledger, 3)},
                bare_conversions={"seconds": round(bare_conversions, 3)},
                ratio_to_bare=round(seconds / floor, 2),
            )
            print(f"lift (statement + intervals)      {seconds:7.2f}s  over {ledger_rows:,} ledger rows")
            print(f"bare ledger pass (GROUP BY)       {bare_ledger:7.2f}s")
            print(f"bare conversions in the window    {bare_conversions:7.2f}s")
            print(f"lift / bare passes                {seconds / floor:7.2f}x")
    finally:
        if not args.keep:
            with psycopg.connect(args.dsn, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
