"""Benchmark the demo data generator against a scratch database, with a bare baseline.

    python bench/bench_store.py --profiles 1000000
    python bench/bench_store.py --dsn postgresql://postgres@127.0.0.1:5432/postgres --json bench-results/store.json

Creates a scratch database on the server of ``--dsn`` (the DSN's own database is only used
to create and drop it), applies the migrations, runs the generator once and prints, per
step, rows, seconds and rows per second. Then, in the same database and run, the baseline:
``INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, N) g`` into an ordinary
(logged, index-free) table, N being the total number of rows the generator wrote, and the
ratio of the two times. The scratch database is dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from datetime import date
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parents[1]
try:
    import campaign_orchestrator  # noqa: F401
except ImportError:  # not installed: use the checkout
    sys.path.insert(0, str(ROOT / "plugins"))

from campaign_orchestrator.paths import ProjectPaths  # noqa: E402
from campaign_orchestrator.store.demo_data import generate_demo_data  # noqa: E402
from campaign_orchestrator.store.migrations import migrate  # noqa: E402

ANCHOR = date(2026, 1, 15)  # fixed, so row counts are the same every run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)

    scratch = f"bench_store_{secrets.token_hex(4)}"
    scratch_dsn = make_conninfo(args.dsn, dbname=scratch)
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
        server = admin.execute("SHOW server_version").fetchone()[0]
    try:
        with psycopg.connect(scratch_dsn, autocommit=True) as conn:
            migrate(conn, ProjectPaths.discover().migrations)
            results = run(conn, args.profiles, args.seed)
    finally:
        if args.keep:
            print(f"\nkept the scratch database: {scratch_dsn}")
        else:
            with psycopg.connect(args.dsn, autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))
    results.update(
        profiles=args.profiles,
        seed=args.seed,
        server=server,
        host=conninfo_to_dict(args.dsn).get("host"),
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


def run(conn: psycopg.Connection, profiles: int, seed: int) -> dict:
    steps: list[tuple[str, int, float]] = []
    started = time.perf_counter()
    counts = generate_demo_data(
        conn, profiles, seed=seed, anchor=ANCHOR, on_step=lambda name, rows, secs: steps.append((name, rows, secs))
    )
    total_secs = time.perf_counter() - started
    total_rows = sum(counts.values())

    print(f"Demo data generator, {profiles:,} profiles (seed {seed}, anchor {ANCHOR})\n")
    print(f"{'step':<22}{'rows':>12}{'seconds':>10}{'rows/s':>14}")
    for name, rows, secs in steps:
        if name in counts:
            rate = f"{counts[name] / secs:,.0f}" if secs > 0 else ""
            line = f"{name:<22}{counts[name]:>12,}{secs:>10.2f}{rate:>14}"
            if name == "consent":
                line += f"  (+{counts['consent_history']:,} consent_history rows by its trigger)"
        else:  # set-up, updates, constraint and index rebuilds, ANALYZE
            line = f"{name:<22}{rows if rows > 0 else '':>12}{secs:>10.2f}"
        print(line)
    print(f"{'total':<22}{total_rows:>12,}{total_secs:>10.2f}{total_rows / total_secs:>14,.0f}")

    baseline_secs = baseline(conn, total_rows)
    print(
        f"\nBaseline: INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, {total_rows:,}) g\n"
        f"{'':<22}{total_rows:>12,}{baseline_secs:>10.2f}{total_rows / baseline_secs:>14,.0f}\n"
        f"\nGenerator / baseline time: {total_secs / baseline_secs:.2f}x"
    )
    return {
        "counts": counts,
        "steps": [{"step": n, "rows": r, "seconds": round(s, 3)} for n, r, s in steps],
        "total_seconds": round(total_secs, 3),
        "total_rows": total_rows,
        "baseline_seconds": round(baseline_secs, 3),
        "ratio": round(total_secs / baseline_secs, 3),
    }


def baseline(conn: psycopg.Connection, rows: int) -> float:
    """The same number of rows into an ordinary table, under the generator's commit settings."""
    conn.execute("CREATE TABLE public.bench_baseline (id bigint, payload text)")
    try:
        started = time.perf_counter()
        with conn.transaction():
            conn.execute("SET LOCAL synchronous_commit = off")
            conn.execute(
                "INSERT INTO public.bench_baseline SELECT g, md5(g::text) FROM generate_series(1, %(rows)s::bigint) g",
                {"rows": rows},
            )
        return time.perf_counter() - started
    finally:
        conn.execute("DROP TABLE public.bench_baseline")


if __name__ == "__main__":
    sys.exit(main())
