"""Benchmark the shared send rate: observed messages per second through one bucket.

    python bench/bench_throttle.py
    python bench/bench_throttle.py --rate 200 --messages 1000 --chunk 10 --redis redis://127.0.0.1:6379/0
    python bench/bench_throttle.py --json bench-results/throttle.json

Creates a scratch database on the server of ``--dsn`` and applies the migrations. Then, for
the store bucket (and the Redis one with ``--redis``), a sender loop takes tokens for
``--messages`` messages, ``--chunk`` at a time, against a ``--rate`` bucket (burst: one
second's worth):

* one process;
* two processes at once, each sending ``--messages``: together they must not exceed the rate;
* the ceiling: one process, one message per take, against a bucket too fast to ever wait,
  i.e. how many takes per second the backend sustains (its round trip).

Each line gives messages, seconds and observed messages/s, and the same without the burst
(messages − burst, over seconds): the bucket allows at most its rate there. The baseline is the same loop with
:class:`NoLimit`. Processes start together behind a barrier; start-up is not timed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import secrets
import sys
import time
from functools import partial
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parents[1]
try:
    import campaign_orchestrator  # noqa: F401
except ImportError:  # not installed: use the checkout
    sys.path.insert(0, str(ROOT / "plugins"))

from campaign_orchestrator.paths import ProjectPaths  # noqa: E402
from campaign_orchestrator.run.throttle import NoLimit, RedisRateLimiter, StoreRateLimiter  # noqa: E402
from campaign_orchestrator.store.migrations import migrate  # noqa: E402


def limiter(backend: str, target: str, name: str, rate: float):
    if backend == "none":
        return NoLimit()
    if backend == "store":
        return StoreRateLimiter(partial(psycopg.connect, target, autocommit=True), name, rate)
    return RedisRateLimiter(target, name, rate)


def sender(backend: str, target: str, name: str, rate: float, messages: int, chunk: int, barrier, results) -> None:
    """The loop a batch runs, minus the sending: take tokens for a chunk, count it, repeat."""
    lim = limiter(backend, target, name, rate)
    if hasattr(lim, "configure"):
        lim.configure()
    barrier.wait()
    started = time.perf_counter()
    sent = 0
    while sent < messages:
        n = min(chunk, messages - sent)
        lim.acquire(n)
        sent += n
    elapsed = time.perf_counter() - started
    lim.close()
    results.put((sent, started, started + elapsed))


def run_processes(backend: str, target: str, rate: float, messages: int, chunk: int, processes: int) -> dict:
    name = f"bench:{secrets.token_hex(4)}"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results = context.Queue()
    procs = [
        context.Process(target=sender, args=(backend, target, name, rate, messages, chunk, barrier, results))
        for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
    if backend == "redis":
        import redis

        with redis.Redis.from_url(target) as client:
            client.delete(f"campaigns:rate:{name}")
    sent = sum(o[0] for o in outcomes)
    seconds = max(o[2] for o in outcomes) - min(o[1] for o in outcomes)
    return {
        "backend": backend,
        "processes": processes,
        "rate": rate,
        "chunk": chunk,
        "messages": sent,
        "seconds": round(seconds, 4),
        "per_second": round(sent / seconds, 1),
        "per_process_per_second": [round(o[0] / (o[2] - o[1]), 1) for o in outcomes],
        # What the bucket allows: its burst at once, then the rate; so this is at most the rate.
        "after_burst_per_second": round((sent - max(1.0, rate)) / seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", help="also measure the Redis bucket on this server, e.g. redis://127.0.0.1:6379/0")
    parser.add_argument("--rate", type=float, default=200.0, help="the bucket's messages per second")
    parser.add_argument("--messages", type=int, default=1000, help="messages per process")
    parser.add_argument("--chunk", type=int, default=10, help="messages per acquire")
    parser.add_argument("--ceiling-takes", type=int, default=2000, help="takes of one message for the ceiling")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)

    scratch = f"bench_throttle_{secrets.token_hex(4)}"
    scratch_dsn = make_conninfo(args.dsn, dbname=scratch)
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
        server = admin.execute("SHOW server_version").fetchone()[0]
    rows: list[dict] = []
    try:
        with psycopg.connect(scratch_dsn, autocommit=True) as conn:
            migrate(conn, ProjectPaths.discover().migrations)
        backends = [("store", scratch_dsn)] + ([("redis", args.redis)] if args.redis else [])
        rows.append(run_processes("none", "", args.rate, args.messages, args.chunk, 1))
        for backend, target in backends:
            rows.append(run_processes(backend, target, args.rate, args.messages, args.chunk, 1))
            rows.append(run_processes(backend, target, args.rate, args.messages, args.chunk, 2))
            ceiling = run_processes(backend, target, 1e9, args.ceiling_takes, 1, 1)
            ceiling["scenario"] = "ceiling"
            rows.append(ceiling)
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))

    print(
        f"Shared send rate: bucket of {args.rate:g} msg/s (burst {max(1.0, args.rate):g}), "
        f"{args.messages:,} messages per process in chunks of {args.chunk}; PostgreSQL {server}\n"
    )
    print(f"{'scenario':<34}{'messages':>9}{'seconds':>10}{'msg/s':>14}{'after burst':>13}  per process")
    for row in rows:
        after = ""
        if row["backend"] == "none":
            label = "baseline: same loop, NoLimit"
        elif row.get("scenario") == "ceiling":
            label = f"{row['backend']}: ceiling, 1 msg per take"
        else:
            label = f"{row['backend']}: {row['processes']} process{'es' if row['processes'] > 1 else ''}"
            after = f"{row['after_burst_per_second']:,.1f}"
        per = ", ".join(f"{p:,.1f}" for p in row["per_process_per_second"]) if row["processes"] > 1 else ""
        print(f"{label:<34}{row['messages']:>9,}{row['seconds']:>10.4f}{row['per_second']:>14,.1f}{after:>13}  {per}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"server": server, "results": rows}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
