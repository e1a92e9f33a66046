"""Consent loads: the store's own rules (the record's time decides; every change is history)
hold for a nightly export, including against an opt-out from the unsubscribe link."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from campaign_orchestrator.unsubscribe.service import unsubscribe_many
from campaign_orchestrator.unsubscribe.tokens import TokenPayload
from tests.integration.ingestion.conftest import run

CONSENT = """
    id: crm_consent
    schedule: "0 2 * * *"
    source: {kind: csv, path: "{landing}/consent_*.csv"}
    target: {table: crm.consent, set: {source: crm_nightly_export}}
"""


def at(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S+00")


def consent(conn) -> dict[tuple[int, str], tuple[str, str]]:
    return {(r[0], r[1]): (r[2], r[3]) for r in conn.execute(
        "SELECT profile_id, channel, status, source FROM crm.consent ORDER BY 1, 2")}


def history(conn, profile_id: int) -> list[tuple]:
    return conn.execute("SELECT channel, status, source, recorded_at FROM crm.consent_history WHERE profile_id = %s "
                        "ORDER BY history_id", (profile_id,)).fetchall()


def test_an_export_older_than_an_unsubscribe_does_not_undo_it(ingest_store, sources) -> None:
    config = sources.source("crm_consent", CONSENT)
    ingest_store.execute("INSERT INTO crm.consent (profile_id, channel, status, source, updated_at) VALUES "
                         "(1, 'email', 'opted_in', 'signup', now() - interval '30 days'), "
                         "(2, 'email', 'opted_in', 'signup', now() - interval '30 days')")
    exported = datetime.now(timezone.utc) - timedelta(hours=3)  # the CRM's state 3 hours ago
    unsubscribe_many(ingest_store, [TokenPayload(1, "email", "winter_sale", "1:offer:", int(time.time()) + 60)])
    assert consent(ingest_store)[(1, "email")] == ("opted_out", "one_click")
    sources.file("consent_1.csv", f"""
        profile_id,channel,status,updated_at
        1,email,opted_in,{at(exported)}
        2,email,opted_out,{at(exported)}
        3,sms,opted_in,{at(exported)}
    """)
    (outcome,) = run(ingest_store, config)
    assert (outcome.inserted, outcome.updated, outcome.unchanged) == (1, 1, 1)
    assert consent(ingest_store) == {
        (1, "email"): ("opted_out", "one_click"),          # the newer opt-out stands
        (2, "email"): ("opted_out", "crm_nightly_export"),  # the export is newer here
        (3, "sms"): ("opted_in", "crm_nightly_export"),
    }
    # Each change is appended with its source and the record's own time.
    assert [h[:3] for h in history(ingest_store, 1)] == [("email", "opted_in", "signup"),
                                                          ("email", "opted_out", "one_click")]
    assert history(ingest_store, 2)[-1][:3] == ("email", "opted_out", "crm_nightly_export")
    assert history(ingest_store, 2)[-1][3] == exported.replace(microsecond=0)
    assert history(ingest_store, 3) == [("sms", "opted_in", "crm_nightly_export", exported.replace(microsecond=0))]


def test_re_running_an_export_appends_no_history(ingest_store, sources) -> None:
    config = sources.source("crm_consent", CONSENT + "    max_reject_share: 0.5\n")
    stamp = at(datetime.now(timezone.utc) - timedelta(hours=1))
    text = f"""
        profile_id,channel,status,updated_at
        4,email,opted_in,{stamp}
        4,sms,opted_out,{stamp}
        5,email,maybe,{stamp}
        5,fax,opted_in,{stamp}
    """
    sources.file("consent_1.csv", text)
    (outcome,) = run(ingest_store, config)
    assert (outcome.inserted, outcome.rejected) == (2, 2)  # the CHECKs on status and channel refuse the rest
    reasons = sorted(r[0] for r in ingest_store.execute("SELECT reason FROM ingest.reject"))
    assert [r.split(":")[0] for r in reasons] == ["violates consent_channel_check", "violates consent_status_check"]
    count = ingest_store.execute("SELECT count(*) FROM crm.consent_history").fetchone()[0]
    assert run(ingest_store, config) == []                       # the same file: not read again
    sources.file("consent_2.csv", text)                          # the same export under another name
    assert [o.status for o in run(ingest_store, config)] == ["skipped"]
    sources.file("consent_3.csv", text.replace("maybe", "unknown"))  # the same states, re-exported
    (outcome,) = run(ingest_store, config)
    assert (outcome.inserted, outcome.updated, outcome.unchanged) == (1, 0, 2)  # only 5/email is new
    assert ingest_store.execute("SELECT count(*) FROM crm.consent_history").fetchone()[0] == count + 1
