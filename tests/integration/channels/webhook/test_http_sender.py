"""WebhookSender against a real HTTP server on 127.0.0.1, through the http provider's hook.

The receiver is a ThreadingHTTPServer that records every request (before answering) and
answers per idempotency key as a test tells it: status, headers, a delay. Nothing in the
send path is mocked.
"""

from __future__ import annotations

import json
import socket
import time
from collections import Counter

import pytest

from campaign_orchestrator.channels.base import Outbound, Recipient
from campaign_orchestrator.channels.webhook.http import (
    SIGNATURE_HEADER,
    WebhookConfigError,
    WebhookSender,
    batch_key,
    encode_body,
    sign,
    verify_signature,
)
from campaign_orchestrator.channels.webhook.render import webhook_message_id
from tests.fixtures.webhook import SECRET, Receiver, conn_json

pytestmark = pytest.mark.integration

ENDPOINT = "/hooks/campaign"


def message(i: int) -> Outbound:
    mid = webhook_message_id(7, "notify", i, "")
    payload = {"event": "campaign.message", "profile_id": i, "name": f'Zoë "{i}"\n'}
    return Outbound(Recipient(i, "", str(i), {}), payload, mid)


def sender(mode: str = "per_message", conn_id: str = "webhook_test", **kwargs) -> WebhookSender:
    return WebhookSender(conn_id, ENDPOINT, "spring", mode, **kwargs)


def test_every_message_arrives_once_signed_with_its_idempotency_key(receiver: Receiver) -> None:
    messages = [message(i) for i in range(1, 26)]
    with sender() as s:
        outcomes = s.send(messages[:10]) + s.send(messages[10:])
    assert [o.status for o in outcomes] == ["sent"] * 25
    assert receiver.keys() == Counter({m.message_id: 1 for m in messages})
    by_key = {r.headers["Idempotency-Key"]: r for r in receiver.requests}
    for m, outcome in zip(messages, outcomes):
        got = by_key[m.message_id]
        assert got.path == ENDPOINT
        assert got.body == encode_body(m.payload) and json.loads(got.body) == m.payload
        assert verify_signature(SECRET, got.headers[SIGNATURE_HEADER], got.body)
        assert got.headers["Content-Type"] == "application/json"
        assert got.headers["X-Campaign-Id"] == "spring"
        # The password signs; it never travels, not even as Basic auth with the login.
        assert "Authorization" not in got.headers
        assert SECRET not in json.dumps(got.headers)
        assert outcome.provider_message_id is not None and outcome.provider_message_id.startswith("evt-")
    # One HTTP session (one kept-alive connection) for the whole batch.
    assert len({r.client_port for r in receiver.requests}) == 1


def test_per_batch_posts_the_chunk_once(receiver: Receiver) -> None:
    messages = [message(i) for i in range(1, 11)]
    with sender("per_batch") as s:
        outcomes = s.send(messages)
    assert [o.status for o in outcomes] == ["sent"] * 10
    assert len({o.provider_message_id for o in outcomes}) == 1
    [got] = receiver.requests
    assert got.headers["Idempotency-Key"] == batch_key([m.message_id for m in messages])
    assert batch_key([m.message_id for m in reversed(messages)]) == got.headers["Idempotency-Key"]
    assert verify_signature(SECRET, got.headers[SIGNATURE_HEADER], got.body)
    items = json.loads(got.body)["messages"]
    assert [item["idempotency_key"] for item in items] == [m.message_id for m in messages]
    assert [item["payload"] for item in items] == [m.payload for m in messages]


def test_per_batch_failure_applies_to_the_whole_chunk(receiver: Receiver) -> None:
    messages = [message(i) for i in range(1, 4)]
    receiver.replies[batch_key([m.message_id for m in messages])] = (503, {"Retry-After": "10"}, b"maintenance")
    with sender("per_batch") as s:
        outcomes = s.send(messages)
    assert {(o.status, o.reason) for o in outcomes} == {("retry", "unavailable")}
    assert "Retry-After 10s" in outcomes[0].error


