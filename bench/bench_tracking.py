"""Requests per second of the tracking endpoint, against a bare route of the same server.

    python bench/bench_tracking.py [--messages 100000] [--seconds 10] [--connections 16] [--workers 1]

A fresh store database gets a sent run of ``--messages`` ledger rows (one INSERT … SELECT);
the standalone server (``python -m campaign_orchestrator.tracking.app``, uvicorn) serves it;
``wrk`` (Debian's, ``apt-get install wrk``) loads it over loopback for ``--seconds`` each:

- ``bare``: ``GET /healthz`` of the same server (FastAPI, no token, no store): the baseline;
- ``opens``: a distinct message's pixel per request: verify, classify, one ``opened`` row
  inserted in one short transaction, the GIF;
- ``clicks``: a distinct message's link per request: the same, ``clicked``, and a 302;
- ``repeats``: the pixels of 100 messages over and over, as a mail client reopening: verify
  and the ingestion statement, which adds nothing.

Each figure is the best of ``--repeat`` runs; the events stored are counted after (one per
distinct message and kind requested). ``--json PATH`` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from campaign_orchestrator.paths import ProjectPaths  # noqa: E402
from campaign_orchestrator.store.migrations import migrate  # noqa: E402
from campaign_orchestrator.tracking.tokens import MessageKey, expires_hour, sign  # noqa: E402

SECRET = "bench-tracking-secret-0123456789"
STEP = "offer_email"
DESTINATION = "https://wanderly.example/sale?utm_source=email&utm_campaign=winter"
USER_AGENT = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"

WRK_SCRIPT = """
local paths = {}
for line in io.lines(os.getenv("TRACK_PATHS")) do paths[#paths + 1] = line end
local counter = 0
function setup(thread)
  thread:set("offset", counter)
  counter = counter + 1
end
function init(args)
  step = tonumber(os.getenv("TRACK_THREADS"))
  i = offset
end
function request()
  i = i + step
  if i > #paths then i = (i - 1) % #paths + 1 end
  return wrk.format("GET", paths[i], {["User-Agent"] = os.getenv("TRACK_UA")})
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed(dsn: str, messages: int) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, ProjectPaths(ROOT).migrations)
        run_key = conn.execute(
            "INSERT INTO campaign.run (campaign_id, dag_run_id) VALUES ('bench', 'bench__tracking') RETURNING run_key"
        ).fetchone()[0]
        conn.execute(
            """
            INSERT INTO campaign.message (run_key, step_id, profile_id, entity_key, campaign_id, channel, purpose,
                                          seq, address, status, provider_message_id, sent_at)
            SELECT %s, %s, g, '', 'bench', 'email', 'marketing', g, 'u' || g || '@example.com', 'sent',
                   '<' || g || '@wanderly.example>', now() - interval '1 hour'
            FROM generate_series(1, %s) AS g
            """,
            (run_key, STEP, messages),
        )
        conn.execute("VACUUM ANALYZE campaign.message")
    return run_key


def write_paths(path: Path, urls: list[str]) -> None:
    path.write_text("\n".join(urls) + "\n")


