"""The three-step journey over SMTP, with outcomes from every sender's loop: email (SMTP,
aiosmtpd) -> wait -> SMS to those who did not open -> wait -> push to those who did not book.

No provider reports opens here: while the first wait runs, a reader thread plays the
recipients. It takes each message the SMTP server received, follows its open pixel and
links through the real tracking endpoint (a standalone server process, over HTTP) — as a
person for some, as Apple's privacy proxy for others — and for some addresses delivers a
real provider DSN to the message's VERP return path in the bounce mailbox (a private
dovecot), which the feedback DAG's own task then reads over IMAP. Checked: no person who
opened gets the SMS, a machine's open does not count as one, and every hard-bounced address
is suppressed before the next step is targeted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
import yaml
from airflow.sdk import BaseHook

from campaign_orchestrator.config.loader import load_campaigns
from campaign_orchestrator.feedback.bounces import ingest_mailbox
from campaign_orchestrator.feedback.mailbox import BounceMailbox, settings_from_connection
from campaign_orchestrator.feedback.verp import settings_from_extras
from campaign_orchestrator.paths import ProjectPaths
from campaign_orchestrator.run.funnel import compute_funnel, format_funnel
from campaign_orchestrator.store.demo_data import generate_demo_data
from campaign_orchestrator.tracking.extract import tracked_links
from tests.fixtures.airflow import dags_test
from tests.fixtures.aws import register_push_endpoints

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
CAMPAIGN = "winter_sale_journey"
WAIT_SECONDS = 25
TIME_SCALE = WAIT_SECONDS / (2 * 24 * 3600)
PERSON = {"User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                        "Chrome/131.0 Safari/537.36"}
APPLE_PROXY = {"User-Agent": "Mozilla/5.0"}  # Mail Privacy Protection fetches with exactly this
TRACKING_SECRET = "journey-tracking-secret-0123456789"


@pytest.fixture
def campaigns_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "campaigns"
    shutil.copytree(ROOT / "dags" / "campaigns", folder)
    data = yaml.safe_load((folder / f"{CAMPAIGN}.yaml").read_text())
    data["steps"][0].update({"provider": "smtp", "connection_id": "smtp_test"})
    (folder / f"{CAMPAIGN}.yaml").write_text(yaml.safe_dump(data))
    policies = yaml.safe_load((folder / "_policies.yaml").read_text()) or {}
    policies["quiet_hours"] = []  # tested apart; here they would hold SMS for whoever's night it is
    (folder / "_policies.yaml").write_text(yaml.safe_dump(policies))
    return folder


@pytest.fixture
def tracking_server(store_dsn, monkeypatch):
    """`python -m campaign_orchestrator.tracking.app` on a free port, as the campaign_tracking
    connection the renderer signs links with."""
    from campaign_orchestrator.devtools.mail_sink import free_port

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("AIRFLOW_CONN_CAMPAIGN_TRACKING", json.dumps(
        {"conn_type": "generic", "host": base, "password": TRACKING_SECRET}))
    server = subprocess.Popen([sys.executable, "-m", "campaign_orchestrator.tracking.app", "--port", str(port)],
                              env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the tracking server did not start"
            time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


class Recipients(threading.Thread):
    """Once every email is sent: opens and clicks through the endpoint, bounces to the mailbox."""

    def __init__(self, dsn: str, smtp_server, mailbox, base: str) -> None:
        super().__init__(daemon=True)
        self.dsn, self.smtp, self.mailbox, self.base = dsn, smtp_server, mailbox, base
        self.opened: set[int] = set()  # by a person (a click counts)
        self.machine_only: set[int] = set()
        self.bounced: dict[int, str] = {}
        self.ingested = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                run_key, sent = self._wait_for_emails(conn)
                by_address = {address: pid for pid, address in sent}
                time.sleep(1.5)  # a hit within a second of sending would be a machine's (too_fast)
                with httpx.Client(timeout=30, follow_redirects=False) as http:
                    for i, received in enumerate(sorted(self.smtp.handler.messages, key=lambda m: m.rcpt_tos[0])):
                        pid = by_address[received.rcpt_tos[0]]
                        links = tracked_links(received.data)
                        if i % 4 == 0:
                            self._hit(http, links.open_url, PERSON)
                            self.opened.add(pid)
                        elif i % 4 == 1:
                            self._hit(http, links.open_url, APPLE_PROXY)  # the proxy prefetch, nobody read it
                            self.machine_only.add(pid)
                        elif i % 8 == 2:
                            self._hit(http, links.clicks[0].url, PERSON)  # images off, clicked anyway
                            self.opened.add(pid)
                        elif i % 8 == 3:
                            self.bounced[pid] = received.rcpt_tos[0]
                            self.mailbox.bounce(conn, run_key, "sale_email", pid, "postfix_hard.eml")
                # The feedback DAG's own task body: read the bounce mailbox over IMAP.
                connection = BaseHook.get_connection("campaign_bounces")
                with BounceMailbox(settings_from_connection(connection)) as mailbox:
                    self.ingested = ingest_mailbox(conn, mailbox, settings_from_extras(connection.extra_dejson),
                                                   source="imap:campaign_bounces")
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def _hit(self, http: httpx.Client, url: str | None, headers: dict[str, str]) -> None:
        assert url is not None
        parts = urlsplit(url)
        response = http.get(f"{self.base}{parts.path}" + (f"?{parts.query}" if parts.query else ""), headers=headers)
        assert response.status_code in (200, 302), (url, response.status_code)

    @staticmethod
    def _wait_for_emails(conn) -> tuple[int, list[tuple[int, str]]]:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            row = conn.execute(
                """
                SELECT r.run_key, count(*) FILTER (WHERE m.status IN ('pending', 'sending')), count(*)
                FROM campaign.run r JOIN campaign.run_step s ON s.run_key = r.run_key AND s.step_id = 'sale_email'
                JOIN campaign.message m ON m.run_key = r.run_key AND m.step_id = 'sale_email'
                WHERE r.campaign_id = %s GROUP BY r.run_key
                """,
                (CAMPAIGN,),
            ).fetchone()
            if row and row[2] and not row[1]:
                return row[0], conn.execute(
                    "SELECT profile_id, address FROM campaign.message WHERE run_key = %s AND step_id = 'sale_email' "
                    "AND status = 'sent'",
                    (row[0],),
                ).fetchall()
            time.sleep(0.2)
        raise TimeoutError("the email step never finished sending")


def test_sms_skips_people_who_opened_and_hard_bounces_are_suppressed_before_it(
    airflow_db, store, store_dsn, ses_endpoint, smtp_server, bounce_mailbox, tracking_server, campaigns_dir
) -> None:
    generate_demo_data(store, profiles=400, seed=5)
    assert register_push_endpoints(store, ses_endpoint.client("sns")) > 0
    readers = Recipients(store_dsn, smtp_server, bounce_mailbox, tracking_server)
    readers.start()
    env = {
        "CAMPAIGNS_CONFIG_DIR": str(campaigns_dir),
        "AIRFLOW_CONN_AWS_DEFAULT": ses_endpoint.conn_json(),
        "AIRFLOW_CONN_SMTP_DEFAULT": "smtp://127.0.0.1:1",  # unused: the email step names smtp_test
    }
    result = dags_test(CAMPAIGN, env, conf=json.dumps({"time_scale": TIME_SCALE}))
    output = result.stdout + result.stderr
    readers.join(timeout=60)
    assert readers.error is None, repr(readers.error)
    assert result.returncode == 0 and "state=success" in output[-5000:], output[-8000:]

    run_key = store.execute(
        "SELECT run_key FROM campaign.run WHERE campaign_id = %s ORDER BY started_at DESC LIMIT 1", (CAMPAIGN,)
    ).fetchone()[0]

    def ledger(step_id: str) -> dict[int, tuple[str, str | None, str | None]]:
        rows = store.execute(
            "SELECT profile_id, status, reason, address FROM campaign.message WHERE run_key = %s AND step_id = %s",
            (run_key, step_id),
        ).fetchall()
        return {pid: (status, reason, address) for pid, status, reason, address in rows}

    email, sms = ledger("sale_email"), ledger("sms_to_non_openers")
    emailed = {p for p, (status, _, _) in email.items() if status == "sent"}
    assert len(smtp_server.handler.messages) == len(emailed) > 40
    # Every message went out with its own VERP return path, and the mailbox's bounces found them.
    assert all(m.mail_from.startswith("bounces+") for m in smtp_server.handler.messages)
    assert readers.ingested.counts["hard_bounces"] == len(readers.bounced) > 0 and readers.ingested.kept == 0, (
        readers.ingested.as_dict())

    # SMS: whoever came through the email step, minus the people who opened or clicked; an
    # Apple-proxy prefetch is not an open.
    turned_away = {p for p, (_, reason, _) in sms.items() if reason == "condition_not_met"}
    assert turned_away == readers.opened
    assert not turned_away & readers.machine_only
    texted = {p for p, (status, _, _) in sms.items() if status == "sent"}
    assert texted and not texted & readers.opened
    machine_rows = store.execute(
        "SELECT count(*) FROM campaign.delivery_event WHERE run_key = %s AND machine = 'apple_mpp'", (run_key,)
    ).fetchone()[0]
    assert machine_rows == len(readers.machine_only)

    # Every hard-bounced address was suppressed before the SMS step was targeted.
    suppressed = dict(store.execute(
        "SELECT address, created_at FROM crm.suppression WHERE channel = 'email' AND reason = 'hard_bounce' "
        "AND address = ANY(%s)", ([a.lower() for a in readers.bounced.values()],),
    ).fetchall())
    sms_targeted = store.execute(
        "SELECT filtered_at FROM campaign.run_step WHERE run_key = %s AND step_id = 'sms_to_non_openers'", (run_key,)
    ).fetchone()[0]
    assert set(suppressed) == {a.lower() for a in readers.bounced.values()}
    assert max(suppressed.values()) < sms_targeted

    config = load_campaigns(campaigns_dir, ProjectPaths.discover()).configs[CAMPAIGN][1]
    funnel = {f.step_id: f for f in compute_funnel(store, run_key, config)}
    assert funnel["sale_email"].opened == len(readers.opened)
    assert funnel["sale_email"].bounced == len(readers.bounced)
    assert funnel["sms_to_non_openers"].condition_not_met == len(readers.opened)
    print("\n" + format_funnel(list(funnel.values())))
