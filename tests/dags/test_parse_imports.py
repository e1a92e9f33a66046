"""The rule for imports inside functions, held by a test.

DAG files run in every Airflow process (scheduler, DAG processor, each worker's task start),
thousands of campaigns at a time. So the modules parsing imports — the DAG factory, the
config models and loader, the operators' classes — import at the top only what building a
DAG object needs; everything a task does when it runs (the store driver, SQL compilation,
channels, rendering, the SQL parser, data libraries) is imported inside the function that
uses it. Every other module imports at the top, as usual.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PARSE_TIME_MODULES = {
    "campaign_orchestrator",
    "campaign_orchestrator.dag_factory",
    "campaign_orchestrator.paths",
    "campaign_orchestrator.config",
    "campaign_orchestrator.channels",
    "campaign_orchestrator.channels.base",
    "campaign_orchestrator.channels.registry",
    "campaign_orchestrator.channels.email",  # the registry's relay defaults: data, no client
    "campaign_orchestrator.channels.email.relay",
    "campaign_orchestrator.operators",
    "campaign_orchestrator.run",
    "campaign_orchestrator.run.throttle",
    "campaign_orchestrator.store",
    "campaign_orchestrator.store.connect",
    "campaign_orchestrator.ingestion",
    "campaign_orchestrator.ingestion.dag_factory",  # the sources' DAG factory, like the campaigns'
    "campaign_orchestrator.ingestion.operators",
}
"""Beyond config.*, operators.* and the DAG factory: what parsing may import of the package."""
RUN_TIME_LIBRARIES = ("psycopg", "pglast", "pandas", "pyarrow", "aiosmtpd", "fastapi")


def test_parsing_every_dag_file_imports_only_what_building_dags_needs() -> None:
    script = (
        "import json, sys, runpy, pathlib\n"
        "before = set(sys.modules)\n"
        "for path in sorted(pathlib.Path(sys.argv[1]).glob('*.py')):\n"
        "    runpy.run_path(str(path))\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    env = {**os.environ, "CAMPAIGNS_HOME": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", script, str(ROOT / "dags")], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1]))
    ours = {m for m in loaded if m.split(".")[0] == "campaign_orchestrator"}
    unexpected = sorted(
        m for m in ours - PARSE_TIME_MODULES
        if not m.startswith(("campaign_orchestrator.config.", "campaign_orchestrator.operators."))
    )
    assert unexpected == [], f"imported while parsing DAG files (import them inside the function): {unexpected}"
    heavy = sorted(m for m in loaded if m.split(".")[0] in RUN_TIME_LIBRARIES or m in RUN_TIME_LIBRARIES)
    assert heavy == [], f"run-time libraries imported while parsing DAG files: {heavy}"
