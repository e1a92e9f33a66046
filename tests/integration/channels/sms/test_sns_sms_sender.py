"""SnsSmsSender and sync_opt_outs against SNS as moto serves it over HTTP, through the amazon
provider's hook. Misbehaviour (throttling, a lost response, a paged opt-out list) comes from
an HTTP proxy in front of moto; nothing in the send path is mocked."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections import Counter

import pytest
from airflow.providers.amazon.aws.hooks.sns import SnsHook

from campaign_orchestrator.channels.base import Outbound, Recipient, TransientSendError
from campaign_orchestrator.channels.sms.sns import SnsSmsSender, sync_opt_outs
from tests.fixtures.aws import MotoEndpoint, SnsProxy
from tests.fixtures.store import add_profiles

pytestmark = pytest.mark.integration

log = logging.getLogger(__name__)

OPTED_OUT = "+447420500600"
"""On the opt-out list moto starts with (moto has no API to add one; opt_in removes)."""


def phone(i: int) -> str:
    return f"+3361{i:07d}"


def outbound(i: int, number: str | None = None, text: str | None = None) -> Outbound:
    recipient = Recipient(profile_id=i, entity_key="", address=number or phone(i), profile={})
    return Outbound(recipient, text or f"Offre {i} pour toi: -20% €", f"mid-{i}", units=1)


def test_each_message_is_published_exactly_once_in_order(sns_endpoint: MotoEndpoint) -> None:
    messages = [outbound(i) for i in range(20)]
    with SnsSmsSender(sns_endpoint.conn_id, max_workers=4) as sender:
        outcomes = sender.send(messages[:12]) + sender.send(messages[12:])
    assert [o.status for o in outcomes] == ["sent"] * 20
    stored = {m["message_id"]: m for m in sns_endpoint.sms_messages()}
    assert len(stored) == 20
    for message, outcome in zip(messages, outcomes):
        sms = stored[outcome.provider_message_id]
        assert (sms["phone_number"], sms["message"]) == (message.recipient.address, message.payload)
    # Exactly once: every (number, text) appears once among everything SNS accepted.
    published = Counter((m["phone_number"], m["message"]) for m in sns_endpoint.sms_messages())
    assert published == Counter((m.recipient.address, m.payload) for m in messages)


def test_message_attributes_and_client_settings(sns_endpoint: MotoEndpoint) -> None:
    sent: list[dict] = []
    with SnsSmsSender(
        sns_endpoint.conn_id, sms_type="Transactional", sender_id="ACME", origination_number="+15555550100",
        max_workers=6,
    ) as sender:
        config = sender._client.meta.config
        assert config.max_pool_connections == 6
        assert config.retries["total_max_attempts"] == 1
        assert sender._client.meta.endpoint_url == sns_endpoint.url
        # Observe what goes on the wire (moto keeps no SMS attributes).
        events = sender._client.meta.events
        events.register("provide-client-params.sns.Publish", lambda params, **_: sent.append(params))
        assert sender.send([outbound(1)])[0].status == "sent"
    assert sent[0]["PhoneNumber"] == phone(1)
    assert sent[0]["MessageAttributes"] == {
        "AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"},
        "AWS.SNS.SMS.SenderID": {"DataType": "String", "StringValue": "ACME"},
        "AWS.MM.SMS.OriginationNumber": {"DataType": "String", "StringValue": "+15555550100"},
    }
    with SnsSmsSender(sns_endpoint.conn_id) as sender:
        assert sender.attributes == {"AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Promotional"}}


def test_opted_out_number_is_not_published(sns_endpoint: MotoEndpoint) -> None:
    messages = [outbound(1), outbound(2, "+44 7420 500600"), outbound(3)]
    with SnsSmsSender(sns_endpoint.conn_id) as sender:
        assert OPTED_OUT in sender.opted_out
        outcomes = sender.send(messages)
    assert [(o.status, o.reason) for o in outcomes] == [
        ("sent", None), ("failed", "provider_opted_out"), ("sent", None)
    ]
    assert OPTED_OUT not in {m["phone_number"] for m in sns_endpoint.sms_messages()}
    # The list is read when a batch opens: once opted back in, the next batch sends.
    sns_endpoint.client("sns").opt_in_phone_number(phoneNumber=OPTED_OUT)
    with SnsSmsSender(sns_endpoint.conn_id) as sender:
        assert sender.send([outbound(2, OPTED_OUT)])[0].status == "sent"


def test_invalid_number_fails_and_the_others_are_sent(sns_endpoint: MotoEndpoint) -> None:
    with SnsSmsSender(sns_endpoint.conn_id) as sender:
        outcomes = sender.send([outbound(1), outbound(2, "+0612"), outbound(3)])
    assert [o.status for o in outcomes] == ["sent", "failed", "sent"]
    assert outcomes[1].reason == "invalid_phone_number"
    assert "E164" in outcomes[1].error
    assert len(sns_endpoint.sms_messages()) == 2


def test_throttled_publish_is_retried_and_sent_once(sns_proxy: SnsProxy, sns_endpoint: MotoEndpoint) -> None:
    sns_proxy.throttle_publishes = 2
    with SnsSmsSender(sns_proxy.conn_id, max_workers=1, attempts=3, backoff=0.01) as sender:
        outcomes = sender.send([outbound(1)])
    assert outcomes[0].status == "sent"
    assert len(sns_proxy.actions("Publish")) == 3
    assert len(sns_endpoint.sms_messages()) == 1


def test_throttling_past_the_attempts_is_retry(sns_proxy: SnsProxy, sns_endpoint: MotoEndpoint) -> None:
    sns_proxy.throttle_publishes = 5
    with SnsSmsSender(sns_proxy.conn_id, max_workers=1, attempts=2, backoff=0.01) as sender:
        outcomes = sender.send([outbound(1)])
    assert (outcomes[0].status, outcomes[0].reason) == ("retry", "throttled")
    assert sns_endpoint.sms_messages() == []


def test_lost_response_is_uncertain_and_not_resent(sns_proxy: SnsProxy, sns_endpoint: MotoEndpoint) -> None:
    sns_proxy.hold_publish = True
    with SnsSmsSender(sns_proxy.conn_id, attempts=3, backoff=0.01) as sender:
        outcomes = sender.send([outbound(1)])
    assert (outcomes[0].status, outcomes[0].reason) == ("uncertain", "response_lost")
    publishes = sns_proxy.actions("Publish")
    assert len(publishes) == 1  # neither botocore nor the hook sent it a second time
    assert "amz-sdk-request: attempt=1" in publishes[0][1]  # botocore made one attempt


def test_opt_out_list_is_read_in_pages(sns_proxy: SnsProxy) -> None:
    sns_proxy.opt_out_pages = [["+15555550100", "+15555550101"], ["15555550102"], ["+33 6 12 34 56 78"]]
    with SnsSmsSender(sns_proxy.conn_id) as sender:
        assert sender.opted_out == {"+15555550100", "+15555550101", "+15555550102", "+33612345678"}
    tokens = [r[2].get("nextToken") for r in sns_proxy.actions("ListPhoneNumbersOptedOut")]
    assert tokens == [None, ["1"], ["2"]]


def _aws_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, url: str) -> None:
    extra = {"region_name": "us-east-1", "endpoint_url": url, "config_kwargs": {"connect_timeout": 1}}
    conn = {"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def test_unreadable_opt_out_list_stops_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _aws_conn(monkeypatch, "aws_down", f"http://127.0.0.1:{port}")
    sender = SnsSmsSender("aws_down", attempts=2, backoff=0.01)
    with pytest.raises(TransientSendError, match="opt-out list"):
        sender.open()
    assert sender._client is None and sender._pool is None  # closed again


def test_sync_opt_outs_updates_consent(store, sns_endpoint: MotoEndpoint) -> None:
    add_profiles(
        store,
        [
            {"profile_id": 1, "phone": "+44 7420 500600", "consent": {"sms": "opted_in", "email": "opted_in"}},
            {"profile_id": 2, "phone": "+447420505401"},  # no consent row yet
            {"profile_id": 3, "phone": "+447632960543", "consent": {"sms": "opted_out"}},  # already out
            {"profile_id": 4, "phone": "+33612345678", "consent": {"sms": "opted_in"}},  # not on the list
            {"profile_id": 5, "phone": "(+44) 7700-900149", "consent": {"email": "opted_in"}},
            {"profile_id": 6, "phone": None},
        ],
    )
    assert sync_opt_outs(store, SnsHook(aws_conn_id=sns_endpoint.conn_id)) == 3
    rows = dict(store.execute("SELECT profile_id, status || ':' || source FROM crm.consent WHERE channel = 'sms'"))
    assert rows == {
        1: "opted_out:sns_opt_out",
        2: "opted_out:sns_opt_out",
        3: "opted_out:test",
        4: "opted_in:test",
        5: "opted_out:sns_opt_out",
    }
    email = store.execute("SELECT count(*) FROM crm.consent WHERE channel = 'email' AND status = 'opted_in'")
    assert email.fetchone()[0] == 2
    history = store.execute(
        "SELECT profile_id FROM crm.consent_history WHERE source = 'sns_opt_out' ORDER BY profile_id"
    ).fetchall()
    assert [p for (p,) in history] == [1, 2, 5]
    # Idempotent: nothing changes the second time, and a plain boto3 client works too.
    assert sync_opt_outs(store, sns_endpoint.client("sns")) == 0


def test_throughput_of_2000_sms(sns_endpoint: MotoEndpoint) -> None:
    messages = [outbound(i) for i in range(2000)]
    with SnsSmsSender(sns_endpoint.conn_id, max_workers=8) as sender:
        started = time.perf_counter()
        outcomes = [o for chunk in range(0, 2000, 100) for o in sender.send(messages[chunk : chunk + 100])]
        elapsed = time.perf_counter() - started
    assert Counter(o.status for o in outcomes) == Counter({"sent": 2000})
    assert len({m["message_id"] for m in sns_endpoint.sms_messages()}) == 2000
    log.warning("2000 SMS published to moto in %.2fs: %.0f messages/s", elapsed, 2000 / elapsed)
    print(f"\n2000 SMS published to moto in {elapsed:.2f}s: {2000 / elapsed:.0f} messages/s")


# --- Through the ledger: templates, targeting, BatchSender, campaign.message.units ---------------


def test_batch_send_records_segments(store, tmp_path, sns_endpoint: MotoEndpoint) -> None:
    from types import SimpleNamespace

    from campaign_orchestrator.channels.sms import build_sms_channel
    from campaign_orchestrator.config.campaign import CampaignConfig
    from campaign_orchestrator.paths import ProjectPaths
    from campaign_orchestrator.run.audience import evaluate_audience
    from campaign_orchestrator.run.runs import register_run
    from campaign_orchestrator.run.send import Batch, BatchSender
    from campaign_orchestrator.run.targeting import plan_batches, target_step
    from campaign_orchestrator.store.connect import store_connection

    paths = ProjectPaths(tmp_path)
    (paths.sql / "audiences").mkdir(parents=True)
    (paths.sql / "audiences" / "all.sql").write_text("SELECT profile_id FROM crm.profile")
    (paths.templates / "promo").mkdir(parents=True)
    (paths.templates / "promo" / "sms.txt").write_text("Hi {{ profile.first_name }}! {{ profile.last_name }}\n")
    names = {1: "a" * 10, 2: "a" * 200, 3: "é" * 460, 4: "😀" * 40, 5: "x"}
    add_profiles(
        store,
        [{"profile_id": i, "phone": phone(i), "first_name": f"P{i}", "last_name": tail, "consent": {"sms": "opted_in"}}
         for i, tail in names.items()]
        + [{"profile_id": 6, "phone": OPTED_OUT, "first_name": "Out", "consent": {"sms": "opted_in"}}],
    )
    config = CampaignConfig.model_validate(
        {
            "id": "sms_promo",
            "schedule": "manual",
            "valid": {"start": "2026-01-01"},
            "audience": {"sql": "audiences/all.sql"},
            "steps": [{"id": "text", "channel": "sms", "template": "promo", "max_segments": 3,
                       "connection_id": sns_endpoint.conn_id}],
        }
    )
    step = config.steps[0]
    run_key = register_run(store, config.id, "run_1", None, {})
    evaluate_audience(store, run_key, paths.sql / config.audience.sql, {}, None)
    result = target_step(store, run_key, config, step)
    renderer, open_sender = build_sms_channel(step, SimpleNamespace(id=config.id, description=""), run_key, paths)
    for batch in plan_batches(result.sendable, config.batch_size):
        BatchSender(store_connection, run_key, step, renderer, open_sender, chunk_size=4).run(Batch.from_xcom(batch))

    ledger = {
        pid: (status, reason, units)
        for pid, status, reason, units in store.execute(
            "SELECT profile_id, status, reason, units FROM campaign.message WHERE run_key = %s", (run_key,)
        )
    }
    assert ledger[1] == ("sent", None, 1)
    assert ledger[2] == ("sent", None, 2)  # 215 GSM-7 characters
    assert ledger[3][:2] == ("failed", "too_many_segments")  # 'é' is GSM-7: 467 septets need 4 parts
    assert ledger[4] == ("sent", None, 2)  # 80 UCS-2 units + "Hi P4! " = 87
    assert ledger[5] == ("sent", None, 1)
    assert ledger[6][:2] == ("failed", "provider_opted_out")
    published = Counter(m["phone_number"] for m in sns_endpoint.sms_messages())
    assert published == Counter({phone(i): 1 for i in (1, 2, 4, 5)})


def test_a_batch_backs_off_when_throttled_and_sends_just_those_messages(
    store, sns_proxy: SnsProxy, sns_endpoint: MotoEndpoint, tmp_path, caplog
) -> None:
    """Throttling inside a batch: the batch waits and resends only the throttled messages."""
    from campaign_orchestrator.channels.sms import build_sms_channel
    from campaign_orchestrator.config.campaign import CampaignConfig
    from campaign_orchestrator.paths import ProjectPaths
    from campaign_orchestrator.run.audience import evaluate_audience
    from campaign_orchestrator.run.runs import register_run
    from campaign_orchestrator.run.send import Batch, BatchSender, SendPolicy
    from campaign_orchestrator.run.targeting import plan_batches, target_step
    from campaign_orchestrator.store.connect import store_connection
    from tests.fixtures.store import add_profiles

    paths = ProjectPaths(tmp_path)
    (paths.sql / "a").mkdir(parents=True)
    (paths.sql / "a" / "all.sql").write_text("SELECT profile_id FROM crm.profile")
    (paths.templates / "t").mkdir(parents=True)
    (paths.templates / "t" / "sms.txt").write_text("Hi {{ profile.first_name }}")
    add_profiles(store, [{"profile_id": i, "phone": f"+3361234{i:04d}", "first_name": "Ann",
                          "consent": {"sms": "opted_in"}} for i in range(1, 31)])
    config = CampaignConfig.model_validate({
        "id": "throttled", "schedule": "manual", "valid": {"start": "2026-01-01"},
        "audience": {"sql": "a/all.sql"},
        "steps": [{"id": "sms", "channel": "sms", "template": "t", "connection_id": sns_proxy.conn_id}],
    })
    step = config.steps[0]
    run_key = register_run(store, config.id, "r", None, {})
    evaluate_audience(store, run_key, paths.sql / "a" / "all.sql", {}, None)
    sendable = target_step(store, run_key, config, step).sendable
    (batch,) = [Batch.from_xcom(b) for b in plan_batches(sendable, 100)]
    renderer, open_sender = build_sms_channel(step, config, run_key, paths)
    sns_proxy.throttle_publishes = 60  # more than the hook's own quick retries absorb
    caplog.set_level(logging.WARNING, logger="campaign_orchestrator.run.send")
    stats = BatchSender(store_connection, run_key, step, renderer, open_sender, chunk_size=10,
                        policy=SendPolicy(backoff_base_s=0.05)).run(batch)
    assert stats.sent == 30 and stats.failed == 0
    assert "throttled by the provider; backing off" in caplog.text
    numbers = Counter(m["phone_number"] for m in sns_endpoint.sms_messages())
    assert len(numbers) == 30 and max(numbers.values()) == 1
