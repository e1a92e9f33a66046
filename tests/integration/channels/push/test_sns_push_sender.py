"""SnsPushSender against SNS mobile push as moto serves it over HTTP: platform applications
and endpoints for APNs and FCM, the stored message per endpoint, disabled and deleted
endpoints, and the ledger's handling of dead endpoints through BatchSender."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from campaign_orchestrator.channels.base import Outbound, Recipient
from campaign_orchestrator.channels.push import build_push_channel
from campaign_orchestrator.channels.push.sns import SnsPushSender
from campaign_orchestrator.config.campaign import CampaignConfig
from campaign_orchestrator.paths import ProjectPaths
from tests.fixtures.aws import MotoEndpoint, SnsProxy

pytestmark = pytest.mark.integration


class Apps:
    """An APNs and an FCM platform application in moto, and endpoints on them."""

    def __init__(self, endpoint: MotoEndpoint) -> None:
        self.sns = endpoint.client("sns")
        self.arns = {
            "apns": self.sns.create_platform_application(Name="acme-ios", Platform="APNS", Attributes={})[
                "PlatformApplicationArn"
            ],
            "fcm": self.sns.create_platform_application(Name="acme-android", Platform="GCM", Attributes={})[
                "PlatformApplicationArn"
            ],
        }

    def endpoint(self, platform: str, token: str) -> str:
        return self.sns.create_platform_endpoint(PlatformApplicationArn=self.arns[platform], Token=token)["EndpointArn"]


@pytest.fixture
def apps(sns_endpoint: MotoEndpoint) -> Apps:
    return Apps(sns_endpoint)


PAYLOAD = {
    "title": "Ana, your trip",
    "body": "Köln is ready ✈",
    "link": "https://acme.example/t/9",
    "data": {"screen": "trip"},
}


def outbound(i: int, arn: str, platform: str | None, payload: dict | None = None) -> Outbound:
    recipient = Recipient(i, "", arn, {"push_platform": platform})
    return Outbound(recipient, payload or PAYLOAD, f"mid-{i}")


def stored(sns_endpoint: MotoEndpoint, arn: str) -> dict[str, str]:
    return sns_endpoint.platform_endpoints()[arn]["messages"]


def test_each_platform_gets_its_payload_exactly_once(apps: Apps, sns_endpoint: MotoEndpoint) -> None:
    ios, android = apps.endpoint("apns", "ios-token"), apps.endpoint("fcm", "fcm-token")
    with SnsPushSender(sns_endpoint.conn_id, max_workers=4) as sender:
        outcomes = sender.send([outbound(1, ios, "apns"), outbound(2, android, "fcm")])
    assert [o.status for o in outcomes] == ["sent", "sent"]

    ios_messages = stored(sns_endpoint, ios)
    assert list(ios_messages) == [outcomes[0].provider_message_id]
    message = json.loads(ios_messages[outcomes[0].provider_message_id])
    assert set(message) == {"default", "APNS", "APNS_SANDBOX"}
    assert message["default"] == "Köln is ready ✈"
    assert json.loads(message["APNS"]) == json.loads(message["APNS_SANDBOX"]) == {
        "aps": {"alert": {"title": "Ana, your trip", "body": "Köln is ready ✈"}, "sound": "default"},
        "link": "https://acme.example/t/9",
        "screen": "trip",
    }

    android_messages = stored(sns_endpoint, android)
    assert list(android_messages) == [outcomes[1].provider_message_id]
    message = json.loads(android_messages[outcomes[1].provider_message_id])
    assert set(message) == {"default", "GCM"}
    assert json.loads(message["GCM"]) == {
        "fcmV1Message": {
            "message": {
                "notification": {"title": "Ana, your trip", "body": "Köln is ready ✈"},
                "data": {"link": "https://acme.example/t/9", "screen": "trip"},
            }
        }
    }


def test_disabled_and_deleted_endpoints_fail_and_disable_the_address(apps: Apps, sns_endpoint: MotoEndpoint) -> None:
    live, disabled, deleted = (apps.endpoint("fcm", f"token-{i}") for i in range(3))
    apps.sns.set_endpoint_attributes(EndpointArn=disabled, Attributes={"Enabled": "false"})
    apps.sns.delete_endpoint(EndpointArn=deleted)
    with SnsPushSender(sns_endpoint.conn_id) as sender:
        outcomes = sender.send([outbound(1, disabled, "fcm"), outbound(2, live, "fcm"), outbound(3, deleted, "fcm")])
    assert [(o.status, o.reason, o.disable_address) for o in outcomes] == [
        ("failed", "endpoint_disabled", True),
        ("sent", None, False),
        ("failed", "endpoint_not_found", True),
    ]
    assert "EndpointDisabled" in outcomes[0].error
    assert stored(sns_endpoint, disabled) == {}
    assert len(stored(sns_endpoint, live)) == 1


def test_unknown_platform_is_not_published(apps: Apps, sns_endpoint: MotoEndpoint) -> None:
    arn = apps.endpoint("apns", "t")
    with SnsPushSender(sns_endpoint.conn_id) as sender:
        outcomes = sender.send([outbound(1, arn, None), outbound(2, arn, "wns")])
    expected = ("failed", "unknown_push_platform", False)
    assert [(o.status, o.reason, o.disable_address) for o in outcomes] == [expected] * 2
    assert stored(sns_endpoint, arn) == {}


def test_lost_response_is_uncertain_and_not_resent(apps: Apps, sns_proxy: SnsProxy) -> None:
    arn = apps.endpoint("apns", "t")
    sns_proxy.hold_publish = True
    with SnsPushSender(sns_proxy.conn_id, attempts=3, backoff=0.01) as sender:
        outcomes = sender.send([outbound(1, arn, "apns")])
    outcome = outcomes[0]
    assert (outcome.status, outcome.reason, outcome.disable_address) == ("uncertain", "response_lost", False)
    assert len(sns_proxy.actions("Publish")) == 1


# --- Through the ledger: templates, targeting, BatchSender, crm.profile.push_disabled_at ---------


@pytest.fixture
def project(tmp_path: Path) -> ProjectPaths:
    paths = ProjectPaths(tmp_path)
    (paths.sql / "audiences").mkdir(parents=True)
    (paths.sql / "audiences" / "all.sql").write_text("SELECT profile_id FROM crm.profile")
    folder = paths.templates / "trip"
    folder.mkdir(parents=True)
    (folder / "title.txt").write_text("{{ profile.first_name }}, your trip\n")
    (folder / "body.txt").write_text("See you in {{ profile.city }}\n")
    (folder / "link.txt").write_text("https://acme.example/p/{{ profile.profile_id }}\n")
    return paths


def test_batch_send_records_dead_endpoints(
    store, project: ProjectPaths, apps: Apps, sns_endpoint: MotoEndpoint
) -> None:
    from campaign_orchestrator.run.audience import evaluate_audience
    from campaign_orchestrator.run.runs import register_run
    from campaign_orchestrator.run.send import Batch, BatchSender
    from campaign_orchestrator.run.targeting import plan_batches, target_step
    from campaign_orchestrator.store.connect import store_connection
    from tests.fixtures.store import add_profiles

    endpoints = {i: apps.endpoint("apns" if i % 2 else "fcm", f"token-{i}") for i in range(1, 7)}
    apps.sns.set_endpoint_attributes(EndpointArn=endpoints[3], Attributes={"Enabled": "false"})
    add_profiles(
        store,
        [
            {"profile_id": i, "first_name": f"P{i}", "city": "Köln", "push_token": arn,
             "push_platform": "apns" if i % 2 else "fcm", "consent": {"push": "opted_in"}}
            for i, arn in endpoints.items()
        ],
    )
    config = CampaignConfig.model_validate(
        {
            "id": "push_trip",
            "schedule": "manual",
            "valid": {"start": "2026-01-01"},
            "audience": {"sql": "audiences/all.sql"},
            "steps": [{"id": "nudge", "channel": "push", "template": "trip", "connection_id": sns_endpoint.conn_id}],
        }
    )
    step = config.steps[0]
    run_key = register_run(store, config.id, "run_1", None, {})
    evaluate_audience(store, run_key, project.sql / config.audience.sql, {}, None)
    result = target_step(store, run_key, config, step)
    renderer, open_sender = build_push_channel(step, SimpleNamespace(id=config.id, description=""), run_key, project)
    for batch in plan_batches(result.sendable, config.batch_size):
        BatchSender(store_connection, run_key, step, renderer, open_sender, chunk_size=4).run(Batch.from_xcom(batch))

    ledger = dict(
        store.execute(
            "SELECT profile_id, status || coalesce(':' || reason, '') FROM campaign.message WHERE run_key = %s",
            (run_key,),
        ).fetchall()
    )
    assert ledger == {1: "sent", 2: "sent", 3: "failed:endpoint_disabled", 4: "sent", 5: "sent", 6: "sent"}
    disabled = store.execute("SELECT profile_id FROM crm.profile WHERE push_disabled_at IS NOT NULL").fetchall()
    assert disabled == [(3,)]
    for i, arn in endpoints.items():
        messages = list(stored(sns_endpoint, arn).values())
        assert len(messages) == (0 if i == 3 else 1)
    android = json.loads(json.loads(next(iter(stored(sns_endpoint, endpoints[2]).values())))["GCM"])
    assert android["fcmV1Message"]["message"]["notification"] == {"title": "P2, your trip", "body": "See you in Köln"}
    assert android["fcmV1Message"]["message"]["data"] == {"link": "https://acme.example/p/2"}
