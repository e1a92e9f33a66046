"""Test session set-up: an isolated Airflow home and a fresh campaign store database.

Airflow reads its configuration at import, so the environment is set here, before any test
module imports it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = Path(os.environ.get("CAMPAIGNS_TEST_AIRFLOW_HOME") or tempfile.mkdtemp(prefix="airflow-test-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ["CAMPAIGNS_HOME"] = str(ROOT)
# Tests never fall back to an embedded store silently (not even the project's .campaign-store/
# of a `make demo`): the store fixture says which it uses.
os.environ["CAMPAIGNS_EMBEDDED_STORE"] = ""
# The api-server signs its JWTs with this (test-only; a real deployment sets its own).
os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", "test-only-jwt-secret-" + "0" * 48)
# Marketing emails carry a signed one-click unsubscribe link (test-only secret).
os.environ.setdefault(
    "AIRFLOW_CONN_CAMPAIGN_UNSUBSCRIBE",
    '{"conn_type": "generic", "host": "https://campaigns.test.example", "password": "test-secret-0123456789abcdef"}',
)

pytest_plugins = [
    "tests.fixtures.store",
    "tests.fixtures.mail",
    "tests.fixtures.aws",
    "tests.fixtures.airflow",
    "tests.fixtures.webhook",
    "tests.fixtures.imap",
]
