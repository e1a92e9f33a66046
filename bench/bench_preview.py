"""Preview counts at scale: ``campaigns calculate`` against the full preview and a bare count.

    python bench/bench_preview.py --profiles 1000000 --bookings-per-profile 5
    python bench/bench_preview.py --reuse-database bench_preview_1m   # data already generated (--keep)

Creates a scratch database on the server of ``--dsn``, applies the migrations, generates the
demo data (dated today, so the campaigns' "next 45 days" find trips) and vacuums it, as
autovacuum leaves a store at rest. Then, for each demo campaign (``--campaign``, repeatable;
default: all of them), on the same data and server:

- baseline: a bare ``SELECT count(*)`` of the campaign's compiled audience SELECT (no
  deduplication, holdout, split or step rules), with the same session settings calculate
  uses (no JIT, ``work_mem`` as calculate sets it);
- calculate: ``calculate_campaign``, with its counts and seconds per stage;
- old preview: ``preview_campaign``, which evaluates the audience and writes every ledger
  row of every step in a rolled-back transaction.

The counts of calculate and preview are checked to be equal. Each measurement starts from a
vacuumed store (a rolled-back calculation or preview leaves its rows behind as dead tuples
until autovacuum comes; the next one would scan them). The scratch database is dropped
at the end unless ``--keep`` (then ``--reuse-database`` runs again on it without generating).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / ".airflow"))
os.environ["CAMPAIGNS_HOME"] = str(ROOT)
try:
    import campaign_orchestrator  # noqa: F401
except ImportError:  # not installed: use the checkout
    sys.path.insert(0, str(ROOT / "plugins"))

from campaign_orchestrator.audience.compile import compile_audience  # noqa: E402
from campaign_orchestrator.config.loader import load_campaigns  # noqa: E402
from campaign_orchestrator.paths import ProjectPaths  # noqa: E402
from campaign_orchestrator.run.calculate import WORK_MEM, StageCounts, calculate_campaign  # noqa: E402
from campaign_orchestrator.run.preview import preview_campaign  # noqa: E402
from campaign_orchestrator.store.demo_data import generate_demo_data  # noqa: E402
from campaign_orchestrator.store.migrations import migrate  # noqa: E402

CRM_TABLES = "crm.profile, crm.consent, crm.suppression, crm.product, crm.inventory, crm.subscription, crm.booking"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--bookings-per-profile", type=float, default=5.0)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--campaign", action="append", help="a demo campaign id (default: every one)")
    parser.add_argument("--no-preview", action="store_true", help="skip the (slow) full preview")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--reuse-database", metavar="NAME", help="an existing, generated database: skip generation")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--report", type=Path, metavar="JSON", help="print the report of an earlier --json")
    args = parser.parse_args(argv)
    if args.report:
        report(json.loads(args.report.read_text()))
        return 0

    paths = ProjectPaths.discover()
    configs = {cid: config for cid, (_, config) in load_campaigns(paths.campaigns, paths).configs.items()}
    chosen = args.campaign or sorted(configs)
    unknown = set(chosen) - set(configs)
    if unknown:
        parser.error(f"unknown campaign(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(configs))}")

    database = args.reuse_database or f"bench_preview_{secrets.token_hex(4)}"
    if not args.reuse_database:
        with psycopg.connect(args.dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    results: dict = {"profiles": args.profiles, "database": database, "campaigns": {}}
    try:
        with psycopg.connect(make_conninfo(args.dsn, dbname=database), autocommit=True) as conn:
            migrate(conn, paths.migrations)
            if not args.reuse_database:
                results |= generate(conn, args.profiles, args.bookings_per_profile)
            results["rows"] = dict(zip(
                ("profiles", "bookings"),
                conn.execute("SELECT (SELECT count(*) FROM crm.profile), (SELECT count(*) FROM crm.booking)").fetchone(),
            ))
            for campaign_id in chosen:
                results["campaigns"][campaign_id] = measure(conn, configs[campaign_id], paths, not args.no_preview)
    finally:
        if not (args.keep or args.reuse_database):
            with psycopg.connect(args.dsn, autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
    report(results)
    if args.keep:
        print(f"\nkept database {database}: --reuse-database {database} runs again without generating")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


def generate(conn: psycopg.Connection, profiles: int, bookings_per_profile: float) -> dict:
    started = time.perf_counter()
    counts = generate_demo_data(conn, profiles=profiles, bookings_per_profile=bookings_per_profile)
    generated = time.perf_counter() - started
    started = time.perf_counter()
    conn.execute(f"VACUUM (ANALYZE) {CRM_TABLES}")
    return {"generate_s": generated, "vacuum_analyze_s": time.perf_counter() - started, "generated_rows": counts}


def measure(conn: psycopg.Connection, config, paths: ProjectPaths, with_preview: bool) -> dict:
    compiled = compile_audience(config, paths)
    with conn.transaction(force_rollback=True):
        conn.execute("SET LOCAL jit = off")
        conn.execute(sql.SQL("SET LOCAL work_mem = {}").format(sql.Literal(WORK_MEM)))
        started = time.perf_counter()
        statement = sql.SQL("SELECT count(*) FROM (\n{}\n) AS audience").format(sql.SQL(compiled.text))  # type: ignore[arg-type]
        bare_rows = conn.execute(statement, compiled.params).fetchone()[0]
        bare = time.perf_counter() - started
    settle(conn)
    counts = calculate_campaign(conn, config, paths)
    assert bare_rows == counts.combined.members, (config.id, bare_rows, counts.combined.members)
    result = {"bare_count_s": bare, "bare_count_rows": bare_rows, "calculate": counts.as_dict(), "text": counts.format()}
    if with_preview:
        settle(conn)
        started = time.perf_counter()
        preview = preview_campaign(conn, config, paths)
        result["preview_s"] = time.perf_counter() - started
        result["preview"] = preview.as_dict()
        check_same(config.id, counts, preview)
    return result


def settle(conn: psycopg.Connection) -> None:
    """Vacuum away the rows the previous measurement rolled back, as autovacuum eventually
    does: each measurement starts from the same store instead of scanning the last one's."""
    conn.execute("VACUUM campaign.audience_member, campaign.message, campaign.run, campaign.run_step")


