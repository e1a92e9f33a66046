"""Enrichment against a real store and a real SMTP server: one email per booking showing its
product and dates, one email per profile listing its bookings, sent once across retries, and
a fetch that reads only the columns the templates name."""

from __future__ import annotations

import shutil
from datetime import date
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from campaign_orchestrator.audience.compile import compile_audience
from campaign_orchestrator.channels.factory import build_channel
from campaign_orchestrator.config.campaign import CampaignConfig
from campaign_orchestrator.paths import ProjectPaths
from campaign_orchestrator.run.audience import evaluate_audience
from campaign_orchestrator.run.checks import check_campaign_templates, check_profile_fields
from campaign_orchestrator.run.enrichment import step_enrichment
from campaign_orchestrator.run.preview import render_for_profile
from campaign_orchestrator.run.runs import register_run
from campaign_orchestrator.run.send import Batch, BatchSender
from campaign_orchestrator.run.targeting import plan_batches, target_step
from campaign_orchestrator.store.connect import store_connection
from tests.fixtures.store import add_profiles

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]

TEMPLATES = {
    "trip/subject.txt": "{{ entity.product.name }} on {{ entity.starts_on.strftime('%d %B %Y') }}",
    "trip/body.txt": (
        "Hi {{ profile.first_name }}, booking {{ entity_key }}: {{ entity.product.name }} "
        "({{ entity.product.category }}), {{ entity.starts_on }}, {{ entity.product.inventory.quantity }} left."
    ),
    "trip/body.html": "<p>{{ entity.product.name }}</p>",
    "digest/subject.txt": "{{ profile.first_name }}: {{ entities|length }} trips",
    "digest/body.txt": (
        "{% for b in entities %}{{ b.booking_id }}: {{ b.product.name }} {{ b.starts_on }} "
        "[{{ b.product.inventory.quantity }}]\n{% endfor %}"
    ),
    "digest/body.html": "<ul>{% for b in entities %}<li>{{ b.product.name }}</li>{% endfor %}</ul>",
}


@pytest.fixture
def paths(tmp_path: Path) -> ProjectPaths:
    """A project with the shipped catalog and SQL, and this test's templates."""
    (tmp_path / "include").mkdir()
    shutil.copy(ROOT / "include" / "entities.yaml", tmp_path / "include" / "entities.yaml")
    shutil.copytree(ROOT / "include" / "sql", tmp_path / "include" / "sql")
    for name, text in TEMPLATES.items():
        path = tmp_path / "include" / "templates" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return ProjectPaths(tmp_path)


@pytest.fixture
def trips(store):
    """Three travellers, three products (one without an inventory row), five bookings."""
    add_profiles(store, [
        {"profile_id": p, "email": f"{name.lower()}@example.com", "first_name": name, "consent": {"email": "opted_in"}}
        for p, name in ((1, "Ana"), (2, "Bo"), (3, "Cy"))
    ])
    store.execute("""
        INSERT INTO crm.product (product_id, sku, name, category, price) VALUES
            (1, 'CRU', 'Sunset cruise', 'tour', 90), (2, 'HUT', 'Alpine hut', 'hotel', 120),
            (3, 'BIK', 'City bike', 'tour', 15);
        INSERT INTO crm.inventory (product_id, quantity) VALUES (1, 4), (2, 9);
        INSERT INTO crm.booking (booking_id, profile_id, product_id, status, booked_at, starts_on, amount) VALUES
            (10, 1, 1, 'confirmed', now(), '2027-01-10', 90), (11, 1, 2, 'confirmed', now(), '2026-12-20', 240),
            (12, 1, 3, 'confirmed', now(), '2027-02-01', 15), (20, 2, 2, 'confirmed', now(), '2027-03-05', 120),
            (30, 3, 1, 'cancelled', now(), '2027-01-10', 90);
    """)
    return store


