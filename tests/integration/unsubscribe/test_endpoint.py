"""The one-click unsubscribe endpoint over the real app and a real store."""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
from fastapi.testclient import TestClient

from campaign_orchestrator.channels.base import Recipient
from campaign_orchestrator.channels.email.render import EmailRenderer
from campaign_orchestrator.config.channels import EmailStep
from campaign_orchestrator.paths import ProjectPaths
from campaign_orchestrator.unsubscribe.app import standalone_app
from campaign_orchestrator.unsubscribe.tokens import TokenPayload, UnsubscribeSettings, load_settings, sign
from tests.fixtures.store import add_profiles

pytestmark = pytest.mark.integration

SECRET = "integration-unsubscribe-secret-0123"
OLD_SECRET = "integration-previous-secret-456789"
BASE = "https://campaigns.example.com"
PREFIX = "/campaigns-unsubscribe/unsubscribe/"
ONE_CLICK = {"content": b"List-Unsubscribe=One-Click", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}


@pytest.fixture
def client(store: psycopg.Connection, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CAMPAIGN_UNSUBSCRIBE",
        json.dumps({"conn_type": "generic", "host": "campaigns.example.com", "schema": "https",
                    "password": SECRET, "extra": {"previous_secrets": [OLD_SECRET]}}),
    )
    add_profiles(
        store,
        [
            {"profile_id": 1, "email": "ana@example.com", "consent": {"email": "opted_in", "sms": "opted_in"}},
            {"profile_id": 2, "email": "bo@example.com"},
        ],
    )
    with TestClient(standalone_app()) as client:
        yield client


def token(profile_id: int = 1, channel: str = "email", expires_in: int = 3600, secret: str = SECRET) -> str:
    import time

    return sign(TokenPayload(profile_id, channel, "winter_sale", "7:offer_email:", int(time.time()) + expires_in), secret)


def consent(store: psycopg.Connection, profile_id: int = 1, channel: str = "email") -> tuple | None:
    return store.execute(
        "SELECT status, source, updated_at FROM crm.consent WHERE profile_id = %s AND channel = %s", (profile_id, channel)
    ).fetchone()


def history(store: psycopg.Connection) -> list[tuple]:
    return store.execute(
        "SELECT profile_id, channel, status, source FROM crm.consent_history ORDER BY history_id"
    ).fetchall()


def test_one_click_post_opts_out_at_once(client: TestClient, store: psycopg.Connection) -> None:
    before = history(store)
    started = store.execute("SELECT now()").fetchone()[0]
    response = client.post(PREFIX + token(), **ONE_CLICK)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    status, source, updated_at = consent(store)
    assert (status, source) == ("opted_out", "one_click")
    assert updated_at >= started
    assert history(store) == [*before, (1, "email", "opted_out", "one_click")]
    assert consent(store, channel="sms")[0] == "opted_in"  # only the token's channel


def test_second_post_is_idempotent(client: TestClient, store: psycopg.Connection) -> None:
    link = PREFIX + token()
    assert client.post(link, **ONE_CLICK).status_code == 200
    first = consent(store)
    rows = history(store)
    assert client.post(link, **ONE_CLICK).status_code == 200
    assert consent(store) == first
    assert history(store) == rows


def test_profile_without_a_consent_row_gets_one(client: TestClient, store: psycopg.Connection) -> None:
    assert client.post(PREFIX + token(profile_id=2), **ONE_CLICK).status_code == 200
    assert consent(store, 2)[:2] == ("opted_out", "one_click")
    assert history(store)[-1] == (2, "email", "opted_out", "one_click")


def test_deleted_profile_is_ok_and_changes_nothing(client: TestClient, store: psycopg.Connection) -> None:
    rows = history(store)
    assert client.post(PREFIX + token(profile_id=999), **ONE_CLICK).status_code == 200
    assert history(store) == rows


def test_get_shows_a_page_and_does_not_unsubscribe(client: TestClient, store: psycopg.Connection) -> None:
    before = consent(store)
    rows = history(store)
    response = client.get(PREFIX + token())
    assert response.status_code == 200
    assert '<form method="post">' in response.text and "Unsubscribe</button>" in response.text
    assert 'name="List-Unsubscribe" value="One-Click"' in response.text
    assert response.headers["referrer-policy"] == "no-referrer"
    assert consent(store) == before
    assert history(store) == rows


