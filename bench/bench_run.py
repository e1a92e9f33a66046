"""Per-stage timings of one campaign run at scale, with bare baselines from the same run.

    python bench/bench_run.py --profiles 100000

In a scratch database: demo data, then the winter_sale campaign's stages exactly as the DAG
runs them (register, evaluate, target, plan, send every batch through the ledger protocol
to a local SMTP server that discards, report). Baselines, measured right after on the same
data and server:

- evaluate: a bare ``INSERT … SELECT`` of the same rows into an index-free table;
- send: raw ``smtplib`` ``sendmail`` of the same number of pre-built messages over one
  connection, no rendering, no ledger.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import smtplib
import sys
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / ".airflow"))
os.environ["CAMPAIGNS_HOME"] = str(ROOT)
# Marketing email carries a signed unsubscribe link: a throwaway signing secret for the bench.
os.environ.setdefault(
    "AIRFLOW_CONN_CAMPAIGN_UNSUBSCRIBE",
    '{"conn_type": "generic", "host": "https://bench.example", "password": "bench-secret-0123456789abcdef"}',
)


class Discard:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd API
        self.count += 1
        return "250 OK"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from aiosmtpd.controller import Controller

    from campaign_orchestrator.config.loader import load_campaigns
    from campaign_orchestrator.paths import ProjectPaths
    from campaign_orchestrator.run.audience import evaluate_audience
    from campaign_orchestrator.run.report import compute_report, store_report
    from campaign_orchestrator.run.runs import register_run
    from campaign_orchestrator.run.send import Batch, BatchSender
    from campaign_orchestrator.run.targeting import plan_batches, target_step
    from campaign_orchestrator.channels.factory import build_channel
    from campaign_orchestrator.store.demo_data import generate_demo_data
    from campaign_orchestrator.store.migrations import migrate

    name = f"bench_run_{secrets.token_hex(3)}"
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    info = conninfo_to_dict(args.dsn)
    info["dbname"] = name
    dsn = make_conninfo(**info)
    os.environ["AIRFLOW_CONN_CAMPAIGN_STORE"] = json.dumps(
        {"conn_type": "postgres", "host": info.get("host"), "port": int(info.get("port") or 5432),
         "login": info.get("user"), "schema": name}
    )
    handler = Discard()
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port())
    controller.start()
    os.environ["AIRFLOW_CONN_SMTP_BENCH"] = json.dumps(
        {"conn_type": "smtp", "host": "127.0.0.1", "port": controller.port,
         "extra": {"disable_ssl": True, "disable_tls": True}}
    )
    figures: dict[str, float] = {}
    try:
        paths = ProjectPaths.discover()
        _, config = load_campaigns(paths.campaigns, paths).configs["winter_sale"]
        step = config.steps[0].model_copy(update={"connection_id": "smtp_bench"})
        config = config.model_copy(update={"steps": [step], "batch_size": 5000})
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn, paths.migrations)
            figures["demo_data_s"] = _timed(lambda: generate_demo_data(conn, profiles=args.profiles))
            run_key = register_run(conn, config.id, "bench", None, {})
            t = time.perf_counter()
            size = evaluate_audience(conn, run_key, paths.sql / config.audience.sql, dict(config.audience.params), None).size
            figures["evaluate_s"] = time.perf_counter() - t
            t = time.perf_counter()
            sendable = target_step(conn, run_key, config, step).sendable
            figures["target_s"] = time.perf_counter() - t
            t = time.perf_counter()
            batches = [Batch.from_xcom(b) for b in plan_batches(sendable, config.batch_size)]
            figures["plan_s"] = time.perf_counter() - t
            renderer, open_sender = build_channel(step, config, run_key, paths)
            sender = BatchSender(lambda: psycopg.connect(dsn, autocommit=True), run_key, step, renderer, open_sender)
            t = time.perf_counter()
            for batch in batches:
                sender.run(batch)
            figures["send_s"] = time.perf_counter() - t
            t = time.perf_counter()
            store_report(conn, run_key, compute_report(conn, run_key, [(step.id, step.channel)]))
            figures["report_s"] = time.perf_counter() - t
            figures["audience"] = size
            figures["sent"] = handler.count
            # baselines
            conn.execute("CREATE TABLE bench_baseline (profile_id bigint)")
            t = time.perf_counter()
            conn.execute(
                "INSERT INTO bench_baseline SELECT profile_id FROM campaign.audience_member WHERE run_key = %s",
                (run_key,),
            )
            figures["baseline_insert_select_s"] = time.perf_counter() - t
        payload = b"From: a@b.example\r\nTo: c@d.example\r\nSubject: x\r\n\r\n" + (b"x" * 75 + b"\r\n") * 40
        before = handler.count
        t = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", controller.port) as client:
            for i in range(figures["sent"] and int(figures["sent"])):
                client.sendmail("a@b.example", [f"user{i}@d.example"], payload)
        figures["baseline_raw_smtp_s"] = time.perf_counter() - t
        assert handler.count - before == int(figures["sent"])
    finally:
        controller.stop()
        with psycopg.connect(args.dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    sent = figures["sent"] or 1
    print(f"Campaign run at {args.profiles:,} profiles: audience {int(figures['audience']):,}, sent {int(sent):,}")
    for stage in ("demo_data", "evaluate", "target", "plan", "send", "report"):
        print(f"  {stage:<10} {figures[stage + '_s']:8.2f} s")
    print(f"  send rate  {sent / figures['send_s']:8.0f} msg/s (render + MIME + SMTP + ledger)")
    print(f"  baseline: bare INSERT…SELECT of the audience {figures['baseline_insert_select_s']:.2f} s "
          f"(evaluate is {figures['evaluate_s'] / figures['baseline_insert_select_s']:.1f}x)")
    print(f"  baseline: raw smtplib sendmail {sent / figures['baseline_raw_smtp_s']:.0f} msg/s "
          f"(our send path runs at {figures['baseline_raw_smtp_s'] / figures['send_s']:.2f}x of it)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
