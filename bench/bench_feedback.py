"""Delivery feedback for every sender: what VERP adds per message, and the webhook endpoint's rate.

Run: ``.venv/bin/python bench/bench_feedback.py [--messages 20000] [--requests 2000] [--dsn …] [--json out.json]``

- **VERP**: the per-message return path (``VerpSettings.return_path``: one HMAC-SHA256 and
  a base32 encoding) against the plain sender the SMTP sender uses without VERP, and against
  what a message costs anyway to render (``EmailRenderer.render``: templates, Message-ID,
  MIME) — the share VERP adds to the per-message work before the SMTP transaction.
- **Webhooks**: the standalone app (``python -m campaign_orchestrator.feedback.webhooks.app``,
  one uvicorn worker) on loopback, fed distinct Postmark delivery records (HTTP Basic, one
  store transaction each) by 1 and by 4 keep-alive clients, against ``GET /healthz`` on the
  same server (the HTTP stack alone). A fresh database on the machine's PostgreSQL.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from campaign_orchestrator.channels.base import Recipient  # noqa: E402
from campaign_orchestrator.channels.messages import email_message_id as message_id
from campaign_orchestrator.channels.email.render import EmailRenderer  # noqa: E402
from campaign_orchestrator.config.channels import EmailStep  # noqa: E402
from campaign_orchestrator.feedback.verp import VerpSettings  # noqa: E402
from campaign_orchestrator.paths import ProjectPaths  # noqa: E402

USER, PASSWORD = "postmark", "bench-postmark-password-0123"


def best_of(repeat: int, work) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def bench_verp(n: int, repeat: int) -> dict:
    verp = VerpSettings(secrets=("bench-verp-secret-0123456789",), domain="bounces.wanderly.example")
    ids = [(message_id(1, "offer_email", p, "", "wanderly.example"), p) for p in range(n)]
    plain = "offers@wanderly.example"
    verp_s = best_of(repeat, lambda: [verp.return_path(mid, p) or plain for mid, p in ids])
    plain_s = best_of(repeat, lambda: [plain for _mid, _p in ids])
    step = EmailStep(id="offer_email", channel="email", template="winter_sale", sender="Wanderly <offers@wanderly.example>",
                     purpose="transactional")
    renderer = EmailRenderer(step, SimpleNamespace(id="winter_sale", description="Winter sale"), 1, ProjectPaths.discover())
    fields = {f: "Ana" for f in renderer.profile_fields}
    recipients = [Recipient(p, "", f"guest{p}@example.com", dict(fields, profile_id=p)) for p in range(min(n, 5000))]
    render_s = best_of(repeat, lambda: [renderer.render(r) for r in recipients]) * n / len(recipients)
    per = lambda seconds: seconds / n * 1e6  # noqa: E731
    result = {"messages": n, "verp_us": per(verp_s), "plain_us": per(plain_s), "render_us": per(render_s)}
    result["added_us"] = result["verp_us"] - result["plain_us"]
    result["share_of_render"] = result["added_us"] / result["render_us"]
    print(f"VERP return path: {result['verp_us']:.2f} µs/message (plain sender {result['plain_us']:.3f} µs): "
          f"+{result['added_us']:.2f} µs, {result['share_of_render']:.1%} of the {result['render_us']:.0f} µs a "
          f"message takes to render ({n:,} messages, best of {repeat})")
    return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _drive(port: int, requests: list[tuple[str, str, bytes | None]], clients: int) -> float:
    """Seconds for ``clients`` keep-alive connections to send ``requests`` (split between them)."""
    auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    errors: list[str] = []

    def worker(part: list[tuple[str, str, bytes | None]]) -> None:
        try:
            send(part)
        except OSError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    def send(part: list[tuple[str, str, bytes | None]]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for method, path, body in part:
            conn.request(method, path, body=body, headers={"Authorization": auth, "Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                errors.append(f"{response.status} on {path}")
        conn.close()

    threads = [threading.Thread(target=worker, args=(requests[i::clients],)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise OSError(f"{len(errors)} requests failed, e.g. {errors[0]}")
    return time.perf_counter() - started


def bench_webhooks(dsn: str, n: int) -> dict:
    import psycopg

    from campaign_orchestrator.store.migrations import migrate

    name = f"campaigns_bench_feedback_{secrets.token_hex(4)}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    store_dsn = dsn.rsplit("/", 1)[0] + f"/{name}"
    port = _free_port()
    server = None
    try:
        with psycopg.connect(store_dsn, autocommit=True) as conn:
            migrate(conn, ProjectPaths.discover().migrations)
        info = psycopg.conninfo.conninfo_to_dict(store_dsn)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT / "plugins"),
            "AIRFLOW_CONN_CAMPAIGN_STORE": json.dumps({"conn_type": "postgres", "host": info.get("host"),
                                                       "port": int(info.get("port") or 5432), "login": info.get("user"),
                                                       "schema": name}),
            "AIRFLOW_CONN_CAMPAIGN_WEBHOOKS": json.dumps({"conn_type": "generic", "extra": {
                "postmark_user": USER, "postmark_password": PASSWORD}}),
        }
        server = subprocess.Popen([sys.executable, "-m", "campaign_orchestrator.feedback.webhooks.app", "--port",
                                   str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                _drive(port, [("GET", "/healthz", None)], 1)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the webhook server did not start") from None
                time.sleep(0.2)

        def records(prefix: str) -> list[tuple[str, str, bytes]]:
            return [("POST", "/campaigns-feedback/postmark", json.dumps({
                "RecordType": "Delivery", "MessageID": f"{prefix}-{i}", "Recipient": f"guest{i}@example.com",
                "DeliveredAt": "2026-11-20T16:33:54.9070259Z",
                "Metadata": {"campaign_message_id": f"<{prefix}-{i}@wanderly.example>"}}).encode()) for i in range(n)]

        _drive(port, records("warmup")[:100], 1)
        result = {"requests": n}
        for clients in (1, 4):
            seconds = _drive(port, records(f"c{clients}"), clients)
            health = _drive(port, [("GET", "/healthz", None)] * n, clients)
            result[f"webhook_{clients}"] = n / seconds
            result[f"healthz_{clients}"] = n / health
            print(f"webhook, {clients} client{'s' if clients > 1 else ''}: {n / seconds:,.0f} requests/s "
                  f"(each stores one event) vs GET /healthz {n / health:,.0f} requests/s on the same server")
        with psycopg.connect(store_dsn) as conn:
            stored = conn.execute("SELECT count(*) FROM campaign.delivery_event").fetchone()[0]
        assert stored == 2 * n + 100, stored  # every request stored its event once
        return result
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = {"verp": bench_verp(args.messages, args.repeat), "webhooks": bench_webhooks(args.dsn, args.requests)}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