@pytest.mark.parametrize(
    ("status", "headers", "expected", "reason", "stops"),
    [
        (500, {}, "retry", "server_error", False),
        (502, {}, "retry", "server_error", False),
        (408, {}, "retry", "timeout", False),
        (400, {}, "failed", "rejected", False),
        (422, {}, "failed", "rejected", False),
        (429, {"Retry-After": "30"}, "retry", "throttled", True),
        (401, {}, "retry", "unauthorized", True),
        (302, {"Location": "http://127.0.0.1:1/elsewhere"}, "retry", "redirected", True),
    ],
)
def test_replies_map_to_outcomes(receiver: Receiver, status, headers, expected, reason, stops) -> None:
    messages = [message(i) for i in range(1, 5)]
    receiver.replies[messages[1].message_id] = (status, headers, b'{"error": "nope"}')
    with sender() as s:
        outcomes = s.send(messages)
    assert outcomes[0].status == "sent"
    assert (outcomes[1].status, outcomes[1].reason) == (expected, reason)
    assert str(status) in outcomes[1].error
    if stops:
        # The receiver said "wait" (or is misconfigured): the rest of the call is not attempted.
        assert [(o.status, o.reason) for o in outcomes[2:]] == [("retry", reason)] * 2
        assert len(receiver.requests) == 2
    else:
        assert [o.status for o in outcomes[2:]] == ["sent", "sent"]
        assert len(receiver.requests) == 4
    if status == 429:
        assert "Retry-After 30s" in outcomes[1].error
    if status == 302:
        assert all(r.path == ENDPOINT for r in receiver.requests)  # the redirect was not followed


def test_a_retried_message_keeps_its_key(receiver: Receiver) -> None:
    m = message(1)
    receiver.replies[m.message_id] = (500, {}, b"")
    with sender() as s:
        assert s.send([m])[0].status == "retry"
    del receiver.replies[m.message_id]
    with sender() as s:
        assert s.send([m])[0].status == "sent"
    assert [r.headers["Idempotency-Key"] for r in receiver.requests] == [m.message_id] * 2


def test_reply_lost_to_a_read_timeout_is_uncertain(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_WEBHOOK_SLOW", conn_json(receiver.port, timeout=[5, 0.5]))
    messages = [message(i) for i in range(1, 4)]
    receiver.delays[messages[0].message_id] = 2.0
    started = time.monotonic()
    with sender(conn_id="webhook_slow") as s:
        outcomes = s.send(messages)
    assert time.monotonic() - started < 2.0  # the connection's extra timeout, not the default 30 s
    assert (outcomes[0].status, outcomes[0].reason) == ("uncertain", "timeout_after_send")
    # The receiver did get it: exactly why it must not be counted as not sent.
    assert receiver.keys()[messages[0].message_id] == 1
    assert [o.status for o in outcomes[1:]] == ["sent", "sent"]


def test_nothing_listening_is_retry_for_the_whole_call(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AIRFLOW_CONN_WEBHOOK_DOWN", conn_json(port))
    with sender(conn_id="webhook_down") as s:
        outcomes = s.send([message(i) for i in range(1, 4)])
    assert [(o.status, o.reason) for o in outcomes] == [("retry", "connection_failed")] * 3
    assert "not attempted" in outcomes[1].error


def test_a_connection_without_secret_fails_before_sending(receiver: Receiver, monkeypatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_WEBHOOK_NOSECRET",
        json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": receiver.port, "schema": "http"}),
    )
    with pytest.raises(WebhookConfigError, match="no password"), sender(conn_id="webhook_nosecret") as s:
        s.send([message(1)])
    assert receiver.requests == []


def test_forged_or_stale_signatures_fail_verification() -> None:
    body = encode_body({"profile_id": 1})
    now = time.time()
    header = sign(SECRET, body)
    assert verify_signature(SECRET, header, body)
    assert verify_signature(SECRET.encode(), header, body.decode())  # str/bytes either way
    assert not verify_signature("another-secret", header, body)
    assert not verify_signature(SECRET, sign("another-secret", body), body)
    assert not verify_signature(SECRET, header, encode_body({"profile_id": 2}))
    assert not verify_signature(SECRET, header.replace("v1=", "v1=0"), body)
    stale = sign(SECRET, body, timestamp=int(now) - 301)
    assert not verify_signature(SECRET, stale, body)
    assert verify_signature(SECRET, stale, body, tolerance_s=600)
    for malformed in ("", None, "garbage", "t=abc,v1=00", f"v1={header.split('v1=')[1]}", "t=1"):
        assert not verify_signature(SECRET, malformed, body)
    # During a secret rotation the sender may send one v1 per secret.
    rotated = f"{header},v1={sign('old-secret', body, int(header[2:].split(',')[0])).split('v1=')[1]}"
    assert verify_signature(SECRET, rotated, body) and verify_signature("old-secret", rotated, body)
