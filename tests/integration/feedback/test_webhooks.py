"""SendGrid, Mailgun and Postmark webhooks over the real app and a real store: each
provider's signature or credentials checked as the provider makes them (ECDSA P-256 signed
here with a key of our own; HMAC-SHA256 with a signing key; HTTP Basic), payloads in the
providers' documented shapes, forged, stale, replayed and malformed requests refused
without touching the store. Nothing in the path is mocked."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from campaign_orchestrator.feedback.webhooks.app import create_app, standalone_app
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from tests.fixtures.store import sent_emails

pytestmark = pytest.mark.integration

PRIVATE_KEY = ec.generate_private_key(ec.SECP256R1())
PUBLIC_KEY = base64.b64encode(PRIVATE_KEY.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()  # as SendGrid shows it
MAILGUN_KEY = "mailgun-signing-key-0123456789abcdef"
POSTMARK_USER, POSTMARK_PASSWORD = "postmark", "postmark-hook-password-0123"
PREFIX = "/campaigns-feedback/"


@pytest.fixture
def ledger(store: psycopg.Connection) -> dict[int, dict[str, Any]]:
    """A step sent through a relay to profiles 1-9: {profile_id: {address, message_id, run_key}}."""
    store.execute("TRUNCATE campaign.delivery_event, campaign.webhook_token")
    return sent_emails(store, range(1, 10))


@pytest.fixture
def client(store: psycopg.Connection, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("AIRFLOW_CONN_CAMPAIGN_WEBHOOKS", json.dumps({"conn_type": "generic", "extra": {
        "sendgrid_public_key": PUBLIC_KEY, "mailgun_signing_secret": MAILGUN_KEY,
        "postmark_user": POSTMARK_USER, "postmark_password": POSTMARK_PASSWORD,
    }}))
    with TestClient(standalone_app()) as client:
        yield client


def stored(store: psycopg.Connection) -> dict[tuple[int | None, str], tuple]:
    rows = store.execute(
        "SELECT profile_id, event_type, bounce_type, provider_event_id, detail FROM campaign.delivery_event"
    ).fetchall()
    return {(r[0], r[1]): r[2:] for r in rows}


def suppressions(store: psycopg.Connection) -> dict[str, tuple[str, str]]:
    rows = store.execute("SELECT address, reason, source FROM crm.suppression WHERE channel = 'email'").fetchall()
    return {a: (reason, source) for a, reason, source in rows}


def count(store: psycopg.Connection) -> int:
    return store.execute("SELECT count(*) FROM campaign.delivery_event").fetchone()[0]


# ---------------------------------------------------------------------------------------------
# SendGrid
# ---------------------------------------------------------------------------------------------


def sendgrid_post(client: TestClient, events: Any, *, stamp: int | None = None, key=PRIVATE_KEY,
                  body: bytes | None = None, headers: dict | None = None):
    body = body if body is not None else json.dumps(events).encode()
    stamp_text = str(int(time.time()) if stamp is None else stamp)
    signature = base64.b64encode(key.sign(stamp_text.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    sent_headers = {"Content-Type": "application/json", "X-Twilio-Email-Event-Webhook-Signature": signature,
                    "X-Twilio-Email-Event-Webhook-Timestamp": stamp_text}
    if headers is not None:
        sent_headers = headers
    return client.post(PREFIX + "sendgrid", content=body, headers=sent_headers)


def sendgrid_event(kind: str, row: dict, **fields: Any) -> dict:
    # The shape of the Event Webhook reference's examples; the custom argument is top-level.
    return {"email": row["address"], "timestamp": 1_764_000_000, "smtp-id": row["message_id"], "event": kind,
            "category": ["winter_sale"], "sg_event_id": secrets.token_urlsafe(16),
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
            "campaign_message_id": row["message_id"], **fields}


def test_sendgrid_events_are_stored_linked_and_suppress(client: TestClient, store: psycopg.Connection,
                                                        ledger: dict) -> None:
    batch = [
        sendgrid_event("processed", ledger[1]),
        sendgrid_event("delivered", ledger[1], response="250 OK"),
        sendgrid_event("open", ledger[1], useragent="Mozilla/5.0", ip="192.0.2.1"),
        sendgrid_event("click", ledger[1], url="https://wanderly.example/sale"),
        sendgrid_event("bounce", ledger[2], type="bounce", status="5.1.1",
                       reason="550 5.1.1 The email account that you tried to reach does not exist"),
        sendgrid_event("bounce", ledger[3], type="blocked", status="5.7.1", reason="554 5.7.1 blocked"),
        sendgrid_event("deferred", ledger[4], response="400 try again later", attempt="5"),
        sendgrid_event("spamreport", ledger[5]),
        sendgrid_event("dropped", ledger[6], reason="Bounced Address"),
        # Without the custom argument (sent before it existed): matched by smtp-id, our Message-ID.
        {k: v for k, v in sendgrid_event("delivered", ledger[7]).items() if k != "campaign_message_id"},
    ]
    response = sendgrid_post(client, batch)
    assert response.status_code == 200, response.text
    assert response.json() == {"events": 8, "acknowledged": 2, "stored": 8, "duplicates": 0}
    got = stored(store)
    assert set(got) == {(1, "delivered"), (1, "opened"), (1, "clicked"), (2, "bounced"), (3, "bounced"),
                        (5, "complained"), (6, "rejected"), (7, "delivered")}
    assert got[(2, "bounced")][0] == "Permanent" and got[(3, "bounced")][0] == "Transient"
    assert got[(1, "clicked")][2]["url"] == "https://wanderly.example/sale"
    assert got[(1, "delivered")][1] == f"sendgrid:{batch[1]['sg_event_id']}"
    assert suppressions(store) == {ledger[2]["address"]: ("hard_bounce", "sendgrid_webhook"),
                                   ledger[5]["address"]: ("complaint", "sendgrid_webhook")}
    # SendGrid retries a batch it got no 2xx for: the same events again add nothing.
    again = sendgrid_post(client, batch)
    assert again.json()["stored"] == 0 and again.json()["duplicates"] == 8
    assert count(store) == 8


def test_sendgrid_refuses_unsigned_forged_and_stale_requests(client: TestClient, store: psycopg.Connection,
                                                             ledger: dict) -> None:
    batch = [sendgrid_event("bounce", ledger[2], type="bounce", status="5.1.1")]
    assert sendgrid_post(client, batch, headers={"Content-Type": "application/json"}).status_code == 401
    assert sendgrid_post(client, batch, key=ec.generate_private_key(ec.SECP256R1())).status_code == 403
    assert sendgrid_post(client, batch, stamp=int(time.time()) - 3600).status_code == 403
    # A signature over other content: the body was altered on the way.
    good = sendgrid_post(client, [sendgrid_event("delivered", ledger[2])])
    assert good.status_code == 200
    headers = {"Content-Type": "application/json", "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(
        PRIVATE_KEY.sign(b"1" + b"[]", ec.ECDSA(hashes.SHA256()))).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": str(int(time.time()))}
    assert sendgrid_post(client, batch, headers=headers).status_code == 403
    assert sendgrid_post(client, batch, headers={**headers, "X-Twilio-Email-Event-Webhook-Signature": "%%%"}
                         ).status_code == 403
    assert set(stored(store)) == {(2, "delivered")} and suppressions(store) == {}


@pytest.mark.parametrize("body", [b"not json", b'{"event": "bounce"}', json.dumps([{"event": "bounce"}]).encode(),
                                  json.dumps([{"event": "open", "email": "a@b.c", "timestamp": "soon"}]).encode(),
                                  json.dumps([[1, 2]]).encode()])
def test_sendgrid_malformed_signed_payloads_are_400(client: TestClient, store: psycopg.Connection, body: bytes,
                                                    ledger: dict) -> None:
    response = sendgrid_post(client, None, body=body)
    assert response.status_code == 400 and "malformed" in response.json()["error"]
    assert count(store) == 0


# ---------------------------------------------------------------------------------------------
# Mailgun
# ---------------------------------------------------------------------------------------------


def mailgun_body(event_data: dict, *, key: str = MAILGUN_KEY, stamp: int | None = None,
                 token: str | None = None) -> dict:
    stamp_text = str(int(time.time()) if stamp is None else stamp)
    token = token or secrets.token_hex(25)
    signature = hmac.new(key.encode(), (stamp_text + token).encode(), hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": stamp_text, "token": token, "signature": signature}, "event-data": event_data}


def mailgun_event(kind: str, row: dict, **fields: Any) -> dict:
    # The shape of Mailgun's webhook examples; user variables come from X-Mailgun-Variables.
    return {"event": kind, "id": secrets.token_urlsafe(16), "timestamp": 1_764_000_000.375624, "log-level": "info",
            "recipient": row["address"], "recipient-domain": "example.com", "tags": ["winter_sale"],
            "message": {"headers": {"to": row["address"], "message-id": row["message_id"].strip("<>"),
                                    "from": "offers@wanderly.example", "subject": "Winter sale"}},
            "user-variables": {"campaign_message_id": row["message_id"]}, **fields}


def test_mailgun_events_are_stored_and_replays_refused(client: TestClient, store: psycopg.Connection,
                                                       ledger: dict) -> None:
    hard = mailgun_body(mailgun_event("failed", ledger[2], severity="permanent", reason="bounce", **{
        "delivery-status": {"code": 550, "enhanced-code": "5.1.1", "message": "5.1.1 The email account does not exist",
                            "attempt-no": 1}}))
    posts = [
        mailgun_body(mailgun_event("delivered", ledger[1])),
        hard,
        mailgun_body(mailgun_event("failed", ledger[3], severity="temporary", reason="generic",
                                   **{"delivery-status": {"code": 452, "message": "4.2.2 over quota"}})),
        mailgun_body(mailgun_event("failed", ledger[4], severity="permanent", reason="suppress-bounce",
                                   **{"delivery-status": {"code": 605, "description": "previously bounced"}})),
        mailgun_body(mailgun_event("complained", ledger[5])),
        mailgun_body(mailgun_event("clicked", ledger[6], url="https://wanderly.example/sale")),
        # No user variable: the Message-ID Mailgun saw, which is ours.
        mailgun_body({k: v for k, v in mailgun_event("opened", ledger[7]).items() if k != "user-variables"}),
    ]
    for body in posts:
        assert client.post(PREFIX + "mailgun", json=body).status_code == 200
    got = stored(store)
    assert set(got) == {(1, "delivered"), (2, "bounced"), (4, "rejected"), (5, "complained"), (6, "clicked"),
                        (7, "opened")}
    assert got[(2, "bounced")][0] == "Permanent" and got[(2, "bounced")][2]["enhanced_code"] == "5.1.1"
    assert suppressions(store) == {ledger[2]["address"]: ("hard_bounce", "mailgun_webhook"),
                                   ledger[5]["address"]: ("complaint", "mailgun_webhook")}
    # The same signed request again: its token was used, refused, nothing added.
    replay = client.post(PREFIX + "mailgun", json=hard)
    assert replay.status_code == 403 and "replayed" in replay.json()["error"]
    assert count(store) == 6


def test_mailgun_refuses_unsigned_forged_and_stale_requests(client: TestClient, store: psycopg.Connection,
                                                            ledger: dict) -> None:
    event = mailgun_event("complained", ledger[5])
    assert client.post(PREFIX + "mailgun", json={"event-data": event}).status_code == 401
    assert client.post(PREFIX + "mailgun", json=mailgun_body(event, key="an-attackers-key-0123456789")).status_code == 403
    assert client.post(PREFIX + "mailgun", json=mailgun_body(event, stamp=int(time.time()) - 7200)).status_code == 403
    tampered = mailgun_body(event)
    tampered["signature"]["token"] = "another-token"
    assert client.post(PREFIX + "mailgun", json=tampered).status_code == 403
    assert count(store) == 0 and suppressions(store) == {}
    assert store.execute("SELECT count(*) FROM campaign.webhook_token").fetchone()[0] == 0


@pytest.mark.parametrize("event_data", [None, {"event": "delivered"}, {"event": "clicked", "recipient": "a@b.c",
                                        "id": "x", "timestamp": 1, "message": []}])
def test_mailgun_malformed_signed_payloads_are_400(client: TestClient, store: psycopg.Connection,
                                                   event_data: Any) -> None:
    response = client.post(PREFIX + "mailgun", json=mailgun_body(event_data))
    assert response.status_code == 400
    assert client.post(PREFIX + "mailgun", content=b"{not json").status_code == 400
    assert count(store) == 0


# ---------------------------------------------------------------------------------------------
# Postmark
# ---------------------------------------------------------------------------------------------


def postmark_auth(user: str = POSTMARK_USER, password: str = POSTMARK_PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def postmark_record(record: str, row: dict, **fields: Any) -> dict:
    # The shapes of Postmark's webhook docs; Metadata comes from X-PM-Metadata-* headers.
    base = {"RecordType": record, "MessageStream": "broadcast", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
            "Metadata": {"campaign_message_id": row["message_id"]}, "Tag": "winter_sale"}
    times = {"Delivery": {"DeliveredAt": "2026-11-20T16:33:54.9070259Z", "Recipient": row["address"],
                          "Details": "Test delivery webhook details"},
             "Bounce": {"ID": 4323372036854775807, "BouncedAt": "2026-11-20T16:33:54.9070259Z", "Email": row["address"],
                        "Description": "The server was unable to deliver your message", "Details": "smtp;550 5.1.1",
                        "Inactive": True, "CanActivate": True},
             "SpamComplaint": {"ID": 42, "Type": "SpamComplaint", "TypeCode": 100001, "BouncedAt": "2026-11-20T17:00:00Z",
                               "Email": row["address"]},
             "Open": {"ReceivedAt": "2026-11-20T18:00:00.5-05:00", "Recipient": row["address"], "FirstOpen": True,
                      "UserAgent": "Mozilla/5.0"},
             "Click": {"ReceivedAt": "2026-11-20T18:00:09Z", "Recipient": row["address"],
                       "OriginalLink": "https://wanderly.example/sale", "ClickLocation": "HTML"}}
    return {**base, **times[record], **fields}


def test_postmark_records_are_stored_behind_basic_auth(client: TestClient, store: psycopg.Connection,
                                                       ledger: dict) -> None:
    records = [
        postmark_record("Delivery", ledger[1]),
        postmark_record("Bounce", ledger[2], Type="HardBounce", TypeCode=1),
        postmark_record("Bounce", ledger[3], ID=77, Type="SoftBounce", TypeCode=4096),
        postmark_record("Bounce", ledger[4], ID=78, Type="Transient", TypeCode=2),  # a delay: no outcome yet
        postmark_record("SpamComplaint", ledger[5]),
        postmark_record("Open", ledger[6]),
        postmark_record("Click", ledger[6]),
        {"RecordType": "SubscriptionChange", "MessageID": "x", "Recipient": ledger[7]["address"]},
    ]
    for record in records:
        response = client.post(PREFIX + "postmark", json=record, headers=postmark_auth())
        assert response.status_code == 200, response.text
    got = stored(store)
    assert set(got) == {(1, "delivered"), (2, "bounced"), (3, "bounced"), (5, "complained"), (6, "opened"),
                        (6, "clicked")}
    assert (got[(2, "bounced")][0], got[(3, "bounced")][0]) == ("Permanent", "Transient")
    assert got[(2, "bounced")][1] == "postmark:bounce:4323372036854775807"
    assert suppressions(store) == {ledger[2]["address"]: ("hard_bounce", "postmark_webhook"),
                                   ledger[5]["address"]: ("complaint", "postmark_webhook")}
    assert client.post(PREFIX + "postmark", json=records[5], headers=postmark_auth()).json()["duplicates"] == 1


def test_postmark_refuses_missing_and_wrong_credentials(client: TestClient, store: psycopg.Connection,
                                                        ledger: dict) -> None:
    record = postmark_record("Bounce", ledger[2], Type="HardBounce")
    missing = client.post(PREFIX + "postmark", json=record)
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Basic")
    assert client.post(PREFIX + "postmark", json=record, headers=postmark_auth(password="wrong-password-000000")
                       ).status_code == 403
    assert client.post(PREFIX + "postmark", json=record, headers={"Authorization": "Basic %%%"}).status_code == 401
    assert client.post(PREFIX + "postmark", content=b"[1]", headers=postmark_auth()).status_code == 400
    assert count(store) == 0 and suppressions(store) == {}


def test_postmark_ip_allow_list_and_unconfigured_providers(store: psycopg.Connection, ledger: dict) -> None:
    from campaign_orchestrator.feedback.webhooks.settings import settings_from_extras

    only_postmark = settings_from_extras({"postmark_user": POSTMARK_USER, "postmark_password": POSTMARK_PASSWORD,
                                          "postmark_allowed_ips": ["3.134.147.250", "50.31.156.0/24"]})
    with TestClient(standalone_app(create_app(settings=lambda: only_postmark))) as client:
        record = postmark_record("Delivery", ledger[1])
        # The test client's address ("testclient") is not on the list.
        assert client.post(PREFIX + "postmark", json=record, headers=postmark_auth()).status_code == 403
        assert client.post(PREFIX + "sendgrid", json=[]).status_code == 404  # no key configured
        assert client.post(PREFIX + "pigeon", json=[]).status_code == 404
        assert client.get("/healthz").json() == {"status": "ok"}
    assert count(store) == 0


def test_store_outage_is_503_so_the_provider_retries(ledger: dict) -> None:
    from campaign_orchestrator.feedback.webhooks.settings import settings_from_extras

    def broken():
        raise psycopg.OperationalError("the store is down")

    settings = settings_from_extras({"mailgun_signing_secret": MAILGUN_KEY})
    with TestClient(standalone_app(create_app(settings=lambda: settings, connect=broken))) as client:
        response = client.post(PREFIX + "mailgun", json=mailgun_body(mailgun_event("delivered", ledger[1])))
    assert response.status_code == 503 and response.headers["retry-after"] == "60"


def test_airflow_api_server_mounts_the_webhooks_without_login(
    airflow_db, client: TestClient, store: psycopg.Connection, ledger: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.api_fastapi.app import create_app as airflow_app
    from airflow.api_fastapi.app import purge_cached_app

    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "webhooks-test-jwt-secret-0123456789")
    purge_cached_app()
    try:
        with TestClient(airflow_app(), base_url="http://localhost") as airflow:
            record = postmark_record("Bounce", ledger[2], Type="HardBounce")
            assert airflow.post(PREFIX + "postmark", json=record).status_code == 401  # the provider's auth, not Airflow's
            assert airflow.post(PREFIX + "postmark", json=record, headers=postmark_auth()).status_code == 200
    finally:
        purge_cached_app()
    assert suppressions(store) == {ledger[2]["address"]: ("hard_bounce", "postmark_webhook")}


def test_connections_are_reused_and_a_broken_one_is_not(client: TestClient, store: psycopg.Connection,
                                                         ledger: dict) -> None:
    def post(profile_id: int) -> int:
        record = postmark_record("Open", ledger[profile_id])
        return client.post(PREFIX + "postmark", json=record, headers=postmark_auth()).status_code

    def app_backends() -> set[int]:
        return {r[0] for r in store.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()}

    others = app_backends()  # the session's other connections to this database
    assert post(1) == 200
    first = app_backends() - others
    assert post(2) == 200 and post(3) == 200
    assert app_backends() - others == first and len(first) == 1  # one connection, kept between requests
    # The store restarts under the idle connection: that request fails retryably, the next works.
    store.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (list(first),))
    assert post(4) == 503
    assert post(4) == 200
    assert {k[0] for k in stored(store)} == {1, 2, 3, 4}


def test_standalone_server(store_dsn: str, store: psycopg.Connection, ledger: dict) -> None:
    """``python -m campaign_orchestrator.feedback.webhooks.app``: the same URLs, a real server."""
    import os
    import socket
    import subprocess
    import sys
    import urllib.error
    import urllib.request
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3] / "plugins"),
           "AIRFLOW_CONN_CAMPAIGN_WEBHOOKS": json.dumps({"conn_type": "generic", "extra": {
               "mailgun_signing_secret": MAILGUN_KEY}})}
    server = subprocess.Popen([sys.executable, "-m", "campaign_orchestrator.feedback.webhooks.app", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "the server did not start"
                time.sleep(0.2)
        body = json.dumps(mailgun_body(mailgun_event("complained", ledger[5]))).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}{PREFIX}mailgun", data=body,
                                         headers={"Content-Type": "application/json"})
        assert json.loads(urllib.request.urlopen(request, timeout=10).read())["stored"] == 1
        forged = urllib.request.Request(f"http://127.0.0.1:{port}{PREFIX}mailgun", data=json.dumps(
            mailgun_body(mailgun_event("complained", ledger[6]), key="wrong-key-0123456789abc")).encode())
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(forged, timeout=10)
        assert refused.value.code == 403
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert suppressions(store) == {ledger[5]["address"]: ("complaint", "mailgun_webhook")}


def test_an_event_for_a_message_we_do_not_know_is_kept_and_still_suppresses(
    client: TestClient, store: psycopg.Connection, ledger: dict
) -> None:
    """Like SES feedback for another sender on the account: stored without a ledger row."""
    record = postmark_record("Bounce", ledger[1], Type="HardBounce", Email="stranger@example.org")
    del record["Metadata"]  # sent by something else through the same Postmark server
    assert client.post(PREFIX + "postmark", json=record, headers=postmark_auth()).status_code == 200
    row = store.execute("SELECT provider_message_id, run_key FROM campaign.delivery_event").fetchone()
    assert row == ("883953f4-6105-42a2-a16a-77a8eac79483", None)
    assert suppressions(store) == {"stranger@example.org": ("hard_bounce", "postmark_webhook")}