def check_same(campaign_id: str, counts: StageCounts, preview) -> None:
    assert counts.audience.members == preview.audience_size, campaign_id
    previewed = {s.step_id: (s.sendable, s.excluded) for s in preview.steps}
    for step in counts.steps:
        assert previewed[step.step_id] == (step.sendable, step.excluded), (campaign_id, step.step_id)


def report(results: dict) -> None:
    rows = results["rows"]
    head = f"Preview counts at {rows['profiles']:,} profiles / {rows['bookings']:,} bookings"
    if "generate_s" in results:
        head += f" (demo data {results['generate_s']:.1f} s, then VACUUM ANALYZE {results['vacuum_analyze_s']:.1f} s)"
    print(head + "\n")
    print("| campaign | blocks | audience SELECT rows | audience | sendable (all steps) | bare count(*) "
          "| calculate: blocks + combine / evaluate / steps = total | old preview | preview ÷ calculate |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for campaign_id, r in results["campaigns"].items():
        c = r["calculate"]
        selecting = sum(b["seconds"] for b in c["blocks"].values()) + c["combined"]["seconds"]
        steps = sum(s["seconds"] for s in c["steps"])
        preview = f"{r['preview_s']:.1f} s" if "preview_s" in r else "not run"
        ratio = f"{r['preview_s'] / c['seconds']:.2f}" if "preview_s" in r else ""
        print(
            f"| {campaign_id} | {len(c['blocks']) or 'SQL file'} | {r['bare_count_rows']:,} "
            f"| {c['audience']['members']:,} | {sum(s['sendable'] for s in c['steps']):,} "
            f"| {r['bare_count_s']:.2f} s "
            f"| {selecting:.1f} / {c['audience']['seconds']:.1f} / {steps:.1f} = {c['seconds']:.1f} s "
            f"| {preview} | {ratio} |"
        )
    for campaign_id, r in results["campaigns"].items():
        print(f"\n{r['text']}")
        if "preview_s" in r:
            p = r["preview"]
            steps = ", ".join(f"{s['step_id']} {s['seconds']:.2f} s" for s in p["steps"])
            print(f"  old preview: evaluate {p['audience_seconds']:.2f} s, ledger rows per step: {steps}")


if __name__ == "__main__":
    sys.exit(main())
