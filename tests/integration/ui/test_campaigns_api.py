"""The Campaigns app inside Airflow's own API app: plugin mount, Airflow authentication, and
numbers checked against the store's ledger.

The app under test is ``airflow.api_fastapi.app.create_app()`` (what ``airflow api-server``
serves) with this project's plugins folder, so the plugin's registration, Airflow's auth
manager and its login endpoint are all real. Tokens come from ``POST /auth/token`` with a
SimpleAuthManager user and password, as a client of the public API gets them.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from fastapi.testclient import TestClient

from campaign_orchestrator.config.loader import load_campaigns
from campaign_orchestrator.paths import ProjectPaths
from tests.integration.ui.conftest import CAMPAIGN_ID, ledger_funnels

pytestmark = pytest.mark.integration

PREFIX = "/campaigns"
PROTECTED = [
    f"{PREFIX}/",
    f"{PREFIX}/api/campaigns",
    f"{PREFIX}/campaign/{CAMPAIGN_ID}",
    f"{PREFIX}/run/1",
    f"{PREFIX}/api/runs/1",
    f"{PREFIX}/run/1/failed-messages.csv",
]


@pytest.fixture(scope="module")
def client(airflow_db, ui_users) -> TestClient:
    from airflow.api_fastapi.app import create_app, purge_cached_app

    purge_cached_app()
    with TestClient(create_app(), base_url="http://localhost") as client:
        yield client
    purge_cached_app()


def login(client: TestClient, username: str, password: str) -> str:
    response = client.post("/auth/token", json={"username": username, "password": password})
    assert response.status_code == 201, response.text
    return response.json()["access_token"]


@pytest.fixture(scope="module")
def admin_token(client, ui_users) -> str:
    return login(client, "admin", ui_users["admin"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_plugin_mounts_the_app_and_adds_a_navigation_entry(client, admin_token):
    plugins = client.get("/api/v2/plugins", headers=bearer(admin_token)).json()["plugins"]
    (plugin,) = [p for p in plugins if p["name"] == "campaigns_ui"]
    assert [(a["url_prefix"], a["name"]) for a in plugin["fastapi_apps"]] == [(PREFIX, "Campaigns")]
    (view,) = plugin["external_views"]
    assert view["url_route"] == "campaigns" and view["destination"] == "nav" and view["href"] == "campaigns/"


@pytest.mark.parametrize("path", PROTECTED)
def test_requests_without_a_valid_login_are_refused(client, path):
    assert client.get(path).status_code == 401
    assert client.get(path, headers=bearer("not-a-jwt")).status_code == 403
    assert client.get(path, cookies={"_token": "not-a-jwt"}).status_code in (401, 403)


def test_a_browser_without_a_login_is_sent_to_the_login_page(client):
    response = client.get(f"{PREFIX}/", headers={"Accept": "text/html"}, follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"].startswith("/auth/login?next=")
    assert "campaigns" in response.headers["location"]


def test_the_campaign_list_shows_schedules_next_runs_and_last_run(client, admin_token, campaign_run, store):
    body = client.get(f"{PREFIX}/api/campaigns", headers=bearer(admin_token)).json()
    assert body["store_error"] is None
    campaigns = {c["id"]: c for c in body["campaigns"]}
    shipped = load_campaigns(campaign_run.campaigns_dir, ProjectPaths.discover())
    assert set(campaigns) == set(shipped.configs) and {CAMPAIGN_ID, "winter_sale"} <= set(campaigns)
    ours = campaigns[CAMPAIGN_ID]
    assert ours["dag_url"] == f"/dags/{CAMPAIGN_ID}"
    assert ours["schedule"] == "0 9 * * 1" and ours["schedule_description"] == "At 09:00, only on Monday"
    # The next Mondays at 09:00 in Paris within the validity window (2026-11-01 .. 2027-03-31).
    paris = ZoneInfo("Europe/Paris")
    mondays = croniter("0 9 * * 1", max(datetime.now(paris), datetime(2026, 11, 1, tzinfo=paris)))
    expected = [t for t in (mondays.get_next(datetime) for _ in range(3)) if t < datetime(2027, 4, 1, tzinfo=paris)]
    assert [datetime.fromisoformat(t) for t in ours["next_runs"]] == expected
    run = store.execute(
        "SELECT status, audience_size FROM campaign.run WHERE run_key = %s", (campaign_run.run_key,)
    ).fetchone()
    last = ours["last_run"]
    assert (last["run_key"], last["status"], last["audience_size"]) == (campaign_run.run_key, *run)
    ledger = store.execute(
        "SELECT count(*) FILTER (WHERE status = 'sent'), count(*) FROM campaign.message WHERE run_key = %s",
        (campaign_run.run_key,),
    ).fetchone()
    assert (last["sent"], last["targeted"], last["failed"]) == (*ledger, 4)
    assert campaigns["winter_sale"]["last_run"] is None
    assert [e["id"] for e in body["invalid"]] == ["broken_one"] and "ownr" in body["invalid"][0]["errors"]


def test_the_campaigns_page_links_each_campaign_to_its_dag(client, admin_token, campaign_run):
    response = client.get(f"{PREFIX}/", headers=bearer(admin_token))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert f'href="/dags/{CAMPAIGN_ID}"' in html and 'href="/dags/winter_sale"' in html
    assert f'href="{PREFIX}/run/{campaign_run.run_key}"' in html
    assert "signed in as admin" in html
    # Autoescaped: a description cannot inject markup.
    assert "&lt;to check escaping&gt;" in html and "<to check escaping>" not in html


def test_the_ui_cookie_is_accepted_like_the_airflow_ui_sends_it(client, admin_token, campaign_run):
    response = client.get(f"{PREFIX}/campaign/{CAMPAIGN_ID}", cookies={"_token": admin_token})
    assert response.status_code == 200
    assert f'href="{PREFIX}/run/{campaign_run.run_key}"' in response.text


def test_the_run_funnel_equals_the_ledger_per_step_and_per_channel(client, admin_token, campaign_run, store):
    body = client.get(f"{PREFIX}/api/runs/{campaign_run.run_key}", headers=bearer(admin_token)).json()
    expected = ledger_funnels(store, campaign_run.run_key)
    shown = {f"step:{f['title']}": f for f in body["by_step"]}
    shown |= {f"channel:{f['channel']}": f for f in body["by_channel"]}
    assert set(shown) == set(expected) == {"step:offer_email", "step:last_call_email", "channel:email"}
    for key, funnel in shown.items():
        want = expected[key]
        assert funnel["targeted"] == want["targeted"]
        assert funnel["sent"] == want["sent"]
        assert funnel["failed"] == want.get("failed", 0)
        assert funnel["uncertain"] == want.get("uncertain", 0)
        assert funnel["pending"] == want.get("pending", 0) == 0
        assert funnel["excluded"] == {k.split(".", 1)[1]: v for k, v in want.items() if k.startswith("excluded.")}
        assert funnel["failures"] == {k.split(".", 1)[1]: v for k, v in want.items() if k.startswith("failed.")}
        # No delivery event for this run (or no table for them): feedback is unknown, not zero.
        assert [funnel[e] for e in ("delivered", "opened", "clicked", "bounced", "complained")] == [None] * 5
    assert body["feedback"] in ("absent", "none")
    assert len(body["by_channel"][0]["steps"]) == 2
    assert body["failed_messages"] == 4
    assert body["run"]["status"] == "succeeded"


def test_the_run_page_draws_the_funnel_with_no_feedback_yet(client, admin_token, campaign_run, store):
    html = client.get(f"{PREFIX}/run/{campaign_run.run_key}", headers=bearer(admin_token)).text
    sent = store.execute(
        "SELECT count(*) FROM campaign.message WHERE run_key = %s AND step_id = 'offer_email' AND status = 'sent'",
        (campaign_run.run_key,),
    ).fetchone()[0]
    assert '<svg class="funnel" data-funnel="step:offer_email"' in html
    assert 'data-metric="sent" x="490" y="' in html and f">{sent:,}</text>" in html
    assert "no feedback yet" in html and "Download CSV (4)" in html


def test_failed_messages_download_as_csv(client, admin_token, campaign_run, store):
    # An address a spreadsheet would run as a formula is neutralized in the file.
    store.execute(
        """
        UPDATE campaign.message SET address = '=HYPERLINK("http://x.example")'
        WHERE run_key = %s AND status = 'uncertain'
        """,
        (campaign_run.run_key,),
    )
    response = client.get(f"{PREFIX}/run/{campaign_run.run_key}/failed-messages.csv", headers=bearer(admin_token))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    ledger = store.execute(
        """
        SELECT profile_id, entity_key, step_id, channel, address, status, reason, error
        FROM campaign.message WHERE run_key = %s AND status IN ('failed', 'uncertain')
        ORDER BY step_id, profile_id, entity_key
        """,
        (campaign_run.run_key,),
    ).fetchall()
    columns = ["profile_id", "entity_key", "step", "channel", "address", "status", "reason", "error", "updated_at"]
    assert list(rows[0]) == columns
    got = [(int(r["profile_id"]), *(r[c] for c in columns[1:-1])) for r in rows]
    want = [(p, e, s, c, "'" + a if a.startswith("=") else a, st, r or "", err or "")
            for p, e, s, c, a, st, r, err in ledger]
    assert got == want and len(got) == 4
    assert all(datetime.fromisoformat(r["updated_at"]) for r in rows)


def test_an_invalid_campaign_has_a_page_with_its_errors(client, admin_token, campaign_run):
    response = client.get(f"{PREFIX}/campaign/broken_one", headers=bearer(admin_token))
    assert response.status_code == 200 and "unknown field &#39;ownr&#39;" in response.text
    assert client.get(f"{PREFIX}/campaign/no_such_campaign", headers=bearer(admin_token)).status_code == 404
    assert client.get(f"{PREFIX}/api/runs/999999", headers=bearer(admin_token)).status_code == 404


def test_an_unreachable_store_still_lists_the_campaigns(client, admin_token, campaign_run, monkeypatch):
    closed = {"conn_type": "postgres", "host": "127.0.0.1", "port": 1, "login": "nobody", "schema": "none"}
    monkeypatch.setenv("AIRFLOW_CONN_CAMPAIGN_STORE", json.dumps(closed))
    body = client.get(f"{PREFIX}/api/campaigns", headers=bearer(admin_token)).json()
    assert "cannot be reached" in body["store_error"]
    assert CAMPAIGN_ID in {c["id"] for c in body["campaigns"]}
    page = client.get(f"{PREFIX}/", headers={**bearer(admin_token), "Accept": "text/html"})
    assert page.status_code == 200 and "cannot be reached" in page.text
    assert client.get(f"{PREFIX}/api/runs/{campaign_run.run_key}", headers=bearer(admin_token)).status_code == 503


def test_a_user_without_dag_access_sees_no_campaign_and_no_run(client, campaign_run):
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    # A valid Airflow login whose role grants nothing (SimpleAuthManager roles all read DAGs).
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="nobody", role=None))
    body = client.get(f"{PREFIX}/api/campaigns", headers=bearer(token)).json()
    assert body["campaigns"] == [] and body["invalid"] == []
    assert client.get(f"{PREFIX}/api/runs/{campaign_run.run_key}", headers=bearer(token)).status_code == 403
    csv_response = client.get(f"{PREFIX}/run/{campaign_run.run_key}/failed-messages.csv", headers=bearer(token))
    assert csv_response.status_code == 403


def test_a_viewer_can_read_campaigns(client, ui_users, campaign_run):
    token = login(client, "viewer", ui_users["viewer"])
    assert client.get(f"{PREFIX}/api/runs/{campaign_run.run_key}", headers=bearer(token)).status_code == 200


FEEDBACK_TABLE = """
    CREATE TABLE campaign.delivery_event (
        event_id bigserial PRIMARY KEY, provider_message_id text NOT NULL, run_key bigint, step_id text,
        profile_id bigint, entity_key text, channel text NOT NULL, event_type text NOT NULL, bounce_type text,
        detail jsonb, occurred_at timestamptz NOT NULL, received_at timestamptz NOT NULL DEFAULT now(),
        provider_event_id text NOT NULL UNIQUE)
