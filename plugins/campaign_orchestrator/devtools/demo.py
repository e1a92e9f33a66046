"""`make demo`: a fresh clone to delivered emails with nothing installed but Python.

1. the campaign store: the `campaign_store` connection if configured, else the embedded
   PostgreSQL in .campaign-store/ (started from the pip package);
2. schema migrations and deterministic demo data (10,000 profiles by default);
3. a local SMTP sink that keeps every message as an .eml file in .mailbox/;
4. Airflow's metadata DB (SQLite in .airflow/), then each demo campaign run end-to-end with
   `airflow dags test`;
5. the shipped ingestion sources (dags/ingestion/) load their files from include/data/ (after
   the campaigns, so that the campaigns' counts are those of the generated data);
6. a summary per campaign from the store, and where the mailbox is.

Running it again regenerates the data and sends a new run of each campaign.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from campaign_orchestrator.paths import ProjectPaths

DEMO_CAMPAIGNS = ("winter_sale", "upcoming_trip_reminder", "low_stock_alert")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=10_000)
    parser.add_argument("--mailbox", type=Path, default=None, help="default: .mailbox/ in the project")
    parser.add_argument("--campaign", action="append", help="run only these campaigns (repeatable)")
    args = parser.parse_args(argv)

    paths = ProjectPaths.discover()
    mailbox = (args.mailbox or paths.root / ".mailbox").resolve()
    campaigns = tuple(args.campaign or DEMO_CAMPAIGNS)
    env = dict(os.environ)
    env.setdefault("AIRFLOW_HOME", str(paths.root / ".airflow"))
    env.setdefault("CAMPAIGNS_EMBEDDED_STORE", str(paths.root / ".campaign-store"))
    if "AIRFLOW_CONN_CAMPAIGN_UNSUBSCRIBE" not in env:
        from campaign_orchestrator.devtools.local_connections import unsubscribe_connection

        env["AIRFLOW_CONN_CAMPAIGN_UNSUBSCRIBE"] = unsubscribe_connection(Path(env["AIRFLOW_HOME"]))
    os.environ.update(env)

    from campaign_orchestrator.devtools.mail_sink import start_mail_sink

    # aiosmtpd logs every SMTP command at INFO: thousands of lines per campaign.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    from campaign_orchestrator.run.report import compute_report, format_report
    from campaign_orchestrator.store.connect import store_connection
    from campaign_orchestrator.store.demo_data import generate_demo_data
    from campaign_orchestrator.store.migrations import migrate

    _step("Campaign store")
    started = time.perf_counter()
    with store_connection() as conn:
        migrate(conn, paths.migrations)
        counts = generate_demo_data(conn, profiles=args.profiles)
    print("  demo data: " + ", ".join(f"{t} {n:,}" for t, n in counts.items()) + f" ({time.perf_counter() - started:.1f}s)")

    _step("Mail sink")
    if mailbox.exists():
        shutil.rmtree(mailbox)
    mailbox.mkdir(parents=True)
    controller, port = start_mail_sink(mailbox)
    print(f"  SMTP on 127.0.0.1:{port}, messages kept as .eml files in {mailbox}")
    env["AIRFLOW_CONN_SMTP_DEFAULT"] = json.dumps(
        {"conn_type": "smtp", "host": "127.0.0.1", "port": port, "extra": {"disable_ssl": True, "disable_tls": True}}
    )

    airflow = str(Path(sys.executable).with_name("airflow"))
    try:
        _step("Airflow metadata DB")
        _run([airflow, "db", "migrate"], env, quiet=True)
        results = {}
        for campaign_id in campaigns:
            _step(f"airflow dags test {campaign_id}")
            started = time.perf_counter()
            ok = _run([airflow, "dags", "test", campaign_id], env, quiet=True, check=False)
            results[campaign_id] = (ok, time.perf_counter() - started)
            print(f"  {'succeeded' if ok else 'FAILED'} in {results[campaign_id][1]:.1f}s")
    finally:
        controller.stop()

    _step("Ingestion: the shipped sources (dags/ingestion/) load include/data/")
    from campaign_orchestrator.ingestion.demo import load_shipped_sources

    with store_connection() as conn:
        for line in load_shipped_sources(conn, paths):
            print(f"  {line}")

    _step("Summary")
    with store_connection() as conn:
        for campaign_id in campaigns:
            row = conn.execute(
                """
                SELECT run_key, dag_run_id, coalesce(audience_size, 0) FROM campaign.run
                WHERE campaign_id = %s ORDER BY started_at DESC LIMIT 1
                """,
                (campaign_id,),
            ).fetchone()
            if row is None:
                print(f"{campaign_id}: no run recorded")
                continue
            steps = conn.execute(
                "SELECT step_id, channel FROM campaign.run_step WHERE run_key = %s ORDER BY step_id", (row[0],)
            ).fetchall()
            print(format_report(campaign_id, row[2], compute_report(conn, row[0], [tuple(s) for s in steps])))
            print()
    emails = sorted(mailbox.glob("*.eml"))
    print(f"{len(emails):,} messages in the mailbox: {mailbox}")
    if emails:
        print(f"  e.g. {emails[0]}")
    print("Next: `make shell` (or `source .venv/bin/activate && eval \"$(campaigns env)\"`), then")
    print("  campaigns preview winter_sale · campaigns render winter_sale --profile 1 · campaigns runs list")
    print("  campaigns ingest preview crm_bookings · the Airflow UI: make up")
    print("  your own campaign: README, \"Your own campaign, step by step\"")
    return 0 if all(ok for ok, _ in results.values()) else 1


def _step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def _run(command: list[str], env: dict[str, str], quiet: bool = False, check: bool = True) -> bool:
    result = subprocess.run(command, env=env, capture_output=quiet, text=True)
    if result.returncode != 0:
        if quiet:
            sys.stderr.write(result.stdout[-8000:] + result.stderr[-8000:])
        if check:
            raise SystemExit(f"{' '.join(command[:3])} failed with exit code {result.returncode}")
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