def wrk(base: str, paths_file: Path, seconds: int, connections: int, threads: int, script: Path) -> dict[str, Any]:
    env = {**os.environ, "TRACK_PATHS": str(paths_file), "TRACK_THREADS": str(threads), "TRACK_UA": USER_AGENT}
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency", "-s", str(script),
         base + "/"], capture_output=True, text=True, env=env, check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    latency = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)", out, re.M))
    return {"rate": rate, "requests": total, "non_2xx_3xx": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(1) if socket_errors else "", "latency": latency}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000, help="ledger rows, each with its own URLs")
    parser.add_argument("--seconds", type=int, default=10, help="each wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench_tracking needs wrk: apt-get install -y wrk", file=sys.stderr)
        return 1

    name = f"bench_tracking_{secrets.token_hex(3)}"
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = make_conninfo(args.dsn, dbname=name)
    folder = Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    server = None
    figures: dict[str, Any] = {"messages": args.messages, "seconds": args.seconds, "connections": args.connections,
                               "workers": args.workers, "wrk_threads": args.threads}
    try:
        run_key = seed(dsn, args.messages)
        expires = expires_hour(30)
        keys = [MessageKey(run_key, STEP, p, "") for p in range(1, args.messages + 1)]
        prefix = "/campaigns-track"
        opens = [f"{prefix}/o/{sign(SECRET, k, expires=expires)}" for k in keys]
        quoted = quote(DESTINATION, safe="/:@!$()*,;=?~")
        clicks = [f"{prefix}/c/{sign(SECRET, k, expires=expires, link=0, url=DESTINATION)}?u={quoted}" for k in keys]
        figures["token_chars"] = len(opens[0].rsplit("/", 1)[1])
        files = {"bare": ["/healthz"], "opens": opens, "clicks": clicks, "repeats": opens[:100]}
        for kind, urls in files.items():
            write_paths(folder / f"{kind}.txt", urls)
        script = folder / "paths.lua"
        script.write_text(WRK_SCRIPT)

        info = conninfo_to_dict(args.dsn)
        port = free_port()
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(folder / "airflow"),
            "AIRFLOW_CONN_CAMPAIGN_STORE": json.dumps(
                {"conn_type": "postgres", "host": info.get("host"), "port": int(info.get("port") or 5432),
                 "login": info.get("user"), "password": info.get("password"), "schema": name}),
            "AIRFLOW_CONN_CAMPAIGN_TRACKING": json.dumps(
                {"conn_type": "generic", "host": "https://bench.example", "password": SECRET}),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "plugins"), os.environ.get("PYTHONPATH")])),
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "campaign_orchestrator.tracking.app", "--port", str(port),
             "--workers", str(args.workers)],
            env=env, stdout=subprocess.DEVNULL, stderr=open(folder / "server.log", "w"), cwd=ROOT,
        )
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base, server, folder / "server.log")
        # One short warm-up: imports, the pool's connections, the statement prepared.
        wrk(base, folder / "repeats.txt", 2, args.connections, args.threads, script)
        for kind in ("bare", "opens", "clicks", "repeats"):
            runs = []
            for attempt in range(args.repeat):
                if kind in ("opens", "clicks") and attempt:
                    # Another slice of distinct URLs: a repeated URL would measure the duplicate path.
                    urls = files[kind]
                    shift = len(urls) * attempt // args.repeat
                    write_paths(folder / f"{kind}.txt", urls[shift:] + urls[:shift])
                runs.append(wrk(base, folder / f"{kind}.txt", args.seconds, args.connections, args.threads, script))
            figures[kind] = max(runs, key=lambda r: r["rate"])
            figures[kind]["runs"] = [r["rate"] for r in runs]
        with psycopg.connect(dsn) as conn:
            figures["stored"] = dict(conn.execute(
                "SELECT event_type, count(*) FROM campaign.delivery_event GROUP BY event_type").fetchall())
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        with psycopg.connect(args.dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        shutil.rmtree(folder, ignore_errors=True)

    for kind in ("opens", "clicks", "repeats"):
        figures[f"{kind}_vs_bare"] = figures[kind]["rate"] / figures["bare"]["rate"]
    print(f"Tracking endpoint, uvicorn {args.workers} worker(s), wrk {args.threads} threads x {args.connections} "
          f"connections, {args.seconds} s per run, best of {args.repeat} (2 cores shared with wrk and PostgreSQL):")
    labels = {"bare": "GET /healthz (bare route, baseline)", "opens": "open pixel, a new message each",
              "clicks": "click redirect, a new message each", "repeats": "open pixel, 100 messages reopened"}
    for kind, label in labels.items():
        f = figures[kind]
        bad = f" ({f['non_2xx_3xx']} non-2xx/3xx)" if f["non_2xx_3xx"] else ""
        print(f"  {label:<40} {f['rate']:>8,.0f} req/s   p50 {f['latency'].get('50', '?'):>8}  "
              f"p99 {f['latency'].get('99', '?'):>8}{bad}")
    print(f"  opens / bare {figures['opens_vs_bare']:.2f}, clicks / bare {figures['clicks_vs_bare']:.2f}; "
          f"token {figures['token_chars']} characters; stored {figures['stored']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    failed = any(figures[k]["non_2xx_3xx"] for k in labels)
    return 1 if failed else 0


def _wait_ready(base: str, server: subprocess.Popen, log: Path) -> None:
    import urllib.request

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the tracking server exited: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the tracking server did not start within 60 s")


if __name__ == "__main__":
    sys.exit(main())
