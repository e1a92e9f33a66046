"""Benchmark ingestion: upsert throughput against a bare COPY, peak RSS of a load at two sizes,
and the latency from a file landing to the first message of the campaign it starts.

    python bench/bench_ingest.py [--rows 1000000] [--memory-rows 100000] [--skip-latency]
                                 [--dsn postgresql://postgres@127.0.0.1:5432/postgres] [--json out.json]

1. **Upsert.** A scratch database; a table the source declares (key, version, six columns),
   holding ``--rows`` rows; a CSV file of ``--rows`` records, half of them newer versions of
   existing keys, half new keys. Timed: the source's real load (``run_source``: stream the
   file into staging, one merge, commit), and in the same run the baseline, a bare
   ``COPY … FROM STDIN (FORMAT csv)`` of the same file, streamed the same way, into an empty
   unindexed table of the same columns. Goal: the load within 2x the bare COPY.
2. **Memory.** The same load in its own process (``bench/ingest_task.py``) at ``--memory-rows``
   and at ``--rows`` records; the peak RSS of each (``os.wait4``). Goal: flat (within 10%).
3. **Latency.** The real deployment of ``tests/integration/scaleout/stack.py`` (scheduler,
   dag-processor, api-server, two Celery workers) plus a triggerer: an ``on_file`` source
   (polling every 5 s) and an ``on_data`` campaign; a file lands (``file://``), and the time
   to the campaign's first message sent (to a local SMTP sink) is measured, with where it
   goes. Goal: under 2 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import datetime, timezone
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
from campaign_orchestrator.store.migrations import migrate  # noqa: E402

RATIO_TARGET = 2.0
RSS_FLAT_TARGET = 1.10
LATENCY_TARGET_S = 120.0
HEADER = "booking_id,profile_id,product_id,status,amount,starts_on,updated_at"
COLUMNS = ("booking_id bigint, profile_id bigint, product_id integer, status text, amount numeric(10,2), "
           "starts_on date, updated_at timestamptz")
SOURCE = """
    id: bench_bookings
    schedule: manual
    source: {{kind: csv, path: "{landing}/bookings_*.csv"}}
    target:
      table: bench.booking
      create: true
      key: booking_id
      version: updated_at
      columns: {{booking_id: bigint, profile_id: bigint, product_id: integer, status: text,
                amount: "numeric(10,2)", starts_on: date, updated_at: timestamptz}}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the table and records in the file")
    parser.add_argument("--memory-rows", type=int, default=100_000, help="the smaller load peak RSS is compared with")
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--skip-latency", action="store_true", help="skip the scheduler stack (it takes minutes)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)

    results: dict = {"rows": args.rows, "memory_rows": args.memory_rows, "targets": {
        "upsert_vs_copy": RATIO_TARGET, "rss_flat": RSS_FLAT_TARGET, "latency_s": LATENCY_TARGET_S}}
    with scratch_database(args.dsn) as dsn, tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        results["upsert"] = bench_upsert(dsn, work, args.rows)
        print_upsert(results["upsert"])
        results["memory"] = bench_memory(dsn, work, [args.memory_rows, args.rows])
        print_memory(results["memory"])
    if not args.skip_latency:
        results["latency"] = bench_latency(args.dsn)
        print_latency(results["latency"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    return 0


class scratch_database:
    """A database of its own on the server of ``dsn``, migrated; dropped on exit."""

    def __init__(self, dsn: str, prefix: str = "bench_ingest") -> None:
        self.admin_dsn = dsn
        self.name = f"{prefix}_{secrets.token_hex(4)}"

    def __enter__(self) -> str:
        with psycopg.connect(self.admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        dsn = make_conninfo(self.admin_dsn, dbname=self.name)
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn, ProjectPaths.discover().migrations)
        return dsn

    def __exit__(self, *exc: object) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))


def write_file(path: Path, first_key: int, count: int) -> None:
    """``count`` records from ``first_key``, version 2026-02-01 (newer than the table's)."""
    with open(path, "w", buffering=1 << 20) as f:
        f.write(HEADER + "\n")
        for start in range(first_key, first_key + count, 10_000):
            f.write("".join(
                f"{k},{k % 100_000 + 1},{k % 50 + 1},{'confirmed' if k % 7 else 'cancelled'},{k % 997}.50,"
                f"2027-{k % 12 + 1:02d}-{k % 28 + 1:02d},2026-02-01 00:00:00+00\n"
                for k in range(start, min(start + 10_000, first_key + count))))


