"""The store restarts, the SMTP server drops connections, the provider throttles: each run
completes after retries with nothing lost and nothing doubled.

Every send attempt is a real process running ``SendBatchOperator.execute``; a failed attempt
is retried the way Airflow would (immediately here, instead of after ``retry_delay``). The
faults come from the servers themselves: a private PostgreSQL this test stops and starts
(never the machine's shared one), the SMTP server in this process, an HTTP proxy in front
of moto's SES that answers ``Throttling``.
"""

from __future__ import annotations

import json
import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path

import psycopg
import pytest

from campaign_orchestrator.paths import ProjectPaths
from campaign_orchestrator.store.migrations import migrate
from tests.chaos.campaign import ChaosRun, check_exactly_once
from tests.chaos.private_pg import PrivatePostgres
from tests.chaos.send_task import Worker
from tests.chaos.sink import ChaosSink, Trap
from tests.fixtures.aws import MotoEndpoint, SnsProxy
from tests.fixtures.store import _airflow_conn_json

pytestmark = [pytest.mark.integration]

SEED = 7


@pytest.fixture
def private_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[PrivatePostgres, str]]:
    """A migrated store on a PostgreSQL of this test's own, as the ``campaign_store`` connection."""
    server = PrivatePostgres()
    server.start()
    try:
        dsn = server.create_database(f"chaos_{secrets.token_hex(3)}")
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn, ProjectPaths.discover().migrations)
        monkeypatch.setenv("AIRFLOW_CONN_CAMPAIGN_STORE", _airflow_conn_json(dsn))
        yield server, dsn
    finally:
        server.stop()


def test_store_restarts_mid_run(
    private_store: tuple[PrivatePostgres, str], sink: ChaosSink, worker: Worker, tmp_path: Path,
    chaos_summary: list[str],
) -> None:
    """Two restarts of the store during the sends: a clean one (2 s down) while a chunk is
    with the SMTP server, so its outcomes must wait for the store to come back; and a crash
    (``immediate``, 1 s down) at a seeded moment, wherever the sender then is. The rate
    limiter's bucket lives in the same store (a rate is set), so its connection breaks too."""
    server, dsn = private_store
    rng = random.Random(SEED)
    conn = psycopg.connect(dsn, autocommit=True)
    run = ChaosRun(tmp_path / "project", conn, worker, batch_size=2_500,
                   extra_env={**sink.env(), "CAMPAIGNS_RATE_EMAIL_SMTP_CHAOS": "100000"})
    sendable = run.prepare(10_000)
    conn.close()

    in_flight_at = 2_050  # the middle of a chunk: claimed, half sent, not recorded
    first_done = threading.Event()

    def clean_restart() -> None:
        server.restart("fast", down_for=2.0)
        first_done.set()

    def crash() -> None:
        # A seeded moment into the retry that follows the first restart.
        if first_done.wait(300):
            time.sleep(rng.uniform(1.5, 4.0))
            server.restart("immediate", down_for=1.0)

    sink.arm(Trap(at=in_flight_at, action="call", callback=clean_restart))
    crasher = threading.Thread(target=crash, daemon=True)
    crasher.start()
    attempts = []
    started = time.monotonic()
    try:
        for _ in range(12):
            attempts.append(run.attempt())
            if attempts[-1].exitcode == 0 and not crasher.is_alive():
                break
            assert attempts[-1].exitcode in (0, 75), attempts[-1].log_tail
            time.sleep(0.5)  # Airflow's retry_delay, shortened
    finally:
        first_done.set()
        crasher.join()
    assert [mode for mode, _ in server.restarts] == ["fast", "immediate"]

    run.store = psycopg.connect(dsn, autocommit=True)
    try:
        report = run.finalize()["steps"][0]  # raises if anything is still pending
        tally = check_exactly_once(run, sink.handler.by_message_id())
        in_flight = run.store.execute(
            "SELECT status, count(*) FROM campaign.message WHERE run_key = %s AND seq BETWEEN %s AND %s "
            "GROUP BY status", (run.run_key, in_flight_at - 49, in_flight_at + 50),
        ).fetchall()
    finally:
        run.store.close()
    # The chunk the SMTP server had when the store went away was recorded once it was back.
    assert in_flight == [("sent", 100)]
    assert report["sent"] == tally.sent and report["pending"] == 0 and tally.sent + tally.uncertain == sendable
    # Only the crash can leave a chunk uncertain, if it struck between a claim and its record.
    assert tally.uncertain <= 100 and tally.uncertain_reasons <= {"attempt_died_during_send"}
    assert tally.delivered == tally.sent + tally.delivered_uncertain
    chaos_summary.append(
        f"chaos postgres restart: {len(server.restarts)} restarts "
        f"({', '.join(f'{mode} {down:.1f}s down' for mode, down in server.restarts)}), {sendable} sendable, "
        f"{tally.delivered} delivered, {tally.uncertain} uncertain, 0 lost, 0 duplicates, {len(attempts)} attempts, "
        f"{time.monotonic() - started:.0f}s"
    )


