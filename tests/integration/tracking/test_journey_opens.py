"""A journey's ``when: not_opened`` fed by the tracking endpoint: the email step is sent over
SMTP (aiosmtpd) by the real send path, its received messages' pixels and links are followed
through the real endpoint, and the SMS step after the wait turns away the people who opened,
not those whose only open was a machine's."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from fastapi.testclient import TestClient

from campaign_orchestrator.channels.factory import build_channel
from campaign_orchestrator.config.campaign import CampaignConfig
from campaign_orchestrator.paths import ProjectPaths
from campaign_orchestrator.run.audience import evaluate_audience
from campaign_orchestrator.run.funnel import compute_funnel
from campaign_orchestrator.run.runs import register_run
from campaign_orchestrator.run.send import Batch, BatchSender
from campaign_orchestrator.run.targeting import plan_batches, target_step
from campaign_orchestrator.store.connect import store_connection
from campaign_orchestrator.tracking.app import standalone_app
from campaign_orchestrator.tracking.extract import tracked_links
from tests.fixtures.store import add_profiles

pytestmark = pytest.mark.integration

BASE = "https://track.example.com"
PERSON = {"User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko)"}
APPLE_PROXY = {"User-Agent": "Mozilla/5.0"}
SCANNER = {"User-Agent": "Barracuda Sentinel (EE)"}


def journey(include_machine: bool = False) -> CampaignConfig:
    condition = {"step": "mail", "outcome": "not_opened"}
    if include_machine:
        condition["include_machine"] = True
    return CampaignConfig.model_validate({
        "id": "journey", "schedule": "manual", "valid": {"start": "2026-01-01"}, "audience": {"sql": "a/all.sql"},
        "steps": [
            {"id": "mail", "channel": "email", "template": "t", "sender": "Shop <s@shop.example>",
             "connection_id": "smtp_test"},
            {"id": "wait", "wait": "2d", "after": "mail"},
            {"id": "sms", "channel": "sms", "template": "s", "after": "wait", "when": condition},
        ],
    })


FILES = {
    "sql/a/all.sql": "SELECT profile_id FROM crm.profile",
    "templates/t/subject.txt": "Hi {{ profile.first_name }}",
    "templates/t/body.txt": "Our sale: https://shop.example/sale",
    "templates/t/body.html": '<html><body><p>Hi {{ profile.first_name }}</p><a href="https://shop.example/sale">Sale</a>'
                             '<a href="{{ unsubscribe_url }}">Unsubscribe</a></body></html>',
}


@pytest.fixture
def paths(tmp_path: Path) -> ProjectPaths:
    for name, text in FILES.items():
        file = tmp_path / "include" / name
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
    return ProjectPaths(tmp_path)


@pytest.fixture
def endpoint(store: psycopg.Connection, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("AIRFLOW_CONN_CAMPAIGN_TRACKING", json.dumps(
        {"conn_type": "generic", "host": BASE, "password": "journey-tracking-secret-0123"}))
    add_profiles(store, [
        {"profile_id": i, "email": f"u{i}@example.com", "phone": f"+3361234567{i}", "first_name": f"P{i}",
         "consent": {"email": "opted_in", "sms": "opted_in"}}
        for i in range(1, 6)
    ])
    with TestClient(standalone_app(), base_url=BASE) as client:
        yield client


def send_mail(store: psycopg.Connection, paths: ProjectPaths, config: CampaignConfig, smtp_server) -> dict[str, object]:
    """Run the email step for real; each recipient's tracking links, from the message received."""
    run_key = register_run(store, config.id, "r1", None, {})
    evaluate_audience(store, run_key, paths.sql / "a" / "all.sql", {}, None)
    step = config.step("mail")
    sendable = target_step(store, run_key, config, step).sendable
    renderer, open_sender = build_channel(step, config, run_key, paths)
    for batch in plan_batches(sendable, 100):
        BatchSender(store_connection, run_key, step, renderer, open_sender).run(Batch.from_xcom(batch))
    # The wait: the hits below come minutes after the send, not within its first second.
    store.execute("UPDATE campaign.message SET sent_at = sent_at - interval '10 minutes' WHERE run_key = %s", (run_key,))
    links = {m.rcpt_tos[0]: tracked_links(m.data) for m in smtp_server.handler.messages}
    assert len(links) == 5
    return {"run_key": run_key, "links": links}


def follow(client: TestClient, url: str, headers: dict[str, str]) -> None:
    parts = urlsplit(url)
    response = client.get(parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers,
                          follow_redirects=False)
    assert response.status_code in (200, 302)


def turned_away(store: psycopg.Connection, run_key: int) -> set[int]:
    return {p for (p,) in store.execute(
        "SELECT profile_id FROM campaign.message WHERE run_key = %s AND step_id = 'sms' AND reason = 'condition_not_met'",
        (run_key,),
    )}


@pytest.mark.parametrize(("include_machine", "expected"), [(False, {1, 4}), (True, {1, 2, 3, 4})])
def test_not_opened_honours_a_persons_open_but_not_a_machines(
    store: psycopg.Connection, paths: ProjectPaths, endpoint: TestClient, smtp_server, include_machine: bool,
    expected: set[int],
) -> None:
    config = journey(include_machine)
    sent = send_mail(store, paths, config, smtp_server)
    links = sent["links"]
    follow(endpoint, links["u1@example.com"].open_url, PERSON)                 # 1 opens it
    follow(endpoint, links["u2@example.com"].open_url, APPLE_PROXY)            # 2: only Apple's proxy loaded it
    follow(endpoint, links["u3@example.com"].clicks[0].url, SCANNER)           # 3: only a gateway followed the link
    follow(endpoint, links["u4@example.com"].open_url, APPLE_PROXY)            # 4: the proxy, then the person
    follow(endpoint, links["u4@example.com"].clicks[0].url, PERSON)
    # 5 never opens it.
    target_step(store, sent["run_key"], config, config.step("sms"))
    assert turned_away(store, sent["run_key"]) == expected
    funnel = {f.step_id: f for f in compute_funnel(store, sent["run_key"], config)}
    assert (funnel["mail"].sent, funnel["mail"].opened, funnel["mail"].clicked) == (5, 2, 1)
    assert funnel["sms"].condition_not_met == len(expected)