def campaign(**step) -> CampaignConfig:
    return CampaignConfig.model_validate({
        "id": "trips", "schedule": "manual", "valid": {"start": "2026-01-01"},
        "audience": {"blocks": {"confirmed": {"from": "booking", "where": {"status": "confirmed"},
                                              "entity_key": "booking"}}},
        "steps": [{"id": "mail", "channel": "email", "sender": "W <w@w.example>", "consent": "not_opted_out",
                   "connection_id": "smtp_test", **step}],
    })


def run_step(conn, config: CampaignConfig, paths: ProjectPaths, run_id: str = "r1", times: int = 1) -> int:
    """Evaluate, target and send every batch ``times`` times (a retried or cleared task)."""
    step = config.steps[0]
    run_key = register_run(conn, config.id, run_id, None, {})
    evaluate_audience(conn, run_key, compile_audience(config, paths), None, None)
    result = target_step(conn, run_key, config, step)
    renderer, open_sender = build_channel(step, config, run_key, paths)
    enrichment = step_enrichment(config, step, renderer.template_fields, paths)
    for _ in range(times):
        for batch in plan_batches(result.sendable, 2):
            BatchSender(store_connection, run_key, step, renderer, open_sender, enrichment=enrichment).run(
                Batch.from_xcom(batch)
            )
    return run_key


def _text(parsed) -> str:
    return parsed.get_body(("plain",)).get_content().replace("\r\n", "\n").rstrip()


def received(smtp_server) -> dict[str, tuple[str, str]]:
    """Subject and text body of each message, by recipient."""
    out = {}
    for message in smtp_server.handler.messages:
        parsed = message_from_bytes(message.data, policy=policy.default)
        assert message.rcpt_tos[0] not in out, f"two messages to {message.rcpt_tos[0]}"
        out[message.rcpt_tos[0]] = (str(parsed["Subject"]), _text(parsed))
    return out


def test_one_email_per_booking_shows_its_product_and_dates(trips, smtp_server, paths) -> None:
    config = campaign(template="trip")
    run_key = run_step(trips, config, paths)
    got = {}
    for message in smtp_server.handler.messages:
        parsed = message_from_bytes(message.data, policy=policy.default)
        got[str(parsed["Subject"])] = _text(parsed)
    assert got == {
        "Sunset cruise on 10 January 2027": "Hi Ana, booking 10: Sunset cruise (tour), 2027-01-10, 4 left.",
        "Alpine hut on 20 December 2026": "Hi Ana, booking 11: Alpine hut (hotel), 2026-12-20, 9 left.",
        # no inventory row for the bike: the linked fields are None, rendered empty
        "City bike on 01 February 2027": "Hi Ana, booking 12: City bike (tour), 2027-02-01,  left.",
        "Alpine hut on 05 March 2027": "Hi Bo, booking 20: Alpine hut (hotel), 2027-03-05, 9 left.",
    }
    # the same, written independently: each sent row's booking joined to its product
    want = {
        (str(b), name) for b, name in trips.execute("""
            SELECT b.booking_id, p.name FROM crm.booking b JOIN crm.product p USING (product_id)
            WHERE b.status = 'confirmed'""").fetchall()
    }
    sent = {
        (key, name) for key, name in trips.execute("""
            SELECT m.entity_key, p.name FROM campaign.message m
            JOIN crm.booking b ON b.booking_id = m.entity_key::bigint JOIN crm.product p USING (product_id)
            WHERE m.run_key = %s AND m.status = 'sent'""", (run_key,)).fetchall()
    }
    assert sent == want


def test_one_email_per_profile_lists_its_bookings_and_is_sent_once_across_retries(trips, smtp_server, paths) -> None:
    config = campaign(template="digest", message_per="profile", entities_order_by="starts_on")
    run_key = run_step(trips, config, paths, times=2)
    assert received(smtp_server) == {
        "ana@example.com": ("Ana: 3 trips", "11: Alpine hut 2026-12-20 [9]\n10: Sunset cruise 2027-01-10 [4]\n"
                                            "12: City bike 2027-02-01 []"),
        "bo@example.com": ("Bo: 1 trips", "20: Alpine hut 2027-03-05 [9]"),
    }
    ledger = trips.execute(
        "SELECT profile_id, entity_key, status FROM campaign.message WHERE run_key = %s ORDER BY profile_id", (run_key,)
    ).fetchall()
    assert ledger == [(1, "", "sent"), (2, "", "sent")]  # one row per profile, keyed without an entity


