"""SIGKILL the send tasks of a 100,000-recipient run ten times; the retries finish the run.

Two workers send the run's ten batches (five each, at the same time, as two Airflow workers
would), each attempt a real process running ``SendBatchOperator.execute`` (the real
``BatchSender``, ledger and SMTP sender) against its own SMTP server in this process, which
outlives it and keeps the Message-ID of every message it accepted. Kill points are drawn
from a seeded generator, in three kinds, so the counts below are reproducible; the
assertions hold for any kill point:

- the server has the message and is about to answer 250: the worst case, the provider
  accepted a message the ledger cannot know about;
- the server has not accepted the message when the sender dies;
- a moment after a 250, wherever the sender then is (reading the reply, recording the
  chunk, claiming the next one, rendering).

After the last retry: every sendable ledger row is ``sent`` or ``uncertain`` (nothing lost,
nothing pending), every ``sent`` message reached a server exactly once, no message reached
one twice, and every message whose fate the ledger cannot know is ``uncertain``
(``attempt_died_during_send``): at most one chunk (100) per kill.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import pytest

from tests.chaos.campaign import ChaosRun, address, check_exactly_once
from tests.chaos.send_task import AttemptResult
from tests.chaos.sink import ChaosSink, Trap, chaos_sink

pytestmark = [pytest.mark.integration]

RECIPIENTS = 100_000
KILLS = 10
WORKERS = 2
SEED = 20261127
CHUNK = 100
KINDS = ("kill_before_reply", "kill_unaccepted", "kill_after_reply")


def kill_plans(rng: random.Random, per_worker: int) -> list[list[Trap]]:
    """Each worker's kill points (counted in messages its server saw), at least 1,000 apart
    and before its last ~2,000 messages; the kinds take turns across both workers."""
    plans = []
    for worker in range(WORKERS):
        slots = sorted(rng.sample(range(1_000, 47_000, 2_000), per_worker))
        plans.append([
            Trap(at=slot + rng.randrange(1_000), action=KINDS[(i * WORKERS + worker) % len(KINDS)],
                 delay=rng.uniform(0.0, 0.2))
            for i, slot in enumerate(slots)
        ])
    return plans


def test_sigkilled_send_tasks_lose_nothing_and_double_nothing(
    chaos_run: ChaosRun, sink: ChaosSink, chaos_summary: list[str]
) -> None:
    started = time.monotonic()
    sendable = chaos_run.prepare(RECIPIENTS)
    assert sendable == RECIPIENTS and len(chaos_run.batches) == 10
    halves = [chaos_run.batches[:5], chaos_run.batches[5:]]
    plans = kill_plans(random.Random(SEED), KILLS // WORKERS)
    retries: list[list[AttemptResult]] = [[], []]
    failures: list[BaseException] = []

    with chaos_sink() as second_sink:
        sinks = [sink, second_sink]

        def worker(index: int) -> None:
            """Attempts of one worker's batches: killed at each of its points, then retried."""
            try:
                env = sinks[index].env()
                for trap in plans[index]:
                    process, log_path, attempt_started = chaos_run.start_attempt(halves[index], env)
                    trap.pid = process.pid
                    sinks[index].arm(trap)
                    result = chaos_run.worker.wait(process, log_path, attempt_started)
                    assert trap.fired.is_set(), f"the attempt ended before message {trap.at}: {result.log_tail}"
                    assert result.killed, f"{trap} did not kill the attempt: exit {result.exitcode}\n{result.log_tail}"
                retries[index] = chaos_run.run_to_completion(halves[index], env)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
                failures.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]
        received = sink.handler.received + second_sink.handler.received

    report = chaos_run.finalize()["steps"][0]  # raises if anything is still pending
    tally = check_exactly_once(chaos_run, Counter(mid for mid, _ in received))  # nothing lost or doubled

    assert (report["sent"], report["uncertain"], report["pending"]) == (tally.sent, tally.uncertain, 0)
    assert tally.sent + tally.uncertain == sendable
    # Each message went to its own profile's address.
    to = {chaos_run.message_id(pid, key): address(pid)
          for pid, key, status, _, _ in chaos_run.sendable_rows() if status == "sent"}
    assert all(to[mid] == rcpt for mid, rcpt in received if mid in to)
    # Only the killed attempts' in-flight chunks are uncertain, and they say why.
    assert tally.uncertain_reasons <= {"attempt_died_during_send"}
    assert tally.uncertain <= KILLS * CHUNK
    kinds = Counter(trap.action for plan in plans for trap in plan)
    # The message a server accepted as its sender died is reported, not silently sent...
    assert tally.delivered_uncertain >= kinds["kill_before_reply"]
    # ...and so is the one a server had not accepted: reported, never delivered.
    assert tally.uncertain - tally.delivered_uncertain >= kinds["kill_unaccepted"]
    assert tally.delivered == tally.sent + tally.delivered_uncertain

    attempts = KILLS + sum(len(r) for r in retries)
    chaos_summary.append(
        f"chaos sigkill: {KILLS} kills ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}) "
        f"over {WORKERS} workers, {sendable} sendable, {tally.delivered} delivered, {tally.sent} sent, "
        f"{tally.uncertain} uncertain ({tally.delivered_uncertain} of them delivered), 0 lost, 0 duplicates, "
        f"{attempts} attempts, {time.monotonic() - started:.0f}s"
    )
