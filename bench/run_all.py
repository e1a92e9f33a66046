"""`make bench`: every benchmark, each printing its figures beside a bare baseline measured
in the same run, then one report (bench-results/report.md and report.json) with each
figure's target, what was measured, and whether the target was met.

    python bench/run_all.py [--profiles 1000000] [--only run,parse] [--dsn postgresql://postgres@127.0.0.1:5432/postgres]

``--profiles`` is the size of the campaign run through the whole pipeline (its peak RSS is
compared with a run of ``--memory-profiles``); the per-channel benchmarks and the demo data
generator run at ``--channel-profiles``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "bench-results"
BENCHES = ("mime", "store", "throttle", "channels", "run", "smtp", "parse", "preview", "enrichment", "feedback", "ingest", "tracking", "lift")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=1_000_000, help="recipients of the whole-pipeline run")
    parser.add_argument("--memory-profiles", type=int, default=100_000, help="the smaller run peak RSS is compared with")
    parser.add_argument("--channel-profiles", type=int, default=100_000, help="profiles of the per-channel benchmarks")
    parser.add_argument("--smtp-profiles", type=int, default=30_000, help="profiles of the SMTP comparison")
    parser.add_argument("--campaigns", type=int, default=1000, help="campaign configs parsed into DAGs")
    parser.add_argument("--ingest-rows", type=int, default=1_000_000, help="records upserted by the ingestion benchmark")
    parser.add_argument("--only", default=",".join(BENCHES), help=f"a comma-separated subset of {', '.join(BENCHES)}")
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    wanted = {b.strip() for b in args.only.split(",") if b.strip()}
    unknown = wanted - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; choose from {', '.join(BENCHES)}")
    dsn = ["--dsn", args.dsn]
    runs = {
        "mime": ("MIME building vs the standard library; rendering with and without open and click tracking",
                 ["bench_mime.py", "--json", str(RESULTS / "mime.json")]),
        "store": ("Demo data generator vs plain INSERT … SELECT",
                  ["bench_store.py", "--profiles", str(args.channel_profiles), *dsn, "--json", str(RESULTS / "store.json")]),
        "throttle": ("Shared rate limiter vs no limiter", ["bench_throttle.py", *dsn]),
        "channels": ("Each channel's send rate through local provider stand-ins, and with a limit set",
                     ["bench_channels.py", "--profiles", str(args.channel_profiles), *dsn,
                      "--json", str(RESULTS / "channels.json")]),
        "run": (f"A {args.profiles:,}-recipient campaign through the whole pipeline, task by task, vs bare baselines",
                ["bench_run.py", "--profiles", str(args.profiles), "--memory-profiles", str(args.memory_profiles),
                 *dsn, "--json", str(RESULTS / "run.json")]),
        "smtp": ("The email channel vs a bare smtplib loop, on one and two connections",
                 ["bench_smtp.py", "--profiles", str(args.smtp_profiles), *dsn, "--json", str(RESULTS / "smtp.json")]),
        "parse": (f"{args.campaigns:,} campaign configs parsed into DAGs vs bare DAGs",
                  ["bench_parse.py", "--campaigns", str(args.campaigns), "--json", str(RESULTS / "parse.json")]),
        "preview": (f"Counts per stage (campaigns calculate) at {args.profiles:,} profiles, 5 bookings each, "
                    "vs the full preview and a bare count",
                    ["bench_preview.py", "--profiles", str(args.profiles), "--bookings-per-profile", "5", *dsn,
                     "--json", str(RESULTS / "preview.json")]),
        "enrichment": ("Split by rules and entity enrichment vs bare baselines",
                       ["bench_enrichment.py", "--profiles", str(args.channel_profiles), *dsn,
                        "--json", str(RESULTS / "enrichment.json")]),
        "feedback": ("VERP return path per message vs the plain sender; webhook endpoint requests/s vs /healthz",
                     ["bench_feedback.py", *dsn, "--json", str(RESULTS / "feedback.json")]),
        "ingest": (f"Ingestion: a {args.ingest_rows:,}-record CSV upsert vs a bare COPY, load task peak RSS at "
                   f"{args.memory_profiles:,} and {args.ingest_rows:,} records, file landing to first message",
                   ["bench_ingest.py", "--rows", str(args.ingest_rows), "--memory-rows", str(args.memory_profiles),
                    *dsn, "--json", str(RESULTS / "ingest.json")]),
        "tracking": ("The tracking endpoint's requests per second (wrk) vs a bare route of the same server",
                     ["bench_tracking.py", *dsn, "--json", str(RESULTS / "tracking.json")]),
        "lift": (f"Holdout lift of a {args.profiles:,}-profile, 3-step run vs bare passes over its ledger",
                 ["bench_lift.py", "--profiles", str(args.profiles), *dsn, "--json", str(RESULTS / "lift.json")]),
    }
    failed = []
    loads = []
    for name in BENCHES:
        if name not in wanted:
            continue
        title, command = runs[name]
        if "--json" in command:  # no stale figures in the report if this one fails
            Path(command[command.index("--json") + 1]).unlink(missing_ok=True)
        print(f"\n### {title}\n", flush=True)
        result = subprocess.run([sys.executable, str(HERE / command[0]), *command[1:]])
        loads.append(f"{name} {os.getloadavg()[0]:.1f}")
        if result.returncode:
            failed.append(command[0])
    print("\n### Report\n", flush=True)
    subprocess.run([sys.executable, str(HERE / "report.py"), "--results", str(RESULTS), *dsn,
                    "--only", ",".join(sorted(wanted)), "--load", ", ".join(loads)], check=False)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
