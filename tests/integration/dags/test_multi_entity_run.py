"""The shipped multi-entity demo (low_stock_alert) through `airflow dags test`: an audience
from inventory, split by rules, one email per booking enriched with its product, and one
email per profile listing its bookings."""

from __future__ import annotations

import shutil
from collections import Counter
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from campaign_orchestrator.store.demo_data import generate_demo_data
from tests.fixtures.airflow import dags_test

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def test_low_stock_alert_enriches_per_booking_and_lists_per_profile(airflow_db, store, smtp_server, tmp_path):
    generate_demo_data(store, profiles=2000, seed=7)
    folder = tmp_path / "campaigns"
    shutil.copytree(ROOT / "dags" / "campaigns", folder)
    env = {"AIRFLOW_CONN_SMTP_DEFAULT": smtp_server.conn_json(), "CAMPAIGNS_CONFIG_DIR": str(folder)}
    result = dags_test("low_stock_alert", env)
    tail = (result.stdout + result.stderr)[-6000:]
    assert result.returncode == 0 and "state=success" in tail, tail

    run_key = store.execute(
        "SELECT run_key FROM campaign.run WHERE campaign_id = 'low_stock_alert' ORDER BY run_key DESC LIMIT 1"
    ).fetchone()[0]
    sent = store.execute(
        "SELECT step_id, address, entity_key FROM campaign.message WHERE run_key = %s AND status = 'sent'", (run_key,)
    ).fetchall()
    per_step = Counter(step for step, _, _ in sent)
    assert per_step["invite_email"] > 0 and per_step["digest_email"] > 0
    assert len(smtp_server.handler.messages) == len(sent)

    texts: dict[str, list[str]] = {}
    for message in smtp_server.handler.messages:
        parsed = message_from_bytes(message.data, policy=policy.default)
        texts.setdefault(message.rcpt_tos[0], []).append(parsed.get_body(("plain",)).get_content())

    # Each booking's email names its product and its stock, as the store has them.
    for step, address, booking in sent:
        if step != "invite_email":
            continue
        name, quantity = store.execute("""
            SELECT p.name, i.quantity FROM crm.booking b JOIN crm.product p USING (product_id)
            LEFT JOIN crm.inventory i USING (product_id) WHERE b.booking_id = %s""", (int(booking),)).fetchone()
        assert any(f"Your trip {name} starts on" in t and f"only {quantity} places" in t and f"reference: {booking}"
                   in t for t in texts[address])

    # Each digest lists the profile's audience bookings (at most 5, by start date).
    digests = store.execute("""
        SELECT m.address, array_agg(a.entity_key::bigint ORDER BY b.starts_on, b.booking_id)
        FROM campaign.message m
        JOIN campaign.audience_member a ON a.run_key = m.run_key AND a.profile_id = m.profile_id
        JOIN crm.booking b ON b.booking_id = a.entity_key::bigint
        WHERE m.run_key = %s AND m.step_id = 'digest_email' AND m.status = 'sent'
        GROUP BY m.address""", (run_key,)).fetchall()
    assert digests
    for address, bookings in digests:
        digest = next(t for t in texts[address] if "Places are going fast on the trips you booked" in t)
        listed = [int(line.rsplit("(booking ", 1)[1].rstrip(")\r")) for line in digest.splitlines() if "(booking " in line]
        assert listed == bookings[:5]