def prepare(dsn: str, work: Path, name: str, rows: int) -> tuple[Path, Path]:
    """The source file and a data file of ``rows`` records over a table already holding ``rows``
    rows: keys rows/2+1 .. rows/2+rows, so half update and half insert."""
    from campaign_orchestrator.config.ingestion_loader import load_source
    from campaign_orchestrator.ingestion.schema import ensure_target

    folder, landing = work / name / "ingestion", work / name / "landing"
    folder.mkdir(parents=True)
    landing.mkdir()
    source = folder / "bench_bookings.yaml"
    source.write_text(textwrap.dedent(SOURCE.format(landing=landing)))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS bench CASCADE")
        conn.execute("TRUNCATE ingest.load CASCADE")
        conn.execute("TRUNCATE ingest.freshness, ingest.source_schema")
        ensure_target(conn, load_source(source))
        conn.execute(
            "INSERT INTO bench.booking SELECT k, k %% 100000 + 1, k %% 50 + 1, 'confirmed', 10, DATE '2027-01-01', "
            "TIMESTAMPTZ '2026-01-01 00:00+00' FROM generate_series(1, %s) k", (rows,))
        conn.execute("VACUUM ANALYZE bench.booking")
    data = landing / "bookings_1.csv"
    write_file(data, rows // 2 + 1, rows)
    return source, data


def bench_upsert(dsn: str, work: Path, rows: int) -> dict:
    import logging

    from campaign_orchestrator.config.ingestion_loader import load_source
    from campaign_orchestrator.ingestion.load import run_source

    logging.getLogger("campaign_orchestrator").setLevel(logging.WARNING)
    source, data = prepare(dsn, work, "upsert", rows)
    size_mb = data.stat().st_size / 1e6
    config = load_source(source)
    # A task process has Airflow imported before it loads anything: so does this one.
    from campaign_orchestrator.ingestion.files import list_files
    from campaign_orchestrator.ingestion.readers.csv_files import CsvReader  # noqa: F401

    with list_files(config.source, ProjectPaths.discover())[0].path().open("rb") as f:
        f.read(1)  # the first read through ObjectStoragePath loads Airflow's plugins (lineage), once
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
        conn.execute(f"CREATE TABLE bare ({COLUMNS})")
        started = time.perf_counter()
        with conn.cursor().copy("COPY bare FROM STDIN (FORMAT csv, HEADER true)") as copy, open(data, "rb") as f:
            while chunk := f.read(1 << 20):
                copy.write(chunk)
        bare = time.perf_counter() - started
        conn.execute("CHECKPOINT")
        started = time.perf_counter()
        (outcome,) = run_source(conn, config, ProjectPaths.discover())
        load = time.perf_counter() - started
        total = conn.execute("SELECT count(*), count(*) FILTER (WHERE updated_at = '2026-02-01 00:00+00') "
                             "FROM bench.booking").fetchone()
        bare_upsert = _bare_upsert(conn, data, rows)
    return {
        "bare_upsert_s": round(bare_upsert, 2), "ratio_to_bare_upsert": round(load / bare_upsert, 2),
        "file_mb": round(size_mb, 1), "bare_copy_s": round(bare, 2), "load_s": round(load, 2),
        "ratio": round(load / bare, 2), "rows_per_s": round(rows / load), "bare_rows_per_s": round(rows / bare),
        "inserted": outcome.inserted, "updated": outcome.updated, "path": outcome.path,
        "table_rows_after": total[0], "newer_rows_after": total[1],
    }


def _bare_upsert(conn: psycopg.Connection, data: Path, rows: int) -> float:
    """The least an upsert of the file can cost: COPY into a typed temporary table, then one
    INSERT … ON CONFLICT into a table like the load's (same rows, same key), no checks."""
    conn.execute(f"CREATE TABLE bare_target ({COLUMNS}, PRIMARY KEY (booking_id))")
    conn.execute("INSERT INTO bare_target SELECT k, k %% 100000 + 1, k %% 50 + 1, 'confirmed', 10, DATE '2027-01-01', "
                 "TIMESTAMPTZ '2026-01-01 00:00+00' FROM generate_series(1, %s) k", (rows,))
    conn.execute("VACUUM ANALYZE bare_target")
    conn.execute("CHECKPOINT")
    started = time.perf_counter()
    with conn.transaction():
        conn.execute(f"CREATE TEMP TABLE bare_stage ({COLUMNS}) ON COMMIT DROP")
        with conn.cursor().copy("COPY bare_stage FROM STDIN (FORMAT csv, HEADER true)") as copy, open(data, "rb") as f:
            while chunk := f.read(1 << 20):
                copy.write(chunk)
        conn.execute(
            "INSERT INTO bare_target AS t SELECT * FROM bare_stage ON CONFLICT (booking_id) DO UPDATE SET "
            "profile_id = EXCLUDED.profile_id, product_id = EXCLUDED.product_id, status = EXCLUDED.status, "
            "amount = EXCLUDED.amount, starts_on = EXCLUDED.starts_on, updated_at = EXCLUDED.updated_at "
            "WHERE EXCLUDED.updated_at > t.updated_at")
    return time.perf_counter() - started


def bench_memory(dsn: str, work: Path, sizes: list[int]) -> dict:
    runs = {}
    for rows in sizes:
        source, data = prepare(dsn, work, f"memory_{rows}", rows)
        env = {**os.environ, "AIRFLOW_CONN_CAMPAIGN_STORE": dsn_as_uri(dsn)}
        process = subprocess.Popen([sys.executable, str(ROOT / "bench" / "ingest_task.py"), str(source), str(data)],
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        out = process.stdout.read()  # type: ignore[union-attr]
        _, status, usage = os.wait4(process.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, out
        result = json.loads(out.strip().splitlines()[-1])
        runs[str(rows)] = {"peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "load_s": round(result["seconds"], 2),
                           "rows_read": result["rows_read"], "file_mb": round(data.stat().st_size / 1e6, 1)}
    small, large = (runs[str(n)]["peak_rss_mb"] for n in sizes)
    return {"runs": runs, "ratio": round(large / small, 3)}


def dsn_as_uri(dsn: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(dsn)
    return (f"postgresql://{info.get('user') or 'postgres'}@{info.get('host') or '127.0.0.1'}:"
            f"{info.get('port') or 5432}/{info['dbname']}")


# -- latency through a real scheduler ---------------------------------------------------------

ON_FILE = """
    id: landing_bookings
    schedule: {{on_file: {{poll: 5s}}}}
    source: {{kind: csv, path: "{landing}/bookings_*.csv"}}
    target: {{table: crm.booking, key: booking_id, version: updated_at}}
"""
ON_DATA = """
    id: new_booking_thanks
    schedule: {on_data: [crm.booking]}
    requires_fresh: {crm.booking: 1h}
    valid: {start: 2026-01-01}
    batch_size: 100
    audience:
      blocks:
        new: {from: booking, where: {booking_id: {gte: 9000000}}}
    steps:
      - {id: thanks, channel: email, purpose: transactional, template: winter_sale,
         sender: "Wanderly <offers@wanderly.example>"}
"""


def bench_latency(admin_dsn: str) -> dict:
    import shutil

    sys.path.insert(0, str(ROOT))
    from campaign_orchestrator.devtools.mail_sink import start_mail_sink
    from campaign_orchestrator.store.demo_data import generate_demo_data
    from tests.integration.scaleout.stack import celery_stack, services_available

    problem = services_available()
    if problem:
        raise SystemExit(f"the latency benchmark needs the scheduler stack's services: {problem}")
    with scratch_database(admin_dsn, "bench_latency") as dsn, tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        work = Path(tmp)
        campaigns, sources, landing, mailbox = (work / n for n in ("campaigns", "ingestion", "landing", "mailbox"))
        for folder in (campaigns, sources, landing, mailbox):
            folder.mkdir()
        for shared in ("_defaults.yaml", "_policies.yaml"):
            shutil.copy(ROOT / "dags" / "campaigns" / shared, campaigns)
        (campaigns / "new_booking_thanks.yaml").write_text(textwrap.dedent(ON_DATA))
        (sources / "landing_bookings.yaml").write_text(textwrap.dedent(ON_FILE.format(landing=landing)))
        with psycopg.connect(dsn, autocommit=True) as conn:
            generate_demo_data(conn, profiles=2000)
        controller, port = start_mail_sink(mailbox)
        env = {
            "AIRFLOW_CONN_CAMPAIGN_STORE": dsn_as_uri(dsn),
            "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": port,
                                                     "extra": {"disable_ssl": True, "disable_tls": True}}),
            "CAMPAIGNS_CONFIG_DIR": str(campaigns), "CAMPAIGNS_INGESTION_DIR": str(sources),
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
        }
        try:
            with celery_stack(work / "airflow-home", env, budget=900) as stack:
                stack.start("triggerer", "triggerer")
                for dag_id in ("ingest_landing_bookings", "new_booking_thanks"):
                    stack.wait_for(f"DAG {dag_id} parsed", lambda d=dag_id: stack.dag_parsed(d), 180)
                stack.request("PATCH", "/api/v2/dags/new_booking_thanks", {"is_paused": False})
                stack.request("PATCH", "/api/v2/dags/ingest_landing_bookings", {"is_paused": False})
                stack.wait_for("the sensor to be deferred", lambda: _sensor_deferred(stack), 180)
                time.sleep(3)  # the trigger is running in the triggerer
                path = landing / "bookings_1.csv"
                staged = work / "bookings_1.csv.part"
                staged.write_text("\n".join([
                    "booking_id,profile_id,product_id,status,booked_at,starts_on,amount,updated_at",
                    *(f"{9_000_000 + i},{i},1,confirmed,2026-11-20 10:00:00+00,2027-01-15,100.00,"
                      f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S}+00" for i in range(1, 201))]) + "\n")
                landed = datetime.now(timezone.utc)
                staged.rename(path)  # lands whole, as an upload completes
                first = stack.wait_for("the campaign's first message", lambda: _first_sent(dsn), 600, interval=0.2)
                breakdown = _breakdown(dsn)
        finally:
            controller.stop()
        messages = len(list(mailbox.glob("*.eml")))
    total = (first - landed).total_seconds()
    return {"seconds": round(total, 1), "landed_at": landed.isoformat(), "first_sent_at": first.isoformat(),
            "messages_in_sink": messages, **{k: round((v - landed).total_seconds(), 1) if v else None
                                             for k, v in breakdown.items()}}


def _sensor_deferred(stack) -> bool:
    runs = stack.request("GET", "/api/v2/dags/ingest_landing_bookings/dagRuns?limit=5")["dag_runs"]
    for run in runs:
        for ti in stack.task_instances("ingest_landing_bookings", run["dag_run_id"]):
            if ti["task_id"] == "wait_for_file" and ti["state"] == "deferred":
                return True
    return False


def _first_sent(dsn: str):
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT min(sent_at) FROM campaign.message WHERE campaign_id = 'new_booking_thanks' "
                            "AND status = 'sent'").fetchone()[0]


def _breakdown(dsn: str) -> dict:
    with psycopg.connect(dsn, autocommit=True) as conn:
        load = conn.execute("SELECT started_at, finished_at FROM ingest.load WHERE status = 'succeeded' "
                            "ORDER BY load_id LIMIT 1").fetchone()
        run = conn.execute("SELECT started_at, evaluated_at FROM campaign.run WHERE campaign_id = "
                           "'new_booking_thanks' ORDER BY run_key LIMIT 1").fetchone()
    return {"load_started_s": load[0], "load_committed_s": load[1], "campaign_started_s": run[0],
            "audience_evaluated_s": run[1]}


# -- output -------------------------------------------------------------------------------------


def print_upsert(r: dict) -> None:
    met = "met" if r["ratio"] <= RATIO_TARGET else "MISSED"
    print(f"upsert {r['inserted'] + r['updated']:,} records ({r['file_mb']} MB CSV) into a table of the same size: "
          f"inserted {r['inserted']:,}, updated {r['updated']:,} ({r['path']} path)")
    print(f"  load (stream + staging + merge + commit) {r['load_s']:>7.2f} s  {r['rows_per_s']:>10,} rows/s")
    print(f"  bare COPY into an empty unindexed table  {r['bare_copy_s']:>7.2f} s  {r['bare_rows_per_s']:>10,} rows/s")
    print(f"  bare upsert (COPY to a typed temp table, one ON CONFLICT, no checks) {r['bare_upsert_s']:.2f} s")
    print(f"  ratio {r['ratio']:.2f}x the bare COPY (goal <= {RATIO_TARGET:.0f}x: {met}); "
          f"{r['ratio_to_bare_upsert']:.2f}x the bare upsert")


def print_memory(m: dict) -> None:
    for rows, run in m["runs"].items():
        print(f"load task of {int(rows):>9,} records ({run['file_mb']} MB): peak RSS {run['peak_rss_mb']:>6.1f} MB, "
              f"{run['load_s']:.2f} s")
    met = "met" if m["ratio"] <= RSS_FLAT_TARGET else "MISSED"
    print(f"  peak RSS ratio {m['ratio']:.3f} (goal <= {RSS_FLAT_TARGET}: flat; {met})")


def print_latency(r: dict) -> None:
    met = "met" if r["seconds"] < LATENCY_TARGET_S else "MISSED"
    print(f"file landing -> first message of the on_data campaign: {r['seconds']:.1f} s (goal < "
          f"{LATENCY_TARGET_S:.0f} s: {met})")
    print(f"  after landing: load started {r['load_started_s']} s, committed {r['load_committed_s']} s, campaign run "
          f"started {r['campaign_started_s']} s, audience evaluated {r['audience_evaluated_s']} s, first sent "
          f"{r['seconds']} s; {r['messages_in_sink']} messages in the sink")


if __name__ == "__main__":
    sys.exit(main())
