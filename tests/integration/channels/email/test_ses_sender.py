"""SesSender against SES as moto serves it over HTTP, through the amazon provider's hook."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
from collections.abc import Iterator

import pytest

from campaign_orchestrator.channels.base import Outbound, Recipient
from campaign_orchestrator.channels.email.mime import MimeBuilder
from campaign_orchestrator.channels.email.ses import SesSender
from tests.fixtures.aws import MotoEndpoint

pytestmark = pytest.mark.integration

BUILDER = MimeBuilder("Acme Travel <news@acme.example>")


def outbound(i: int) -> Outbound:
    recipient = Recipient(profile_id=i, entity_key="", address=f"user{i}@example.com", profile={})
    mid = f"<{i}@acme.example>"
    payload = BUILDER.build(
        to=recipient.address, subject=f"Offer {i} für dich", text=f"Hello {i}", html=f"<p>Hello {i}</p>", message_id=mid
    )
    return Outbound(recipient, payload, mid)


def test_each_message_is_sent_exactly_once_in_order(ses_endpoint: MotoEndpoint) -> None:
    ses_endpoint.client().verify_email_identity(EmailAddress="news@acme.example")
    messages = [outbound(i) for i in range(20)]
    with SesSender(BUILDER.envelope_from, ses_endpoint.conn_id, max_workers=4) as sender:
        outcomes = sender.send(messages[:12]) + sender.send(messages[12:])
    assert [o.status for o in outcomes] == ["sent"] * 20
    stored = {m["id"]: m for m in ses_endpoint.sent_raw_messages()}
    assert len(stored) == 20
    for message, outcome in zip(messages, outcomes):
        raw = stored[outcome.provider_message_id]
        assert raw["source"] == "news@acme.example"
        assert raw["destinations"][0] == message.recipient.address
        assert raw["raw_data"].encode() == message.payload
        parsed = email.message_from_bytes(raw["raw_data"].encode(), policy=email.policy.default)
        assert parsed["Message-ID"] == message.message_id
    # Exactly once: every payload appears once among everything moto accepted.
    payloads = [m["raw_data"] for m in ses_endpoint.sent_raw_messages()]
    assert sorted(payloads) == sorted(m.payload.decode() for m in messages)


def test_client_is_tuned_for_the_pool_and_never_retries_by_itself(ses_endpoint: MotoEndpoint) -> None:
    with SesSender(BUILDER.envelope_from, ses_endpoint.conn_id, max_workers=6) as sender:
        config = sender._client.meta.config
        assert config.max_pool_connections == 6
        assert config.retries["total_max_attempts"] == 1
        assert sender._client.meta.endpoint_url == ses_endpoint.url
        assert sender._client.meta.region_name == "us-east-1"


def test_unverified_sender_is_rejected(ses_endpoint: MotoEndpoint) -> None:
    with SesSender(BUILDER.envelope_from, ses_endpoint.conn_id) as sender:
        outcomes = sender.send([outbound(1), outbound(2)])
    assert [(o.status, o.reason) for o in outcomes] == [("failed", "rejected")] * 2
    assert "MessageRejected" in outcomes[0].error
    assert ses_endpoint.sent_raw_messages() == []


def test_invalid_recipient_fails_before_calling_ses(ses_endpoint: MotoEndpoint) -> None:
    ses_endpoint.client().verify_email_identity(EmailAddress="news@acme.example")
    bad = Outbound(Recipient(1, "", "not an address", {}), b"x", "<1@acme.example>")
    with SesSender(BUILDER.envelope_from, ses_endpoint.conn_id) as sender:
        outcomes = sender.send([bad, outbound(2)])
    assert [o.status for o in outcomes] == ["failed", "sent"]
    assert outcomes[0].reason == "invalid_address"


def _aws_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, url: str, **config_kwargs) -> None:
    extra = {"region_name": "us-east-1", "endpoint_url": url, "config_kwargs": config_kwargs}
    conn = {"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def test_unreachable_endpoint_is_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _aws_conn(monkeypatch, "aws_down", f"http://127.0.0.1:{port}", connect_timeout=1)
    with SesSender("news@acme.example", "aws_down", attempts=2, backoff=0.01) as sender:
        outcomes = sender.send([outbound(1)])
    assert (outcomes[0].status, outcomes[0].reason) == ("retry", "connection_error")


@pytest.fixture
def silent_server() -> Iterator[tuple[str, list[bytes]]]:
    """An HTTP endpoint that reads each request and never answers: a lost response."""
    server = socket.create_server(("127.0.0.1", 0))
    requests: list[bytes] = []
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            held.append(conn)
            conn.settimeout(0.3)
            data = b""
            try:
                while chunk := conn.recv(65536):
                    data += chunk
            except TimeoutError:
                pass  # the whole request is in; the client now waits for an answer
            requests.append(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", requests
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_lost_response_is_uncertain_and_not_resent(
    monkeypatch: pytest.MonkeyPatch, silent_server: tuple[str, list[bytes]]
) -> None:
    url, requests = silent_server
    _aws_conn(monkeypatch, "aws_silent", url, read_timeout=1, connect_timeout=2)
    with SesSender("news@acme.example", "aws_silent", attempts=3, backoff=0.01) as sender:
        outcomes = sender.send([outbound(1)])
    assert (outcomes[0].status, outcomes[0].reason) == ("uncertain", "response_lost")
    assert len(requests) == 1  # neither botocore nor the hook sent it a second time
    assert b"Action=SendRawEmail" in requests[0]
    assert b"amz-sdk-request: attempt=1" in requests[0]  # botocore made one attempt
