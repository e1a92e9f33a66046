"""Airflow imports plugins in every process: the webhooks plugin must cost nothing there."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_plugin_reads_no_connection_and_builds_no_app() -> None:
    code = (
        "import sys\n"
        "from airflow.sdk import BaseHook\n"
        "def boom(*a, **k): raise AssertionError('get_connection at import')\n"
        "BaseHook.get_connection = boom\n"
        "import feedback_webhooks_plugin, campaign_orchestrator.channels.registry, campaign_orchestrator.feedback.verp\n"
        "assert 'campaign_orchestrator.feedback.webhooks.app' not in sys.modules\n"
        "assert 'fastapi' not in sys.modules, 'fastapi imported'\n"
        "assert 'cryptography.hazmat.primitives.asymmetric.ec' not in sys.modules\n"
        "print(feedback_webhooks_plugin.FeedbackWebhooksPlugin.fastapi_apps[0]['url_prefix'])\n"
    )
    from tests.conftest import ROOT

    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "plugins", capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "/campaigns-feedback"
