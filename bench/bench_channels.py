"""Messages per second per channel through local stand-ins of the providers, and the observed
rate when a limit is configured.

    python bench/bench_channels.py --profiles 100000 [--channels smtp,ses,sms,push,webhook,direct_mail]

For each channel: a one-step campaign over the demo data's whole profile table (the audience
is every profile; consent and address rules then decide who is sendable), evaluated,
targeted and sent batch after batch through the real ledger protocol, in one process:
SMTP to aiosmtpd (discarding), SES / SNS SMS / SNS push to moto's server over HTTP, the
webhook to a local HTTP server, direct mail to a file:// extract. Then the same channel
again with a shared limit of ``--limit`` messages/s on a slice of ``--limited`` messages,
to show the limiter holds. moto is far slower than the real services (one TCP connection
per request), so its figures are a floor of our send path, not of the provider's.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
SECRET = "bench-secret"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--channels", default="smtp,ses,sms,push,webhook,direct_mail")
    parser.add_argument("--limit", type=float, default=200.0, help="messages/s for the limited pass")
    parser.add_argument("--limited", type=int, default=2000, help="messages in the limited pass")
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    channels = [c.strip() for c in args.channels.split(",") if c.strip()]

    from aiosmtpd.controller import Controller
    from moto.server import ThreadedMotoServer

    from campaign_orchestrator.store.demo_data import generate_demo_data
    from campaign_orchestrator.store.migrations import migrate
    from campaign_orchestrator.paths import ProjectPaths

    import logging

    # aiosmtpd logs every SMTP command and moto's server every request at INFO, which the
    # logging Airflow configures prints: at 100,000 messages the bench would time the logs.
    for noisy in ("mail.log", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    name = f"bench_channels_{secrets.token_hex(3)}"
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    info = conninfo_to_dict(args.dsn)
    info["dbname"] = name
    dsn = make_conninfo(**info)
    os.environ["AIRFLOW_CONN_CAMPAIGN_STORE"] = json.dumps(
        {"conn_type": "postgres", "host": info.get("host"), "port": int(info.get("port") or 5432),
         "login": info.get("user"), "schema": name}
    )
    smtp = Controller(_Discard(), hostname="127.0.0.1", port=_free_port())
    smtp.start()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    moto_url = "http://{}:{}".format(*moto.get_host_and_port())
    hook_server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    hook_server.daemon_threads = True
    threading.Thread(target=hook_server.serve_forever, daemon=True).start()
    os.environ.update(
        AIRFLOW_CONN_SMTP_BENCH=json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": smtp.port,
                                            "extra": {"disable_ssl": True, "disable_tls": True}}),
        AIRFLOW_CONN_AWS_BENCH=json.dumps({"conn_type": "aws", "login": "testing", "password": "testing",
                                           "extra": {"region_name": "us-east-1", "endpoint_url": moto_url}}),
        AIRFLOW_CONN_WEBHOOK_BENCH=json.dumps({"conn_type": "http", "host": "127.0.0.1",
                                               "port": hook_server.server_address[1], "schema": "http",
                                               "password": SECRET}),
    )
    results: dict[str, dict[str, float]] = {}
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn, ProjectPaths.discover().migrations)
            generate_demo_data(conn, profiles=args.profiles)
            _prepare_aws(conn, moto_url, channels)
            for channel in channels:
                results[channel] = {"limit": args.limit, **_measure(conn, dsn, channel, args)}
                print(_line(channel, results[channel]), flush=True)
    finally:
        smtp.stop()
        moto.stop()
        hook_server.shutdown()
        with psycopg.connect(args.dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def _steps(extract_dir: Path) -> dict[str, dict]:
    return {
        "smtp": {"channel": "email", "template": "winter_sale", "sender": "W <offers@wanderly.example>",
                 "connection_id": "smtp_bench"},
        "ses": {"channel": "email", "provider": "ses", "template": "winter_sale",
                "sender": "W <offers@wanderly.example>", "connection_id": "aws_bench"},
        "sms": {"channel": "sms", "template": "winter_sale_sms", "connection_id": "aws_bench", "max_segments": 3},
        "push": {"channel": "push", "template": "winter_sale_push", "connection_id": "aws_bench"},
        "webhook": {"channel": "webhook", "template": "winter_sale_webhook", "connection_id": "webhook_bench",
                    "consent_channel": "email"},
        "direct_mail": {"channel": "direct_mail", "destination": f"file://{extract_dir}", "formats": ["csv", "parquet"],
                        "connection_id": "aws_bench"},
    }


def _measure(conn: psycopg.Connection, dsn: str, channel: str, args: argparse.Namespace) -> dict[str, float]:
    import tempfile

    from campaign_orchestrator.channels.factory import build_channel
    from campaign_orchestrator.channels.registry import effective_connection_id
    from campaign_orchestrator.config.campaign import CampaignConfig
    from campaign_orchestrator.paths import ProjectPaths
    from campaign_orchestrator.run.audience import evaluate_audience
    from campaign_orchestrator.run.runs import register_run
    from campaign_orchestrator.run.send import Batch, BatchSender
    from campaign_orchestrator.run.targeting import plan_batches, target_step
    from campaign_orchestrator.run.throttle import build_limiter

    paths = ProjectPaths.discover()
    extract_dir = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    figures: dict[str, float] = {}
    for limited in (False, True):
        config = CampaignConfig.model_validate({
            "id": f"bench_{channel}", "schedule": "manual", "valid": {"start": "2026-01-01"},
            "audience": {"sql": "audiences/by_ids.sql", "params": {"profile_ids": []}},
            "batch_size": 5000,
            "steps": [{"id": channel, **_steps(extract_dir)[channel]}],
        })
        step = config.steps[0]
        connect = lambda: psycopg.connect(dsn, autocommit=True)  # noqa: E731
        run_key = register_run(conn, config.id, f"{'limited' if limited else 'full'}_{secrets.token_hex(3)}", None, {})
        ids = [r[0] for r in conn.execute(
            "SELECT profile_id FROM crm.profile ORDER BY profile_id LIMIT %s",
            (args.limited * 3 if limited else args.profiles,),
        )]
        audience = evaluate_audience(conn, run_key, paths.sql / config.audience.sql, {"profile_ids": ids}, None).size
        sendable = target_step(conn, run_key, config, step).sendable
        if limited:
            conn.execute(
                "UPDATE campaign.message SET status = 'excluded', reason = 'bench_slice' "
                "WHERE run_key = %s AND seq > %s", (run_key, args.limited))
            sendable = min(sendable, args.limited)
        os.environ[_rate_env(step)] = str(args.limit) if limited else "unlimited"
        started = time.perf_counter()
        if channel == "direct_mail":
            from campaign_orchestrator.channels.direct_mail.export import export_direct_mail

            export_direct_mail(conn, run_key, config.id, f"bench_{limited}", step, connect)
        else:
            renderer, open_sender = build_channel(step, config, run_key, paths)
            limiter = build_limiter(connect, channel=step.channel, conn_id=effective_connection_id(step),
                                    provider=getattr(step, "provider", None), paths=paths)
            try:
                sender = BatchSender(connect, run_key, step, renderer, open_sender, limiter=limiter)
                for batch in plan_batches(sendable, config.batch_size):
                    sender.run(Batch.from_xcom(batch))
            finally:
                limiter.close()
        elapsed = time.perf_counter() - started
        sent = conn.execute(
            "SELECT count(*) FROM campaign.message WHERE run_key = %s AND status = 'sent'", (run_key,)
        ).fetchone()[0]
        prefix = "limited_" if limited else ""
        figures |= {f"{prefix}audience": audience, f"{prefix}sent": sent, f"{prefix}seconds": elapsed,
                    f"{prefix}rate": sent / elapsed if elapsed else 0.0}
        if limited:
            # The bucket starts full (one second's worth): past that burst the rate is the limit's.
            figures["limited_steady_rate"] = max(sent - args.limit, 0) / elapsed if elapsed else 0.0
        if channel == "direct_mail":
            break  # one file per run: a rate limit does not apply
    return figures


def _rate_env(step) -> str:
    import re

    from campaign_orchestrator.channels.registry import effective_connection_id

    return "CAMPAIGNS_RATE_" + re.sub(r"[^A-Z0-9]", "_", f"{step.channel}_{effective_connection_id(step)}".upper())


def _line(channel: str, f: dict[str, float]) -> str:
    text = (f"{channel:<12} audience {int(f['audience']):>7,}  sent {int(f['sent']):>7,} in {f['seconds']:7.1f}s "
            f"= {f['rate']:7.0f} msg/s")
    if "limited_rate" in f:
        text += (f"   | limit {f.get('limit', 0):g}/s: {int(f['limited_sent']):,} sent at {f['limited_rate']:.1f} msg/s, "
                 f"{f['limited_steady_rate']:.1f} msg/s after the initial burst")
    return text


def _prepare_aws(conn: psycopg.Connection, moto_url: str, channels: list[str]) -> None:
    import boto3

    kwargs = {"region_name": "us-east-1", "endpoint_url": moto_url,
              "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    if "ses" in channels:
        boto3.client("ses", **kwargs).verify_email_identity(EmailAddress="offers@wanderly.example")
    if "push" in channels:
        sns = boto3.client("sns", **kwargs)
        apps = {p: sns.create_platform_application(Name=f"bench-{p}", Platform=plat, Attributes={})[
            "PlatformApplicationArn"] for p, plat in (("apns", "APNS"), ("fcm", "GCM"))}
        rows = conn.execute("SELECT profile_id, push_token, push_platform FROM crm.profile "
                            "WHERE push_token IS NOT NULL AND push_platform IS NOT NULL").fetchall()
        arns = [(sns.create_platform_endpoint(PlatformApplicationArn=apps[pl], Token=tok)["EndpointArn"], pid)
                for pid, tok, pl in rows]
        with conn.cursor() as cur:
            cur.executemany("UPDATE crm.profile SET push_token = %s WHERE profile_id = %s", arns)


class _Discard:
    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd API
        return "250 OK"


class _Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes; with Nagle on, the body waits for the client's
    # delayed ACK (40 ms a request) and the bench would measure that instead of the sender.
    disable_nagle_algorithm = True

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args) -> None:
        pass


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
