"""Connections a local run needs and a newcomer has not configured (demo, make up).

The unsubscribe link's signing secret is generated once per checkout and kept in the
Airflow home, so links in .eml files of earlier demo runs keep verifying.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from campaign_orchestrator.paths import ProjectPaths


def project_environment(paths: ProjectPaths) -> dict[str, str]:
    """What the Makefile and ``make demo`` give Airflow and the CLI, for a shell of your own:
    ``eval "$(campaigns env)"`` (or ``make shell``), then ``airflow dags test …`` works
    outside make. Variables already set are kept (your own store or SMTP server wins)."""
    root = paths.root
    airflow_home = Path(os.environ.get("AIRFLOW_HOME") or root / ".airflow")
    env = {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "CAMPAIGNS_HOME": str(root),
    }
    if "AIRFLOW_CONN_CAMPAIGN_STORE" not in os.environ:
        env["CAMPAIGNS_EMBEDDED_STORE"] = os.environ.get("CAMPAIGNS_EMBEDDED_STORE") or str(root / ".campaign-store")
    if "AIRFLOW_CONN_CAMPAIGN_UNSUBSCRIBE" not in os.environ:
        env["AIRFLOW_CONN_CAMPAIGN_UNSUBSCRIBE"] = unsubscribe_connection(airflow_home)
    return {name: value for name, value in env.items() if name not in os.environ}


def unsubscribe_connection(airflow_home: Path, base_url: str = "http://localhost:8080") -> str:
    """JSON of a ``campaign_unsubscribe`` connection pointing at the local Airflow."""
    secret_file = airflow_home / "unsubscribe.secret"
    if not secret_file.exists():
        airflow_home.mkdir(parents=True, exist_ok=True)
        secret_file.write_text(secrets.token_hex(32))
        secret_file.chmod(0o600)
    return json.dumps({"conn_type": "generic", "host": base_url, "password": secret_file.read_text().strip()})
