"""What the Campaigns page tests share: SimpleAuthManager users with known passwords, and a
campaign run produced by the library against the real store and a real SMTP server."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from campaign_orchestrator.channels.factory import build_channel
from campaign_orchestrator.config.loader import load_campaigns
from campaign_orchestrator.paths import ProjectPaths
from campaign_orchestrator.run.audience import evaluate_audience
from campaign_orchestrator.run.report import compute_report, store_report
from campaign_orchestrator.run.runs import finish_run, register_run
from campaign_orchestrator.run.send import Batch, BatchSender
from campaign_orchestrator.run.targeting import plan_batches, target_step
from campaign_orchestrator.store.connect import store_connection
from campaign_orchestrator.store.demo_data import generate_demo_data

ROOT = Path(__file__).resolve().parents[3]
CAMPAIGN_ID = "ui_demo"
USERS = {"admin": ("admin", "admin-secret-1"), "viewer": ("viewer", "viewer-secret-2")}
"""username: (SimpleAuthManager role, password)."""


@pytest.fixture(scope="session")
def ui_users(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """SimpleAuthManager users with known passwords, exported for in-process apps and for
    an api-server started by a test: ``username -> password``."""
    passwords = tmp_path_factory.mktemp("auth") / "simple_auth_manager_passwords.json"
    passwords.write_text(json.dumps({name: password for name, (_, password) in USERS.items()}))
    env = {
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{name}:{role}" for name, (role, _) in USERS.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
    }
    previous = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    yield {name: password for name, (_, password) in USERS.items()}
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@dataclass
class ProducedRun:
    campaign_id: str
    run_key: int
    campaigns_dir: Path
    steps: list[tuple[str, str]]


def _campaigns_dir(folder: Path) -> Path:
    """The shipped campaigns, one with two email steps, and one broken file."""
    shutil.copytree(ROOT / "dags" / "campaigns", folder)
    data = yaml.safe_load((folder / "winter_sale.yaml").read_text())
    first = data["steps"][0]
    data.update(
        id=CAMPAIGN_ID,
        description="Winter sale offer and its last call <to check escaping>",
        steps=[first, {**first, "id": "last_call_email"}],
    )
    (folder / f"{CAMPAIGN_ID}.yaml").write_text(yaml.safe_dump(data))
    (folder / "broken_one.yaml").write_text("id: broken_one\nschedule: manual\nownr: me\n")
    return folder


def _addresses_at(store, run_key: int, step_id: str, seqs: list[int]) -> list[str]:
    rows = store.execute(
        "SELECT address FROM campaign.message WHERE run_key = %s AND step_id = %s AND seq = ANY(%s) ORDER BY seq",
        (run_key, step_id, seqs),
    ).fetchall()
    return [r[0] for r in rows]


@pytest.fixture
def campaign_run(store, smtp_server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ProducedRun:
    """A finished two-step email run of ``ui_demo`` over demo data: exclusions with several
    reasons, three recipients refused by the SMTP server (failed) and one lost reply
    (uncertain) in the first step; the second step all sent. Exported as
    ``CAMPAIGNS_CONFIG_DIR`` so the app reads the same campaign files."""
    generate_demo_data(store, profiles=600, seed=7)
    campaigns_dir = _campaigns_dir(tmp_path / "campaigns")
    monkeypatch.setenv("CAMPAIGNS_CONFIG_DIR", str(campaigns_dir))
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_server.conn_json())
    if "AIRFLOW_CONN_CAMPAIGN_UNSUBSCRIBE" not in os.environ:  # marketing emails carry a one-click link
        unsubscribe = {"conn_type": "generic", "host": "https://campaigns.example/unsubscribe",
                       "password": "ui-test-unsubscribe-secret"}
        monkeypatch.setenv("AIRFLOW_CONN_CAMPAIGN_UNSUBSCRIBE", json.dumps(unsubscribe))
    paths = ProjectPaths.discover()
    _, config = load_campaigns(campaigns_dir, paths).configs[CAMPAIGN_ID]
    run_key = register_run(store, CAMPAIGN_ID, "scheduled__ui_test", None, {})
    evaluate_audience(store, run_key, paths.sql / config.audience.sql, dict(config.audience.params), None)
    handler = smtp_server.handler
    for index, step in enumerate(config.steps):
        result = target_step(store, run_key, config, step)
        assert result.sendable > 20, "the demo data should give the step something to send"
        handler.rcpt_replies.clear()
        handler.drop_after_data.clear()
        if index == 0:
            refused = _addresses_at(store, run_key, step.id, [3, 7, 11])
            lost = _addresses_at(store, run_key, step.id, [15])[0]
            for address in refused:
                handler.rcpt_replies[address] = handler.rcpt_replies[address.lower()] = "550 5.1.1 no such user"
            handler.drop_after_data[lost] = handler.drop_after_data[lost.lower()] = 1
        renderer, open_sender = build_channel(step, config, run_key, paths)
        sender = BatchSender(store_connection, run_key, step, renderer, open_sender, on_uncertain=config.on_uncertain)
        for batch in plan_batches(result.sendable, config.batch_size):
            sender.run(Batch.from_xcom(batch))
    steps = [(s.id, s.channel) for s in config.steps]
    store_report(store, run_key, compute_report(store, run_key, steps))
    finish_run(store, run_key, succeeded=True)
    statuses = Counter(dict(store.execute(
        "SELECT status, count(*) FROM campaign.message WHERE run_key = %s GROUP BY status", (run_key,)).fetchall()))
    failures = store.execute(
        """
        SELECT reason, left(error, 200), count(*) FROM campaign.message
        WHERE run_key = %s AND status = 'failed' GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 3
        """,
        (run_key,),
    ).fetchall()
    assert statuses["failed"] == 3 and statuses["uncertain"] == 1 and statuses["excluded"] > 0, (statuses, failures)
    return ProducedRun(CAMPAIGN_ID, run_key, campaigns_dir, steps)


def ledger_funnels(store, run_key: int) -> dict[str, dict[str, int]]:
    """Counts straight from the ledger, by ``step:<id>`` and ``channel:<name>``: what the page
    must show, computed without the code under test."""
    funnels: dict[str, Counter] = {}
    rows = store.execute(
        """
        SELECT step_id, channel, status, coalesce(reason, ''), count(*)
        FROM campaign.message WHERE run_key = %s GROUP BY 1, 2, 3, 4
        """,
        (run_key,),
    ).fetchall()
    for step_id, channel, status, reason, count in rows:
        for key in (f"step:{step_id}", f"channel:{channel}"):
            funnel = funnels.setdefault(key, Counter())
            funnel["targeted"] += count
            if status in ("excluded", "failed"):
                funnel[status] += count
                funnel[f"{status}.{reason or 'failed'}"] += count
            elif status in ("sent", "uncertain"):
                funnel[status] += count
            else:
                funnel["pending"] += count
    return {key: dict(counter) for key, counter in funnels.items()}