def test_smtp_server_drops_connections_mid_batch(
    chaos_run: ChaosRun, sink: ChaosSink, chaos_summary: list[str]
) -> None:
    """The server closes the connection before a message's RCPT (nothing accepted: the sender
    reconnects and sends it), twice in a row (the batch stops, its retry sends the rest), and
    after a message's content but before the reply (accepted, the sender cannot know:
    ``uncertain``, never resent)."""
    sendable = chaos_run.prepare(6_000)
    rng = random.Random(SEED)
    points = sorted(rng.sample(range(200, 5_800), 12))
    before = points[0::3]
    twice = points[1::3]
    after = points[2::3]
    for at in before:
        sink.arm(Trap(at=at, action="drop_before_data"))
    for at in twice:
        sink.arm(Trap(at=at, action="drop_before_data"))
        sink.arm(Trap(at=at, action="drop_before_data"))
    for at in after:
        sink.arm(Trap(at=at, action="drop_after_data"))
    started = time.monotonic()
    attempts = chaos_run.run_to_completion()

    report = chaos_run.finalize()["steps"][0]
    tally = check_exactly_once(chaos_run, sink.handler.by_message_id())
    assert not sink.handler.traps, "every drop happened"
    # A drop after the content is the one outcome the sender cannot know: exactly those.
    assert tally.uncertain == len(after) == tally.delivered_uncertain
    assert tally.uncertain_reasons == {"connection_lost_after_data"}
    assert tally.sent == sendable - len(after) == report["sent"]
    # Each double drop stopped its batch once; the retries finished the run.
    assert len(attempts) == len(twice) + 1
    chaos_summary.append(
        f"chaos smtp drops: {len(before) + 2 * len(twice) + len(after)} dropped connections "
        f"({len(before)} before RCPT, {len(twice)} twice in a row, {len(after)} after DATA), {sendable} sendable, "
        f"{tally.delivered} delivered, {tally.uncertain} uncertain, 0 lost, 0 duplicates, {len(attempts)} attempts, "
        f"{time.monotonic() - started:.0f}s"
    )


def test_smtp_throttling_answers(chaos_run: ChaosRun, sink: ChaosSink, chaos_summary: list[str]) -> None:
    """Two throttling episodes: ``451 4.7.1 ... slow down`` to every message for 2.5 s, then
    ``421 4.7.0 Rate limit exceeded`` (closing the session) for 1.5 s. Each refused message
    stays pending, the batch backs off in place and sends it once the server accepts again:
    one attempt, nothing lost or sent twice."""
    sendable = chaos_run.prepare(5_000)
    sink.arm(Trap(at=1_234, action="reply", reply="451 4.7.1 Too many messages, slow down", seconds=2.5))
    sink.arm(Trap(at=3_456, action="reply", reply="421 4.7.0 Rate limit exceeded, closing connection", seconds=1.5))
    started = time.monotonic()
    attempts = chaos_run.run_to_completion()
    log = "".join(a.log_tail for a in attempts)

    report = chaos_run.finalize()["steps"][0]
    tally = check_exactly_once(chaos_run, sink.handler.by_message_id())
    assert not sink.handler.traps
    assert tally.sent == sendable == report["sent"] and tally.uncertain == 0
    assert len(attempts) == 1, "throttling is waited out in place, not by failing the task"
    assert "throttled by the provider; backing off" in log
    chaos_summary.append(
        f"chaos smtp throttling: 451 for 2.5 s + 421 for 1.5 s, {sendable} sendable, {tally.delivered} delivered, "
        f"0 uncertain, 0 lost, 0 duplicates, {len(attempts)} attempt, {time.monotonic() - started:.0f}s"
    )


def test_ses_throttling(
    store: psycopg.Connection, ses_endpoint: MotoEndpoint, worker: Worker, tmp_path: Path,
    chaos_summary: list[str],
) -> None:
    """SES answers ``Throttling`` to 150 ``SendRawEmail`` calls in a row (through a proxy in
    front of moto): the hook's own quick retries absorb some, the batch backs off in place
    and resends only the throttled messages."""
    ses_endpoint.client().verify_email_identity(EmailAddress="offers@wanderly.example")
    proxy = SnsProxy(ses_endpoint.url, throttle_action="SendRawEmail")
    conn = {"conn_type": "aws", "login": "testing", "password": "testing",
            "extra": {"region_name": ses_endpoint.region, "endpoint_url": proxy.url}}
    env = {"AIRFLOW_CONN_AWS_CHAOS": json.dumps(conn), "CAMPAIGNS_RATE_EMAIL_AWS_CHAOS": "unlimited"}
    run = ChaosRun(tmp_path / "project", store, worker, provider="ses", conn_id="aws_chaos", extra_env=env)
    try:
        sendable = run.prepare(1_000)
        proxy.throttle_publishes = 150
        started = time.monotonic()
        attempts = run.run_to_completion()
        log = "".join(a.log_tail for a in attempts)
    finally:
        proxy.stop()

    report = run.finalize()["steps"][0]
    at_ses = Counter(message_from_bytes(m["raw_data"].encode())["Message-ID"] for m in ses_endpoint.sent_raw_messages())
    tally = check_exactly_once(run, at_ses)
    throttled = len(proxy.actions("SendRawEmail")) - sum(at_ses.values())
    assert proxy.throttle_publishes == 0 and throttled == 150
    assert tally.sent == sendable == report["sent"] and tally.uncertain == 0
    assert len(attempts) == 1, "throttling is waited out in place, not by failing the task"
    assert "throttled by the provider; backing off" in log
    chaos_summary.append(
        f"chaos ses throttling: {throttled} throttled requests, {sendable} sendable, {tally.delivered} delivered, "
        f"0 uncertain, 0 lost, 0 duplicates, {len(attempts)} attempt, {time.monotonic() - started:.0f}s"
    )
