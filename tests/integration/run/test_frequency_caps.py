"""Frequency caps across campaigns sending at the same time (real Postgres, real SMTP)."""

from __future__ import annotations

import copy
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from campaign_orchestrator.channels.factory import build_channel
from campaign_orchestrator.config.campaign import CampaignConfig
from campaign_orchestrator.paths import ProjectPaths
from campaign_orchestrator.run.audience import evaluate_audience
from campaign_orchestrator.run.policies import FrequencyCap, load_policies
from campaign_orchestrator.run.runs import register_run
from campaign_orchestrator.run.send import Batch, BatchSender
from campaign_orchestrator.run.targeting import plan_batches, target_step
from campaign_orchestrator.store.connect import store_connection
from tests.fixtures.store import add_profiles

pytestmark = pytest.mark.integration


@pytest.fixture
def project(tmp_path: Path) -> ProjectPaths:
    paths = ProjectPaths(tmp_path)
    (paths.sql / "a").mkdir(parents=True)
    (paths.sql / "a" / "all.sql").write_text("SELECT profile_id FROM crm.profile")
    folder = paths.templates / "t"
    folder.mkdir(parents=True)
    for part in ("subject.txt", "body.txt", "body.html"):
        (folder / part).write_text("Hi {{ profile.first_name }}")
    return paths


def campaign(campaign_id: str) -> CampaignConfig:
    return CampaignConfig.model_validate({
        "id": campaign_id, "schedule": "manual", "valid": {"start": "2026-01-01"}, "audience": {"sql": "a/all.sql"},
        "steps": [{"id": "mail", "channel": "email", "template": "t", "sender": "S <s@shop.example>",
                   "connection_id": "smtp_test"}],
    })


def prepared(store, project: ProjectPaths, config: CampaignConfig, caps) -> list[tuple[BatchSender, Batch]]:
    run_key = register_run(store, config.id, "r1", None, {})
    evaluate_audience(store, run_key, project.sql / "a" / "all.sql", {}, None)
    sendable = target_step(store, run_key, config, config.steps[0]).sendable
    renderer, open_sender = build_channel(config.steps[0], config, run_key, project)
    sender = BatchSender(store_connection, run_key, config.steps[0], renderer, open_sender, chunk_size=7,
                         frequency_caps=caps)
    return [(sender, Batch.from_xcom(b)) for b in plan_batches(sendable, 20)]


CAP = [FrequencyCap(channel="email", purpose="marketing", max=1, per=timedelta(days=1))]


def test_two_campaigns_sending_at_once_respect_a_cap_of_one(store, project, smtp_server) -> None:
    add_profiles(store, [{"profile_id": i, "email": f"u{i}@example.com", "first_name": "A",
                          "consent": {"email": "opted_in"}} for i in range(1, 61)])
    work = prepared(store, project, campaign("first"), CAP) + prepared(store, project, campaign("second"), CAP)
    errors: list[BaseException] = []

    def run(sender, batch) -> None:
        try:
            sender.run(batch)
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=item) for item in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    received = Counter(r for m in smtp_server.handler.messages for r in m.rcpt_tos)
    assert received == Counter({f"u{i}@example.com": 1 for i in range(1, 61)})  # one each, never two
    statuses = Counter(dict(store.execute(
        "SELECT status || ':' || coalesce(reason, ''), count(*) FROM campaign.message GROUP BY 1").fetchall()))
    assert statuses == Counter({"sent:": 60, "excluded:frequency_capped": 60})


def test_history_counts_and_transactional_is_not_capped(store, project, smtp_server) -> None:
    add_profiles(store, [{"profile_id": i, "email": f"u{i}@example.com", "first_name": "A",
                          "consent": {"email": "opted_in"}} for i in range(1, 11)])
    for sender, batch in prepared(store, project, campaign("earlier"), CAP):
        sender.run(batch)
    later = prepared(store, project, campaign("later"), CAP)
    for sender, batch in later:
        stats = sender.run(batch)
        assert stats.sent == 0 and stats.excluded_late == 10
    receipt = campaign("receipt").model_copy()
    receipt = receipt.model_copy(update={"steps": [receipt.steps[0].model_copy(update={"purpose": "transactional"})]})
    for sender, batch in prepared(store, project, receipt, CAP):
        assert sender.run(batch).sent == 10  # the cap is on marketing email only
    assert len(smtp_server.handler.messages) == 20


