"""The tracking endpoint over the real app and a real store: messages rendered by the real
renderer, their pixel and links followed as a mail client would, events recorded through the
feedback ingestion, and bad tokens refused without touching the ledger."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from campaign_orchestrator.channels.base import Recipient
from campaign_orchestrator.channels.email.render import EmailRenderer
from campaign_orchestrator.config.channels import EmailStep
from campaign_orchestrator.paths import ProjectPaths
from campaign_orchestrator.tracking.app import PIXEL, create_app, standalone_app
from campaign_orchestrator.tracking.extract import TrackedLinks, tracked_links
from campaign_orchestrator.tracking.settings import TrackingSettings
from campaign_orchestrator.tracking.tokens import MessageKey, expires_hour, sign
from tests.fixtures.store import add_profiles

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
SECRET = "integration-tracking-secret-0123"
OLD_SECRET = "integration-previous-tracking-01"
BASE = "https://track.example.com"
IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
HUMAN = {"User-Agent": IPHONE}
TEMPLATE = """<html><body><p>Hello {{ profile.first_name }}</p>
<a href="https://wanderly.example/sale?from=email&amp;p={{ profile.first_name|urlencode }}">Sale</a>
<a href="https://wanderly.example/">Home</a>
<a href="{{ unsubscribe_url }}">Unsubscribe</a></body></html>"""


def tracking_connection(secret: str = SECRET, previous: list[str] | None = None) -> str:
    return json.dumps({"conn_type": "generic", "host": BASE, "password": secret,
                       "extra": {"previous_secrets": previous or []}})


@pytest.fixture
def project(tmp_path: Path) -> ProjectPaths:
    folder = tmp_path / "include" / "templates" / "offer"
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text("Winter sale")
    (folder / "body.html").write_text(TEMPLATE)
    (folder / "body.txt").write_text("Sale: https://wanderly.example/sale")
    return ProjectPaths(tmp_path)


def sent_run(store: psycopg.Connection, project: ProjectPaths, profiles: list[int], sent_ago: str = "1 minute",
             status: str = "sent") -> tuple[int, dict[int, TrackedLinks]]:
    """A run whose email step was rendered by the real renderer and recorded sent ``sent_ago``:
    (run_key, each profile's tracking links)."""
    add_profiles(store, [{"profile_id": p, "email": f"u{p}@example.com", "first_name": f"Ana {p}"} for p in profiles])
    run_key = store.execute(
        "INSERT INTO campaign.run (campaign_id, dag_run_id) VALUES ('winter_sale', %s) RETURNING run_key",
        (f"manual__{time.monotonic_ns()}",),
    ).fetchone()[0]
    step = EmailStep(id="offer_email", channel="email", template="offer", sender="Wanderly <offers@wanderly.example>")
    renderer = EmailRenderer(step, SimpleNamespace(id="winter_sale", description="d"), run_key, project)
    links = {}
    for profile_id in profiles:
        out = renderer.render(Recipient(profile_id, "", f"u{profile_id}@example.com", {"first_name": f"Ana {profile_id}"}))
        links[profile_id] = tracked_links(out.payload)
        store.execute(
            "INSERT INTO campaign.message (run_key, step_id, profile_id, entity_key, campaign_id, channel, purpose, "
            "address, status, provider_message_id, sent_at) VALUES (%s, 'offer_email', %s, '', 'winter_sale', 'email', "
            "'marketing', %s, %s, %s, CASE WHEN %s = 'sent' THEN now() - %s::interval END)",
            (run_key, profile_id, f"u{profile_id}@example.com", status, out.message_id, status, sent_ago),
        )
    return run_key, links


def path(url: str) -> str:
    """A tracking URL as the test client requests it: path and query on the tracking server."""
    assert url.startswith(BASE + "/campaigns-track/")
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def events(store: psycopg.Connection) -> list[tuple]:
    return store.execute(
        "SELECT run_key, step_id, profile_id, event_type, machine, detail ->> 'link', detail ->> 'url', "
        "provider_message_id FROM campaign.delivery_event ORDER BY event_id"
    ).fetchall()


def ledger_state(store: psycopg.Connection) -> tuple[list, list]:
    return (
        store.execute("SELECT * FROM campaign.message ORDER BY run_key, profile_id").fetchall(),
        store.execute("SELECT * FROM campaign.delivery_event ORDER BY event_id").fetchall(),
    )


@pytest.fixture(autouse=True)
def tracking_conn(monkeypatch: pytest.MonkeyPatch) -> None:
    """The renderer signs, and the endpoint verifies, with the ``campaign_tracking`` connection."""
    monkeypatch.setenv("AIRFLOW_CONN_CAMPAIGN_TRACKING", tracking_connection(previous=[OLD_SECRET]))


@pytest.fixture
def client(store: psycopg.Connection) -> TestClient:
    with TestClient(standalone_app(), base_url=BASE) as client:
        yield client


def test_the_pixel_records_an_open(client: TestClient, store: psycopg.Connection, project: ProjectPaths) -> None:
    run_key, links = sent_run(store, project, [1])
    response = client.get(path(links[1].open_url), headers=HUMAN)
    assert response.status_code == 200
    assert response.content == PIXEL and response.headers["content-type"] == "image/gif"
    assert "no-store" in response.headers["cache-control"] and response.headers["pragma"] == "no-cache"
    message_id = store.execute("SELECT provider_message_id FROM campaign.message").fetchone()[0]
    assert events(store) == [(run_key, "offer_email", 1, "opened", None, None, None, message_id)]


def test_a_click_records_and_redirects_to_the_signed_url(
    client: TestClient, store: psycopg.Connection, project: ProjectPaths
) -> None:
    run_key, links = sent_run(store, project, [1])
    sale, home = links[1].clicks
    assert sale.destination == "https://wanderly.example/sale?from=email&p=Ana%201"
    response = client.get(path(sale.url), headers=HUMAN, follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == "https://wanderly.example/sale?from=email&p=Ana%201"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert [e[:7] for e in events(store)] == [
        (run_key, "offer_email", 1, "clicked", None, "0", "https://wanderly.example/sale?from=email&p=Ana%201")
    ]
    # The unsubscribe link was left alone.
    assert links[1].other_links[0].startswith("https://campaigns.test.example/campaigns-unsubscribe/")


def test_hits_are_idempotent_per_message_and_link(
    client: TestClient, store: psycopg.Connection, project: ProjectPaths
) -> None:
    _, links = sent_run(store, project, [1, 2])
    for _ in range(3):
        assert client.get(path(links[1].open_url), headers=HUMAN).status_code == 200
        assert client.get(path(links[1].clicks[0].url), headers=HUMAN, follow_redirects=False).status_code == 302
    client.get(path(links[1].clicks[1].url), headers=HUMAN, follow_redirects=False)
    client.get(path(links[2].open_url), headers=HUMAN)
    assert sorted((e[2], e[3], e[5]) for e in events(store)) == [
        (1, "clicked", "0"), (1, "clicked", "1"), (1, "opened", None), (2, "opened", None)
    ]


def test_a_machine_open_becomes_human_when_the_person_opens(
    client: TestClient, store: psycopg.Connection, project: ProjectPaths
) -> None:
    _, links = sent_run(store, project, [1])
    client.get(path(links[1].open_url), headers={"User-Agent": "Mozilla/5.0"})  # Apple's MPP proxy
    assert [e[4] for e in events(store)] == ["apple_mpp"]
    client.get(path(links[1].open_url), headers={"User-Agent": "Mozilla/5.0"})
    client.get(path(links[1].open_url), headers=HUMAN)
    (row,) = store.execute("SELECT machine, detail FROM campaign.delivery_event").fetchall()
    assert row[0] is None
    assert row[1]["machine_first"] == "apple_mpp" and row[1]["user_agent"] == IPHONE
    client.get(path(links[1].open_url), headers={"User-Agent": "Mozilla/5.0"})  # no way back
    assert [e[4] for e in events(store)] == [None]


def test_scanners_head_requests_and_hits_right_after_sending_are_machines(
    client: TestClient, store: psycopg.Connection, project: ProjectPaths
) -> None:
    _, old = sent_run(store, project, [1, 2])
    _, fresh = sent_run(store, project, [3], sent_ago="0 seconds")
    _, sending = sent_run(store, project, [4], status="sending")
    client.get(path(old[1].clicks[0].url), headers={"User-Agent": "Barracuda Sentinel (EE)"}, follow_redirects=False)
    client.head(path(old[2].clicks[0].url), headers=HUMAN)
    client.get(path(fresh[3].clicks[0].url), headers=HUMAN, follow_redirects=False)
    client.get(path(sending[4].open_url), headers=HUMAN)
    assert sorted((e[2], e[3], e[4]) for e in events(store)) == [
        (1, "clicked", "scanner:barracuda"), (2, "clicked", "head_request"), (3, "clicked", "too_fast"),
        (4, "opened", "too_fast"),
    ]


def test_a_click_within_a_second_of_the_delivery_event_is_a_machine(
    client: TestClient, store: psycopg.Connection, project: ProjectPaths
) -> None:
    run_key, links = sent_run(store, project, [1], sent_ago="10 minutes")
    store.execute(
        "INSERT INTO campaign.delivery_event (provider_message_id, run_key, step_id, profile_id, entity_key, channel, "
        "event_type, occurred_at, provider_event_id) VALUES ('x', %s, 'offer_email', 1, '', 'email', 'delivered', "
        "now() - interval '200 milliseconds', 'ses:delivery-1')", (run_key,))
    client.get(path(links[1].clicks[0].url), headers=HUMAN, follow_redirects=False)
    assert [e[3:5] for e in events(store)][1:] == [("clicked", "too_fast")]


def test_bad_tokens_are_refused_without_touching_the_ledger(
    client: TestClient, store: psycopg.Connection, project: ProjectPaths
) -> None:
    run_key, links = sent_run(store, project, [1])
    before = ledger_state(store)
    key = MessageKey(run_key, "offer_email", 1, "")
    open_token = links[1].open_url.rsplit("/", 1)[1]
    click = links[1].clicks[0]
    click_token = path(click.url).split("/c/")[1].split("?")[0]
    forged = sign("an-attackers-secret-0123456789", key, expires=expires_hour(30))
    expired = sign(SECRET, key, expires=int(time.time() // 3600) - 1)
    expired_click = sign(SECRET, key, expires=int(time.time() // 3600) - 1, link=0, url=click.destination)
    cases = [
        (f"/campaigns-track/o/{forged}", 404),
        (f"/campaigns-track/o/{expired}", 410),
        ("/campaigns-track/o/nonsense", 400),
        (f"/campaigns-track/o/{open_token[:-2]}", 404),  # shorter bytes, whose last 12 are no MAC
        (f"/campaigns-track/c/{open_token}?u=https://wanderly.example/", 404),  # an open token is no click
        (f"/campaigns-track/o/{click_token}", 400),  # a click token, and no URL to verify it with
        (f"/campaigns-track/c/{click_token}?u=https://evil.example/", 404),  # not the signed URL: no redirect
        (f"/campaigns-track/c/{click_token}?u=https%3A%2F%2Fevil.example%2F", 404),
        (f"/campaigns-track/c/{click_token}", 400),
        (f"/campaigns-track/c/{click_token}?u=%ff", 400),
        (f"/campaigns-track/c/{expired_click}?u=" + path(click.url).split("?u=")[1], 410),
    ]
    for url, status in cases:
        response = client.get(url, headers=HUMAN, follow_redirects=False)
        assert response.status_code == status, url
        assert "location" not in response.headers
    assert ledger_state(store) == before


def test_a_previous_secret_still_counts(client: TestClient, store: psycopg.Connection, project: ProjectPaths) -> None:
    run_key, _ = sent_run(store, project, [1])
    token = sign(OLD_SECRET, MessageKey(run_key, "offer_email", 1, ""), expires=expires_hour(30))
    assert client.get(f"/campaigns-track/o/{token}", headers=HUMAN).status_code == 200
    assert [e[3] for e in events(store)] == ["opened"]


def test_a_deleted_run_still_redirects_and_records_nothing(
    client: TestClient, store: psycopg.Connection, project: ProjectPaths
) -> None:
    run_key, links = sent_run(store, project, [1])
    store.execute("DELETE FROM campaign.run WHERE run_key = %s", (run_key,))
    response = client.get(path(links[1].clicks[1].url), headers=HUMAN, follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (302, "https://wanderly.example/")
    assert client.get(path(links[1].open_url), headers=HUMAN).content == PIXEL
    assert events(store) == []


def test_a_store_outage_still_serves_the_page_and_the_pixel(store: psycopg.Connection, project: ProjectPaths) -> None:
    _, links = sent_run(store, project, [1])

    def broken() -> psycopg.Connection:
        raise psycopg.OperationalError("store down")

    settings = TrackingSettings((SECRET,), BASE)
    with TestClient(create_app(settings=lambda: settings, connect=broken), base_url=BASE) as client:
        click = client.get(path(links[1].clicks[0].url).removeprefix("/campaigns-track"), follow_redirects=False)
        pixel = client.get(path(links[1].open_url).removeprefix("/campaigns-track"))
    assert click.status_code == 302 and pixel.content == PIXEL
    assert events(store) == []


def test_airflow_api_server_mounts_it_without_login(
    airflow_db, store: psycopg.Connection, project: ProjectPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside ``airflow api-server`` (its real app, this project's plugins): no Airflow login
    is asked for, the token alone decides."""
    from airflow.api_fastapi.app import create_app as airflow_app
    from airflow.api_fastapi.app import purge_cached_app

    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "tracking-test-jwt-secret-0123456789")
    run_key, links = sent_run(store, project, [1])
    purge_cached_app()
    try:
        with TestClient(airflow_app(), base_url="http://localhost") as airflow:
            assert airflow.get(path(links[1].open_url), headers=HUMAN).content == PIXEL
            response = airflow.get(path(links[1].clicks[1].url), headers=HUMAN, follow_redirects=False)
            assert (response.status_code, response.headers["location"]) == (302, "https://wanderly.example/")
            assert airflow.get("/campaigns-track/o/nonsense").status_code == 400
            assert airflow.get("/api/v2/dags").status_code in (401, 403)
    finally:
        purge_cached_app()
    assert sorted(e[3] for e in events(store)) == ["clicked", "opened"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_standalone_server_over_http(store: psycopg.Connection, project: ProjectPaths) -> None:
    """``python -m campaign_orchestrator.tracking.app`` as a real process, over real HTTP."""
    run_key, links = sent_run(store, project, [1])
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins")}
    server = subprocess.Popen(
        [sys.executable, "-m", "campaign_orchestrator.tracking.app", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT,
    )
    try:
        local = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{local}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the tracking server did not start"
            time.sleep(0.2)
        with httpx.Client(base_url=local, headers=HUMAN, follow_redirects=False, timeout=60) as http:
            pixel = http.get(path(links[1].open_url))
            assert (pixel.status_code, pixel.content) == (200, PIXEL)
            click = http.get(path(links[1].clicks[0].url))
            assert (click.status_code, click.headers["location"]) == (
                302, "https://wanderly.example/sale?from=email&p=Ana%201")
            assert http.get("/campaigns-track/c/forged?u=https://evil.example/").status_code == 400
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert sorted((e[0], e[3]) for e in events(store)) == [(run_key, "clicked"), (run_key, "opened")]
