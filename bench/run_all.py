"""`make bench`: every benchmark, each printing its figures beside a bare baseline measured
in the same run. Results are also written as JSON under bench-results/.

    python bench/run_all.py [--profiles 100000] [--dsn postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "bench-results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    runs = [
        ("MIME building vs the standard library", ["bench_mime.py"]),
        ("Demo data generator vs plain INSERT … SELECT",
         ["bench_store.py", "--profiles", str(args.profiles), "--dsn", args.dsn, "--json", str(RESULTS / "store.json")]),
        ("Shared rate limiter vs no limiter", ["bench_throttle.py", "--dsn", args.dsn]),
        ("Each channel's send rate through local provider stand-ins, and with a limit set",
         ["bench_channels.py", "--profiles", str(args.profiles), "--dsn", args.dsn,
          "--json", str(RESULTS / "channels.json")]),
        ("A campaign run, per stage, vs raw SQL and raw SMTP",
         ["bench_run.py", "--profiles", str(args.profiles), "--dsn", args.dsn, "--json", str(RESULTS / "run.json")]),
    ]
    failed = []
    for title, command in runs:
        print(f"\n### {title}\n", flush=True)
        result = subprocess.run([sys.executable, str(HERE / command[0]), *command[1:]])
        if result.returncode:
            failed.append(command[0])
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