"""


def feedback_table_exists(store) -> bool:
    return store.execute("SELECT to_regclass('campaign.delivery_event') IS NOT NULL").fetchone()[0]


def test_delivery_feedback_is_counted_once_the_store_has_events(campaign_run, store):
    """Events are added inside a transaction that is rolled back (the table too, where the
    store's migrations do not create it yet)."""
    from campaign_orchestrator.ui.data import run_funnels

    with store.transaction(force_rollback=True):
        if not feedback_table_exists(store):
            store.execute(FEEDBACK_TABLE)
        store.execute(
            """
            INSERT INTO campaign.delivery_event (provider_message_id, run_key, step_id, profile_id, entity_key,
                channel, event_type, bounce_type, occurred_at, provider_event_id)
            SELECT coalesce(m.provider_message_id, 'id'), m.run_key, m.step_id, m.profile_id, m.entity_key,
                   m.channel, e.type, e.bounce, now(), concat_ws(':', m.run_key, m.step_id, m.profile_id, e.n)
            FROM campaign.message AS m,
                 (VALUES (1, 'delivered', NULL), (2, 'delivered', NULL), (3, 'opened', NULL),
                         (4, 'bounced', 'Permanent')) AS e (n, type, bounce)
            WHERE m.run_key = %s AND m.step_id = 'offer_email' AND m.status = 'sent' AND m.seq <= 10
              AND (e.type <> 'bounced' OR m.seq <= 2)
            """,
            (campaign_run.run_key,),
        )
        funnels = run_funnels(store, campaign_run.run_key, campaign_run.steps)
        sent = dict(store.execute(
            """
            SELECT seq <= 2, count(*) FROM campaign.message
            WHERE run_key = %s AND step_id = 'offer_email' AND status = 'sent' AND seq <= 10 GROUP BY 1
            """,
            (campaign_run.run_key,),
        ).fetchall())
    first_ten, first_two = sum(sent.values()), sent.get(True, 0)
    step = {f.title: f for f in funnels.by_step}
    assert funnels.feedback.state == "ok"
    offer = step["offer_email"]
    assert (offer.delivered, offer.opened, offer.clicked, offer.bounced, offer.complained) == (
        first_ten, first_ten, 0, first_two, 0)
    assert step["last_call_email"].delivered == 0
    assert funnels.by_channel[0].delivered == first_ten


def test_without_a_feedback_table_the_feedback_is_unknown(campaign_run, store):
    from campaign_orchestrator.ui.data import run_funnels

    with store.transaction(force_rollback=True):
        if feedback_table_exists(store):
            store.execute("ALTER TABLE campaign.delivery_event RENAME TO delivery_event_hidden")
        funnels = run_funnels(store, campaign_run.run_key, campaign_run.steps)
    assert funnels.feedback.state == "absent"
    assert all(f.delivered is f.opened is f.clicked is f.bounced is f.complained is None for f in funnels.by_step)