def test_entities_are_capped_and_ordered_by_the_step(trips, smtp_server, paths) -> None:
    config = campaign(template="digest", message_per="profile", entities_order_by="starts_on desc", max_entities=2)
    run_step(trips, config, paths)
    assert received(smtp_server)["ana@example.com"] == (
        "Ana: 2 trips", "12: City bike 2027-02-01 []\n10: Sunset cruise 2027-01-10 [4]"
    )


def test_max_messages_per_profile_still_caps_one_message_per_entity(trips, smtp_server, paths) -> None:
    config = campaign(template="trip")
    config = config.model_copy(update={"guardrails": config.guardrails.model_copy(update={"max_messages_per_profile": 2})})
    run_key = run_step(trips, config, paths, times=2)
    rows = dict(trips.execute(
        "SELECT entity_key, coalesce(reason, status) FROM campaign.message WHERE run_key = %s", (run_key,)).fetchall())
    assert rows == {"10": "sent", "11": "sent", "12": "max_messages_per_profile", "20": "sent"}
    assert len(smtp_server.handler.messages) == 3


def test_a_booking_deleted_after_targeting_is_excluded_not_rendered(trips, smtp_server, paths) -> None:
    config = campaign(template="trip")
    step = config.steps[0]
    run_key = register_run(trips, config.id, "r1", None, {})
    evaluate_audience(trips, run_key, compile_audience(config, paths), None, None)
    result = target_step(trips, run_key, config, step)
    trips.execute("DELETE FROM crm.booking WHERE booking_id = 12")
    renderer, open_sender = build_channel(step, config, run_key, paths)
    enrichment = step_enrichment(config, step, renderer.template_fields, paths)
    stats = BatchSender(store_connection, run_key, step, renderer, open_sender, enrichment=enrichment).run(
        Batch.from_xcom(plan_batches(result.sendable, 10)[0]))
    assert (stats.sent, stats.excluded_late) == (3, 1)
    reason = trips.execute(
        "SELECT status, reason FROM campaign.message WHERE run_key = %s AND entity_key = '12'", (run_key,)).fetchone()
    assert reason == ("excluded", "entity_not_found")


def test_the_fetch_reads_only_the_columns_the_templates_name(trips, paths) -> None:
    config = campaign(template="trip")
    renderer, _ = build_channel(config.steps[0], config, 1, paths)
    enrichment = step_enrichment(config, config.steps[0], renderer.template_fields, paths)
    assert enrichment is not None
    rows = enrichment.fetch_by_keys(trips, ["10", "12", "999"])
    assert rows == {
        "10": {"starts_on": date(2027, 1, 10),
               "product": {"category": "tour", "name": "Sunset cruise", "inventory": {"quantity": 4}}},
        "12": {"starts_on": date(2027, 2, 1),
               "product": {"category": "tour", "name": "City bike", "inventory": {"quantity": None}}},
    }
    statement = enrichment.statement(trips, "by_key").as_string(trips)
    selected = statement.split("SELECT", 1)[1].split("FROM", 1)[0]
    assert [part.strip() for part in selected.split(",")] == [
        'e0."booking_id"::text', '"e0"."starts_on" AS "c0"', '"e1"."category" AS "c1"', '"e1"."name" AS "c2"',
        '"e2"."quantity" AS "c3"',
    ]
    assert 'e0."booking_id" = ANY(' in statement and "::bigint[]" in statement  # the key's index is usable


