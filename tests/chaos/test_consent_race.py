"""Consent race: an opt-out committed while a send task is mid-batch stops every later message.

``tests/integration/run/test_send_exactly_once.py::test_opt_out_during_the_run_stops_later_messages``
covers an opt-out between two batches. Here the opt-outs (through the one-click unsubscribe
service, the code the endpoint runs) and a complaint suppression are committed while the SMTP
server holds message 2,550 of a running batch: its chunk (2,501-2,600) is already claimed,
later chunks are not. Consent is re-checked when each chunk is claimed, so the documented
window is the chunk in flight, at most 100 messages, and nothing claimed after the commit
reaches the profile.
"""

from __future__ import annotations

import time

import psycopg
import pytest

from campaign_orchestrator.unsubscribe.service import unsubscribe_many
from campaign_orchestrator.unsubscribe.tokens import TokenPayload
from tests.chaos.campaign import ChaosRun, address, check_exactly_once
from tests.chaos.sink import ChaosSink, Trap

pytestmark = [pytest.mark.integration]

AT = 2_550
SENT_BEFORE = [1_000, 2_500]
IN_FLIGHT = [2_551, 2_600]
LATER = [2_601, 3_000, 4_000, 4_999]
COMPLAINED = 3_777


def test_opt_out_committed_mid_batch_stops_every_later_message(
    chaos_run: ChaosRun, sink: ChaosSink, store_dsn: str, chaos_summary: list[str]
) -> None:
    sendable = chaos_run.prepare(5_000)
    assert [b["hi"] for b in chaos_run.batches] == [5_000]  # one batch: the race is inside it
    opted_out = SENT_BEFORE + IN_FLIGHT + LATER
    committed: dict[str, object] = {}

    def opt_out() -> None:
        expires = int(time.time()) + 3600
        with psycopg.connect(store_dsn, autocommit=True) as conn:
            result = unsubscribe_many(
                conn, [TokenPayload(pid, "email", "chaos", f"{chaos_run.run_key}:offer_email:{pid}", expires)
                       for pid in opted_out],
            )
            conn.execute(
                "INSERT INTO crm.suppression (channel, address, reason, source) VALUES ('email', %s, 'complaint', 'ses')",
                (address(COMPLAINED),),
            )
            committed["changed"] = result.changed
            committed["at"] = conn.execute("SELECT clock_timestamp()").fetchone()[0]
            committed["arrived"] = len(sink.handler.received)

    sink.arm(Trap(at=AT, action="call", callback=opt_out))
    attempts = chaos_run.run_to_completion()
    chaos_run.finalize()
    tally = check_exactly_once(chaos_run, sink.handler.by_message_id(), statuses=("sent", "excluded"))

    assert committed["changed"] == len(opted_out)
    delivered_to = [rcpt for _, rcpt in sink.handler.received]
    after_commit = set(delivered_to[committed["arrived"]:])
    rows = {
        pid: (status, reason, claimed_at)
        for pid, status, reason, claimed_at in chaos_run.store.execute(
            "SELECT profile_id, status, reason, claimed_at FROM campaign.message WHERE run_key = %s "
            "AND profile_id = ANY(%s)", (chaos_run.run_key, [*opted_out, COMPLAINED]),
        )
    }
    # Sent before the opt-out, or claimed (in flight) before it: delivered once.
    for pid in SENT_BEFORE + IN_FLIGHT:
        assert rows[pid][0] == "sent" and rows[pid][2] < committed["at"]
        assert delivered_to.count(address(pid)) == 1
    # Everything claimed after the commit honours it.
    for pid in LATER:
        assert rows[pid][:2] == ("excluded", "consent_withdrawn") and address(pid) not in delivered_to
    assert rows[COMPLAINED][:2] == ("excluded", "suppressed_during_run") and address(COMPLAINED) not in delivered_to
    # No message reached an opted-out profile after the commit except the chunk in flight.
    late = {a for a in after_commit if a in {address(p) for p in opted_out}}
    assert late == {address(p) for p in IN_FLIGHT}
    assert tally.sent == sendable - len(LATER) - 1 and tally.uncertain == 0 and len(attempts) == 1
    chaos_summary.append(
        f"chaos consent race: {len(opted_out)} opt-outs + 1 complaint committed while message {AT} was in flight; "
        f"{len(LATER) + 1} later messages excluded (consent_withdrawn / suppressed_during_run), "
        f"{len(IN_FLIGHT)} in the claimed chunk delivered (window: one chunk, 100), "
        f"0 messages claimed after the commit delivered, {tally.sent} sent of {sendable}"
    )
