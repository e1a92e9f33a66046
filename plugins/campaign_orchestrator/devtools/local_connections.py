"""Connections a local run needs and a newcomer has not configured (demo, make up).

The unsubscribe link's signing secret is generated once per checkout and kept in the
Airflow home, so links in .eml files of earlier demo runs keep verifying.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path


def unsubscribe_connection(airflow_home: Path, base_url: str = "http://localhost:8080") -> str:
    """JSON of a ``campaign_unsubscribe`` connection pointing at the local Airflow."""
    secret_file = airflow_home / "unsubscribe.secret"
    if not secret_file.exists():
        airflow_home.mkdir(parents=True, exist_ok=True)
        secret_file.write_text(secrets.token_hex(32))
        secret_file.chmod(0o600)
    return json.dumps({"conn_type": "generic", "host": base_url, "password": secret_file.read_text().strip()})