def test_policies_file_is_validated(tmp_path: Path) -> None:
    (tmp_path / "_policies.yaml").write_text("frequency_caps:\n  - {channel: email, max: 3, per: 7d}\n")
    assert load_policies(tmp_path).frequency_caps[0].per == timedelta(days=7)
    (tmp_path / "_policies.yaml").write_text("frequency_caps:\n  - {channel: fax, max: 3, per: 7d}\n")
    with pytest.raises(ValueError, match="_policies.yaml"):
        load_policies(tmp_path)


def test_two_send_tasks_at_once_share_one_rate(store, project, smtp_server) -> None:
    """The throttle as the send tasks use it: two batches of two campaigns, sending at the
    same time through one provider connection, together stay within its rate."""
    from campaign_orchestrator.run.throttle import StoreRateLimiter

    add_profiles(store, [{"profile_id": i, "email": f"u{i}@example.com", "first_name": "A",
                          "consent": {"email": "opted_in"}} for i in range(1, 121)])
    rate = 40.0
    work = []
    for campaign_id in ("left", "right"):
        for shared, batch in prepared(store, project, campaign(campaign_id), ()):
            sender = copy.copy(shared)  # one sender and one limiter per task, as in Airflow
            sender.limiter = StoreRateLimiter(store_connection, "email:smtp_test", rate)
            sender.chunk_size = max(1, int(min(sender.chunk_size, sender.limiter.burst)))
            work.append((sender, batch))
    errors: list[BaseException] = []

    def run(sender, batch) -> None:
        try:
            sender.run(batch)
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=item) for item in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    times = sorted(m.at for m in smtp_server.handler.messages)
    assert len(times) == 240
    elapsed = times[-1] - times[0]
    assert elapsed >= (240 - rate) / rate * 0.9  # 240 messages at 40/s after a burst of 40
    window_max = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert window_max <= rate + rate + 10  # rate plus the burst, plus one chunk of slack


def test_dry_runs_and_proofs_never_count_and_a_deleted_rehearsal_stops_counting(store, project, smtp_server) -> None:
    from campaign_orchestrator.channels.dry_run import FileSender
    from campaign_orchestrator.run.history import delete_run, list_runs
    from campaign_orchestrator.run.proof import send_proof

    add_profiles(store, [{"profile_id": i, "email": f"u{i}@example.com", "first_name": "A",
                          "consent": {"email": "opted_in"}} for i in range(1, 6)])
    # A dry run: every message rendered to a file, its rows end 'rendered'.
    rehearsal = campaign("rehearsal")
    run_key = register_run(store, rehearsal.id, "dry", None, {"dry_run": True})
    evaluate_audience(store, run_key, project.sql / "a" / "all.sql", {}, None)
    sendable = target_step(store, run_key, rehearsal, rehearsal.steps[0]).sendable
    renderer, _ = build_channel(rehearsal.steps[0], rehearsal, run_key, project)
    dry = BatchSender(store_connection, run_key, rehearsal.steps[0], renderer,
                      lambda: FileSender(project.root / "dry"), dry_run=True)
    for batch in plan_batches(sendable, 20):
        assert dry.run(Batch.from_xcom(batch)).sent == 5
    # A proof to a seed address: no ledger row at all.
    results = send_proof(store, rehearsal, rehearsal.steps[0], project, 1, ["qa@example.com"])
    assert [outcome.status for _, outcome in results] == ["sent"]
    # A rehearsal that really sent (say `airflow dags test` against a test SMTP server).
    for sender, batch in prepared(store, project, campaign("dags_test_rehearsal"), CAP):
        assert sender.run(batch).sent == 5
    assert [(r.dag_run_id, r.sent) for r in list_runs(store) if r.campaign_id == "dags_test_rehearsal"] == [("r1", 5)]
    # The production campaign: the rehearsal's real sends cap it, until the rehearsal is deleted.
    for sender, batch in prepared(store, project, campaign("production"), CAP):
        assert sender.run(batch).sent == 0
    assert delete_run(store, "dags_test_rehearsal", "r1").sent == 5
    store.execute("DELETE FROM campaign.run WHERE campaign_id = 'production'")
    for sender, batch in prepared(store, project, campaign("production"), CAP):
        assert sender.run(batch).sent == 5  # neither the dry run nor the proof counted
    received = Counter(r for m in smtp_server.handler.messages for r in m.rcpt_tos)
    assert received == Counter({**{f"u{i}@example.com": 2 for i in range(1, 6)}, "qa@example.com": 1})
