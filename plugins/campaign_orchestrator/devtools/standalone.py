"""`make up`: Airflow standalone with the campaigns loaded, UI on http://localhost:8080.

The campaign store is the `campaign_store` connection if configured, else the embedded
PostgreSQL in .campaign-store/ (migrated here). A local SMTP sink (messages as .eml files in
.mailbox/) is the `smtp_default` connection unless one is configured.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from campaign_orchestrator.paths import ProjectPaths


def main() -> int:
    paths = ProjectPaths.discover()
    env = dict(os.environ)
    env.setdefault("AIRFLOW_HOME", str(paths.root / ".airflow"))
    env.setdefault("CAMPAIGNS_EMBEDDED_STORE", str(paths.root / ".campaign-store"))
    if "AIRFLOW_CONN_CAMPAIGN_UNSUBSCRIBE" not in env:
        from campaign_orchestrator.devtools.local_connections import unsubscribe_connection

        env["AIRFLOW_CONN_CAMPAIGN_UNSUBSCRIBE"] = unsubscribe_connection(Path(env["AIRFLOW_HOME"]))
    os.environ.update(env)

    from campaign_orchestrator.store.connect import store_connection
    from campaign_orchestrator.store.migrations import migrate

    with store_connection() as conn:
        migrate(conn, paths.migrations)

    controller = None
    if "AIRFLOW_CONN_SMTP_DEFAULT" not in env:
        from campaign_orchestrator.devtools.mail_sink import start_mail_sink

        # aiosmtpd logs every SMTP command at INFO: thousands of lines per campaign.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        mailbox = paths.root / ".mailbox"
        mailbox.mkdir(exist_ok=True)
        controller, port = start_mail_sink(mailbox, port=1025)
        env["AIRFLOW_CONN_SMTP_DEFAULT"] = json.dumps(
            {"conn_type": "smtp", "host": "127.0.0.1", "port": port, "extra": {"disable_ssl": True, "disable_tls": True}}
        )
        print(f"Mail sink on 127.0.0.1:{port}; messages land in {mailbox}", flush=True)

    airflow = str(Path(sys.executable).with_name("airflow"))
    # `airflow standalone` starts its components as `airflow …` found on PATH: the venv's.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    process = subprocess.Popen([airflow, "standalone"], env=env)
    signal.signal(signal.SIGTERM, lambda *_: process.terminate())
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        return process.wait()
    finally:
        if controller is not None:
            controller.stop()


if __name__ == "__main__":
    sys.exit(main())