def test_render_and_checks_see_entities(trips, paths) -> None:
    digest = campaign(template="digest", message_per="profile")
    rendered = render_for_profile(trips, digest, digest.steps[0], paths, 2)
    assert rendered.payload is not None and b"20: Alpine hut 2027-03-05 [9]" in rendered.payload
    assert check_campaign_templates(digest, paths) == [] and check_profile_fields(trips, digest, paths) == []

    (paths.templates / "digest" / "body.txt").write_text("{% for b in entities %}{{ b.product.nme }}{% endfor %}")
    problems = check_profile_fields(trips, digest, paths)
    assert len(problems) == 1 and problems[0].startswith(
        "steps[0].template: digest uses entities[*].product.nme, which crm.product does not have; columns: "
    )
    wrong_order = campaign(template="digest", message_per="profile", entities_order_by="start_date")
    (paths.templates / "digest" / "body.txt").write_text("{% for b in entities %}{{ b.starts_on }}{% endfor %}")
    assert check_profile_fields(trips, wrong_order, paths) == [
        "steps[0].entities_order_by: crm.booking has no column 'start_date'; columns: amount, booked_at, "
        "booking_id, product_id, profile_id, starts_on, status, updated_at, version"
    ]
    (paths.templates / "trip" / "body.txt").write_text("{{ entity }}")
    assert check_campaign_templates(campaign(template="trip"), paths) == [
        "steps[0].template: trip/body.txt:1: uses 'entity' as a whole; name each field (entity.start_date, "
        "entity.product.name), with constant names, so the send fetches only those columns"
    ]


def test_a_proof_fills_entity_and_entities_from_the_profiles_own_bookings(trips, smtp_server, paths) -> None:
    from campaign_orchestrator.run.proof import ProofError, send_proof

    trip = campaign(template="trip")
    assert [o.status for _, o in send_proof(trips, trip, trip.steps[0], paths, 1, ["qa@example.com"])] == ["sent"]
    digest = campaign(template="digest", message_per="profile", max_entities=2)
    send_proof(trips, digest, digest.steps[0], paths, 1, ["qa@example.com"])
    texts = [_text(message_from_bytes(m.data, policy=policy.default)) for m in smtp_server.handler.messages]
    assert texts == [
        "Hi Ana, booking proof:qa@example.com: Sunset cruise (tour), 2027-01-10, 4 left.",  # her first booking
        "10: Sunset cruise 2027-01-10 [4]\n11: Alpine hut 2026-12-20 [9]",
    ]
    add_profiles(trips, [{"profile_id": 4, "email": "dee@example.com", "first_name": "Dee"}])
    with pytest.raises(ProofError, match="profile 4 has no booking to fill entity with"):
        send_proof(trips, trip, trip.steps[0], paths, 4, ["qa@example.com"])


def test_a_chunks_entities_are_looked_up_by_profile_through_an_index(trips, paths) -> None:
    """One statement per chunk of a one-message-per-profile send: the snapshot's rows with an
    entity are indexed by (run, profile) (migration 0012), and the statement can use it."""
    from psycopg import sql

    config = campaign(template="digest", message_per="profile")
    step = config.steps[0]
    run_key = register_run(trips, config.id, "r1", None, {})
    evaluate_audience(trips, run_key, compile_audience(config, paths), None, None)
    renderer, _ = build_channel(step, config, run_key, paths)
    enrichment = step_enrichment(config, step, renderer.template_fields, paths)
    assert enrichment is not None
    statement = sql.SQL("EXPLAIN ") + enrichment.statement(trips, "of_profiles")
    with trips.transaction(force_rollback=True):
        # Only an index scan is left to choose: a scan of the whole run is what it replaces.
        trips.execute("SET LOCAL enable_seqscan = off")
        trips.execute("SET LOCAL enable_bitmapscan = off")
        plan = [row[0] for row in trips.execute(statement, {"run_key": run_key, "profile_ids": [1, 2], "max_entities": None})]
    assert any("audience_member_entity_idx on audience_member" in line for line in plan), "\n".join(plan)