def test_the_page_button_unsubscribes(client: TestClient, store: psycopg.Connection) -> None:
    response = client.post(
        PREFIX + token(), content=b"List-Unsubscribe=One-Click&via=page",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert "You are unsubscribed" in response.text
    assert consent(store)[:2] == ("opted_out", "unsubscribe_page")


def test_forged_token_is_403_and_changes_nothing(client: TestClient, store: psycopg.Connection) -> None:
    before, rows = consent(store), history(store)
    forged = token(secret="an-attackers-secret-0123456789")
    assert client.post(PREFIX + forged, **ONE_CLICK).status_code == 403
    assert client.get(PREFIX + forged).status_code == 403
    encoded, signature = token().split(".")
    other = token(profile_id=2).split(".")[0]
    assert client.post(PREFIX + f"{other}.{signature}", **ONE_CLICK).status_code == 403
    assert consent(store) == before
    assert history(store) == rows


def test_expired_token_is_410_with_a_page_and_changes_nothing(client: TestClient, store: psycopg.Connection) -> None:
    before, rows = consent(store), history(store)
    expired = token(expires_in=-1)
    assert client.post(PREFIX + expired, **ONE_CLICK).status_code == 410
    page = client.get(PREFIX + expired)
    assert page.status_code == 410
    assert "expired" in page.text
    assert consent(store) == before
    assert history(store) == rows


@pytest.mark.parametrize("bad", ["nonsense", "a.b.c", "YWJj.YWJj"])
def test_malformed_token_is_400(client: TestClient, store: psycopg.Connection, bad: str) -> None:
    rows = history(store)
    assert client.post(PREFIX + bad, **ONE_CLICK).status_code == 400
    assert client.get(PREFIX + bad).status_code == 400
    assert history(store) == rows


def test_token_signed_with_a_previous_secret_still_works(client: TestClient, store: psycopg.Connection) -> None:
    assert client.post(PREFIX + token(secret=OLD_SECRET), **ONE_CLICK).status_code == 200
    assert consent(store)[0] == "opted_out"


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_rendered_email_link_unsubscribes(client: TestClient, store: psycopg.Connection, tmp_path: Path) -> None:
    folder = tmp_path / "include" / "templates" / "offer"
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text("Offer")
    (folder / "body.html").write_text('<a href="{{ unsubscribe_url }}">Unsubscribe</a>')
    (folder / "body.txt").write_text("Unsubscribe: {{ unsubscribe_url }}")
    step = EmailStep(id="offer_email", channel="email", template="offer", sender="Acme <news@acme.example>")
    renderer = EmailRenderer(step, SimpleNamespace(id="winter_sale", description="d"), 7, ProjectPaths(tmp_path))
    out = renderer.render(Recipient(1, "", "ana@example.com", {}))
    message = email.message_from_bytes(out.payload, policy=email.policy.default)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = message["List-Unsubscribe"].strip("<>")
    assert url.startswith(BASE + PREFIX)
    payload = load_settings().verify(url.removeprefix(BASE + PREFIX))
    assert (payload.profile_id, payload.channel, payload.campaign_id, payload.message_ref) == (
        1, "email", "winter_sale", "7:offer_email:"
    )
    assert client.post(url.removeprefix(BASE), **ONE_CLICK).status_code == 200
    assert consent(store)[:2] == ("opted_out", "one_click")


def test_store_outage_is_503_and_retryable(monkeypatch: pytest.MonkeyPatch) -> None:
    from campaign_orchestrator.unsubscribe.app import create_app

    def broken() -> psycopg.Connection:
        raise psycopg.OperationalError("store down")

    settings = UnsubscribeSettings(secrets=(SECRET,), base_url=BASE)
    with TestClient(create_app(settings=lambda: settings, connect=broken)) as client:
        response = client.post("/unsubscribe/" + token(), **ONE_CLICK)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "60"


def test_airflow_api_server_mounts_it_without_login(
    airflow_db, client: TestClient, store: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside ``airflow api-server`` (its real app, this project's plugins): no Airflow login
    is asked for, the token alone decides."""
    from airflow.api_fastapi.app import create_app, purge_cached_app

    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "unsubscribe-test-jwt-secret-0123456789")

    purge_cached_app()
    try:
        with TestClient(create_app(), base_url="http://localhost") as airflow:
            assert airflow.get(PREFIX + token()).status_code == 200
            assert airflow.post(PREFIX + token(secret="an-attackers-secret-0123456789"), **ONE_CLICK).status_code == 403
            assert consent(store)[0] == "opted_in"
            assert airflow.post(PREFIX + token(), **ONE_CLICK).status_code == 200
            assert airflow.get("/api/v2/dags").status_code in (401, 403)  # the rest of Airflow still wants a login
    finally:
        purge_cached_app()
    assert consent(store)[:2] == ("opted_out", "one_click")
