"""Send one batch of a step exactly once, with the ledger as the source of truth.

The protocol, per batch (a seq range of one step of one run):

1. Take a session-level advisory lock on the batch. A second attempt of the same batch (a
   retry while a zombie attempt still runs) waits here instead of sending in parallel; a
   dead attempt's lock is gone with its connection.
2. Rows left in ``sending`` can only come from an attempt that died between claiming and
   recording them: the provider may or may not have accepted them. They become
   ``uncertain`` (reported, not resent) or, with ``on_uncertain: resend``, ``pending``.
3. Claim a chunk of ``pending`` rows (``sending``), re-checking consent and suppression.
   Claims move forward through the batch's seqs; a pass ends with one claim from the start,
   for rows passed over because they were not due yet.
4. Render and send the chunk over the batch's single provider session.
5. Record every outcome in one statement; rows the provider did not take go back to
   ``pending``. Without a rate limiter, that statement is committed together with the next
   claim (one commit per chunk); otherwise on its own, before waiting for tokens. Repeat
   from 3. A chunk the provider throttled (every ``retry`` is ``throttled``) is waited out
   in place, a few times per batch; any other ``retry`` outcome ends the batch with
   :class:`TransientSendError` so Airflow retries the task after its delay. If the store goes away during this write (a restart),
   the outcomes are written on a new connection once it is back, and the batch ends the
   same way.

So a retried, cleared or re-run batch never resends a ``sent`` row and never skips a
``pending`` one. The only window is a hard kill (SIGKILL, power loss) between the provider
accepting a message and step 5's commit: at most one chunk, reported as ``uncertain``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import datetime, timezone
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from campaign_orchestrator.channels.base import (
    BatchStats,
    Outbound,
    Outcome,
    Recipient,
    RenderRejected,
    Renderer,
    Sender,
    TransientSendError,
)
from campaign_orchestrator.channels.registry import CHANNELS
from campaign_orchestrator.run.policies import apply_frequency_caps, quiet_hours_sql
from campaign_orchestrator.run.targeting import channel_params
from campaign_orchestrator.run.throttle import NoLimit
from campaign_orchestrator.sqlfiles import query

if TYPE_CHECKING:
    from collections.abc import Iterator

    from campaign_orchestrator.config.channels import Step
    from campaign_orchestrator.run.enrichment import Enrichment
    from campaign_orchestrator.run.policies import FrequencyCap, QuietHours
    from campaign_orchestrator.run.throttle import RateLimiter

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 100


@dataclass(frozen=True)
class Batch:
    index: int
    of: int
    lo: int
    hi: int
    size: int

    @classmethod
    def from_xcom(cls, value: dict[str, int]) -> Batch:
        return cls(**{k: int(value[k]) for k in ("index", "of", "lo", "hi", "size")})

    def label(self) -> str:
        return f"batch {self.index}/{self.of} · {self.size:,} msgs"


def batch_lock_key(run_key: int, step_id: str, batch: Batch) -> int:
    digest = hashlib.blake2b(f"{run_key}:{step_id}:{batch.lo}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def batch_lock(lock_conn: psycopg.Connection, key: int) -> Iterator[None]:
    lock_conn.execute("SELECT pg_advisory_lock(%s)", (key,))
    try:
        yield
    finally:
        try:
            lock_conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        except psycopg.OperationalError:
            # The session is gone (the store restarted) and the lock with it; raising here
            # would hide the error that ended the batch.
            pass


@dataclass(frozen=True)
class _Outcomes:
    """A sent chunk: its recipients, the provider's outcomes and the ledger status of each."""

    recipients: Sequence[Recipient]
    outcomes: Sequence[Outcome]
    status: list[str]

    @property
    def retry(self) -> int:
        return self.status.count("pending")


class CircuitBreakerOpen(RuntimeError):
    """Too many messages of a batch failed: stop instead of burning the list."""


@dataclass(frozen=True)
class SendPolicy:
    """When a batch stops on its own: the run's send window and the error-rate breaker."""

    deadline: datetime | None = None
    max_error_rate: float = 1.0
    min_messages: int = 50
    throttle_backoffs: int = 4
    """Times a batch backs off in place when the provider throttles, before failing the task."""
    backoff_base_s: float = 1.0
    store_reconnect_s: float = 60.0
    """How long a batch whose store connection broke while recording a chunk's outcomes
    keeps trying to record them on a new connection (a store restart or failover)."""


class BatchSender:
    """Runs the protocol above for one batch; channel details come from renderer and sender."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection],
        run_key: int,
        step: Step,
        renderer: Renderer,
        open_sender: Callable[[], Sender],
        on_uncertain: str = "skip",
        chunk_size: int = DEFAULT_CHUNK,
        limiter: RateLimiter | None = None,
        policy: SendPolicy | None = None,
        dry_run: bool = False,
        frequency_caps: Sequence[FrequencyCap] = (),
        quiet_hours: Sequence[QuietHours] = (),
        clock: Callable[[], datetime] | None = None,
        enrichment: Enrichment | None = None,
    ) -> None:
        self.connect = connect
        self.run_key = run_key
        self.step = step
        self.renderer = renderer
        self.open_sender = open_sender
        self.on_uncertain = on_uncertain
        self.limiter = limiter or NoLimit()
        self.policy = policy or SendPolicy()
        self.dry_run = dry_run
        self.caps = [c for c in frequency_caps if c.applies_to(step.channel, step.purpose)]
        self.quiet = [r for r in quiet_hours if step.channel in r.channels]
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.enrichment = enrichment
        # A chunk never exceeds the bucket's burst: one take, one claim, one provider call, so
        # the provider sees at most rate + burst messages in any second.
        self.chunk_size = max(1, int(min(chunk_size, self.limiter.burst)))
        self.spec = CHANNELS[step.channel]
        self._claim_sql = query(
            "claim_messages",
            normalized=sql.SQL(self.spec.normalized_sql),  # type: ignore[arg-type]  # registry's own SQL
            quiet=quiet_hours_sql(self.quiet),
            # Numbered aliases: a template may name a profile column the CTEs also select.
            profile_fields=sql.SQL("").join(
                sql.SQL(", p.{} AS {}").format(sql.Identifier(f), sql.Identifier(f"field_{i}"))
                for i, f in enumerate(renderer.profile_fields)
            ),
            claimed_fields=sql.SQL("").join(
                sql.SQL(", candidate.{}").format(sql.Identifier(f"field_{i}")) for i in range(len(renderer.profile_fields))
            ),
            returned_fields=sql.SQL("").join(
                sql.SQL(", claimed.{}").format(sql.Identifier(f"field_{i}")) for i in range(len(renderer.profile_fields))
            ),
        )

    def run(self, batch: Batch) -> BatchStats:
        stats = BatchStats()
        lock_conn = self.connect()
        conn = self.connect()
        try:
            with batch_lock(lock_conn, batch_lock_key(self.run_key, self.step.id, batch)):
                stats.uncertain += self._settle_dead_attempt(conn, batch)
                self._send_all(conn, batch, stats)
        finally:
            conn.close()
            lock_conn.close()
        return stats

    def _settle_dead_attempt(self, conn: psycopg.Connection, batch: Batch) -> int:
        resend = self.on_uncertain == "resend"
        rows = conn.execute(
            """
            UPDATE campaign.message
            SET status = %(status)s, reason = %(reason)s, updated_at = now()
            WHERE run_key = %(run_key)s AND step_id = %(step_id)s
              AND seq BETWEEN %(lo)s AND %(hi)s AND status = 'sending'
            RETURNING profile_id
            """,
            {
                "status": "pending" if resend else "uncertain",
                "reason": None if resend else "attempt_died_during_send",
                "run_key": self.run_key,
                "step_id": self.step.id,
                "lo": batch.lo,
                "hi": batch.hi,
            },
        ).fetchall()
        if rows:
            log.warning(
                "%s: %d messages were claimed by an attempt that died mid-send; %s",
                batch.label(),
                len(rows),
                "they will be sent again (on_uncertain: resend)" if resend else "they are reported as uncertain",
            )
        return 0 if resend else len(rows)

    def _send_all(self, conn: psycopg.Connection, batch: Batch, stats: BatchStats) -> None:
        started = time.monotonic()
        self._send_loop(conn, batch, stats, started)
        # Left pending on purpose: quiet hours in the recipient's time zone, or a send time
        # (not_before) still ahead. The task defers and a later attempt sends them.
        deferred, due = conn.execute(
            "SELECT count(*), min(not_before) FILTER (WHERE not_before > %s) FROM campaign.message "
            "WHERE run_key = %s AND step_id = %s AND seq BETWEEN %s AND %s AND status = 'pending'",
            (self.clock(), self.run_key, self.step.id, batch.lo, batch.hi),
        ).fetchone()
        stats.deferred, stats.resume_at = int(deferred), due

    def _send_loop(self, conn: psycopg.Connection, batch: Batch, stats: BatchStats, started: float) -> None:
        done = 0
        backoffs = 0
        # A chunk's outcomes, tallied but not yet written: they go into the same transaction
        # as the next claim, so a chunk costs one commit (one WAL flush) instead of two. Only
        # when nothing can come between (no rate limiter to wait for, nothing to retry):
        # rows are 'sending' only for as long as a claim statement then, as they would be for
        # the record statement, and a killed worker leaves the same single chunk uncertain.
        carried: _Outcomes | None = None
        # Seqs up to here were claimed or passed over (not yet due) in this pass.
        after = batch.lo - 1
        with self.open_sender() as sender:
            try:
                while True:
                    if carried is not None and not self._may_carry():
                        self._write(conn, carried)
                        carried = None
                    # Wait for the rate before claiming: rows are 'sending' only while the
                    # provider is called, so a worker killed while waiting leaves nothing uncertain.
                    self.limiter.acquire(min(self.chunk_size, max(1, batch.size - done)))
                    if self._window_closed(conn, batch, stats):
                        break
                    # _claim writes them even when the claim fails: they are no longer carried.
                    previous, carried = carried, None
                    recipients, late, last = self._claim(conn, batch, previous, after)
                    stats.excluded_late += late
                    done += late
                    if last is None:
                        if after < batch.lo:
                            break
                        # The end of the pass: once more from the start, for rows passed over
                        # because they were not due yet and have come due since.
                        after = batch.lo - 1
                        continue
                    after = last
                    if not recipients:
                        continue
                    outcomes = self._send_chunk(sender, recipients)
                    written = _Outcomes(recipients, outcomes, self._tally(outcomes, stats))
                    retry = written.retry
                    done += len(recipients)
                    if retry or not self._may_carry():
                        self._write(conn, written)
                    else:
                        carried = written
                    self._log_progress(batch, done, started, stats)
                    self._check_error_rate(batch, stats)
                    if retry and self._back_off(outcomes, batch, backoffs):
                        backoffs += 1
                        after = batch.lo - 1  # the throttled rows are pending again
                        continue
                    if retry:
                        raise TransientSendError(
                            f"{batch.label()}: {retry} messages could not be sent now "
                            f"({', '.join(o.error or o.reason or '?' for o in outcomes if o.status == 'retry')[:300]}); "
                            f"{stats.sent} were sent and recorded; the retry sends only what is still pending"
                        )
            finally:
                # Whatever ends the loop (the error-rate breaker, a failed claim, a signal),
                # outcomes the provider gave are written before the task lets go.
                if carried is not None:
                    self._write(conn, carried)

    def _may_carry(self) -> bool:
        # A send window only compares the clock between chunks (and, once it has closed,
        # excludes pending rows, which carried outcomes are not): nothing waits in between.
        return isinstance(self.limiter, NoLimit)

    def _back_off(self, outcomes: Sequence[Outcome], batch: Batch, backoffs: int) -> bool:
        """Throttled by the provider: wait and carry on with just those messages (they are
        pending again) instead of failing the task, a few times per batch."""
        retried = [o for o in outcomes if o.status == "retry"]
        if not retried or any(o.reason != "throttled" for o in retried) or backoffs >= self.policy.throttle_backoffs:
            return False
        delay = self.policy.backoff_base_s * 2**backoffs
        log.warning("%s: %d messages throttled by the provider; backing off %.1fs", batch.label(), len(retried), delay)
        time.sleep(delay)
        return True

    def _window_closed(self, conn: psycopg.Connection, batch: Batch, stats: BatchStats) -> bool:
        """Past the send window, what is still pending is excluded and counted, not dropped."""
        deadline = self.policy.deadline
        if deadline is None or self.clock() < deadline:
            return False
        expired = conn.execute(
            """
            UPDATE campaign.message SET status = 'excluded', reason = 'send_window_expired', updated_at = now()
            WHERE run_key = %s AND step_id = %s AND seq BETWEEN %s AND %s AND status = 'pending'
            """,
            (self.run_key, self.step.id, batch.lo, batch.hi),
        ).rowcount
        stats.excluded_late += expired
        log.warning("%s: the send window closed at %s; %d pending messages excluded", batch.label(), deadline, expired)
        return True

    def _check_error_rate(self, batch: Batch, stats: BatchStats) -> None:
        attempted = stats.sent + stats.failed
        if attempted < self.policy.min_messages or stats.failed <= self.policy.max_error_rate * attempted:
            return
        reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(stats.failures.items()))
        raise CircuitBreakerOpen(
            f"{batch.label()}: {stats.failed} of {attempted} messages failed ({stats.failed / attempted:.0%} > "
            f"guardrails.max_error_rate {self.policy.max_error_rate:.0%}; {reasons}). Stopped instead of burning "
            f"the list: the rest stay pending. Fix the cause, then clear the task to resume"
        )

    def _claim(
        self, conn: psycopg.Connection, batch: Batch, carried: _Outcomes | None = None, after: int = 0
    ) -> tuple[list[Recipient], int, int | None]:
        """Claim the next chunk of seqs above ``after``: its sendable recipients, how many were
        excluded late, and the last seq it covered (None when there was nothing to claim).

        ``carried`` outcomes of the previous chunk are written first, in the same
        transaction; if that transaction fails they are written on their own."""
        if carried is None:
            return self._claim_in_transaction(conn, batch, None, after)
        try:
            return self._claim_in_transaction(conn, batch, carried, after)
        except BaseException:
            self._write(conn, carried)
            raise

    def _claim_in_transaction(
        self, conn: psycopg.Connection, batch: Batch, carried: _Outcomes | None, after: int
    ) -> tuple[list[Recipient], int, int | None]:
        params = {
            "run_key": self.run_key,
            "step_id": self.step.id,
            "lo": max(batch.lo, after + 1),
            "hi": batch.hi,
            "chunk": self.chunk_size,
            "now": self.clock(),
            # One fallback per channel: if any of its rules discards, its quiet windows discard.
            "quiet_defer": bool(self.quiet) and not any(r.fallback == "discard" for r in self.quiet),
            "quiet_discard": any(r.fallback == "discard" for r in self.quiet),
            **channel_params(self.step),
        }
        fields = self.renderer.profile_fields
        recipients: list[Recipient] = []
        late = 0
        last = None
        with conn.transaction():
            if carried is not None:
                self._write_outcomes(conn, carried.recipients, carried.outcomes, carried.status)
            for row in conn.execute(self._claim_sql, params):
                last = row[4]
                if row[3] != "sending":
                    late += 1
                    continue
                recipients.append(Recipient(row[0], row[1], row[2], dict(zip(fields, row[5:]))))
            if self.caps:
                recipients, capped = apply_frequency_caps(
                    conn, self.caps, self.run_key, self.step.id, self.step.channel, recipients
                )
                late += len(capped)
            if self.enrichment is not None and recipients:
                # The entity fields the templates read, one statement per chunk (run/enrichment.py).
                recipients, gone = self.enrichment.attach_claimed(conn, self.run_key, self.step.id, recipients)
                late += gone
        return recipients, late, last

    def _send_chunk(self, sender: Sender, recipients: Sequence[Recipient]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(recipients)
        outbound: list[Outbound] = []
        positions: list[int] = []
        for i, recipient in enumerate(recipients):
            try:
                outbound.append(self.renderer.render(recipient))
                positions.append(i)
            except RenderRejected as exc:
                outcomes[i] = Outcome("failed", reason=exc.reason, error=str(exc)[:1000])
            except Exception as exc:  # a broken message must not block the others
                log.error("Cannot render the message for profile %s: %s", recipient.profile_id, exc)
                outcomes[i] = Outcome("failed", reason="render_error", error=str(exc)[:1000])
        if outbound:
            try:
                sent = sender.send(outbound)
            except Exception as exc:  # sender broke before returning outcomes: nothing was confirmed
                log.exception("The sender failed before reporting outcomes")
                sent = [Outcome("uncertain", reason="sender_crashed", error=str(exc)[:1000])] * len(outbound)
            if len(sent) != len(outbound):
                raise RuntimeError(f"sender returned {len(sent)} outcomes for {len(outbound)} messages")
            for pos, item, outcome in zip(positions, outbound, sent):
                # Our own Message-ID where the provider gives none, and units known at render
                # time; built directly, as dataclasses.replace costs a few µs per message.
                status = outcome.status
                message_id = outcome.provider_message_id
                if status == "sent" and not message_id:
                    message_id = item.message_id
                units = outcome.units
                if units is None and status in ("sent", "uncertain"):
                    units = item.units
                if message_id != outcome.provider_message_id or units != outcome.units:
                    outcome = Outcome(status, message_id, outcome.reason, outcome.error, units, outcome.disable_address)
                outcomes[pos] = outcome
        return [o for o in outcomes if o is not None]

    def _tally(self, outcomes: Sequence[Outcome], stats: BatchStats) -> list[str]:
        """Count a chunk's outcomes and return the ledger status each message takes."""
        status: list[str] = []
        for outcome in outcomes:
            if outcome.status == "sent":
                stats.sent += 1
                status.append("rendered" if self.dry_run else "sent")
            elif outcome.status == "failed":
                stats.count_failure(outcome.reason or "failed")
                status.append("failed")
            elif outcome.status == "uncertain":
                stats.uncertain += 1
                status.append("uncertain")
            else:
                stats.returned_to_pending += 1
                status.append("pending")
        return status

    def _write(self, conn: psycopg.Connection, chunk: _Outcomes) -> None:
        """Write a chunk's outcomes in their own transaction (rows go back to pending for a
        ``retry``). If the store connection broke, they are written on a new one once the
        store is back, and the batch stops so the task's retry resumes from the ledger."""
        try:
            with conn.transaction():
                self._write_outcomes(conn, chunk.recipients, chunk.outcomes, chunk.status)
        except psycopg.OperationalError as exc:
            if not conn.broken:
                raise
            self._write_outcomes_on_new_connection(chunk.recipients, chunk.outcomes, chunk.status, exc)
            raise TransientSendError(
                f"the store connection broke while recording {len(chunk.recipients)} outcomes; they were "
                f"recorded on a new connection; the retry resumes from the ledger"
            ) from exc

    def _write_outcomes_on_new_connection(
        self, recipients: Sequence[Recipient], outcomes: Sequence[Outcome], status: list[str], lost: Exception
    ) -> None:
        """The provider has answered for these messages but the store went away (a restart, a
        failover). Left ``sending``, they would be reported uncertain, or with ``on_uncertain:
        resend`` sent twice: write them as soon as the store is back. The batch then stops
        (its advisory lock went with the old session) and the task's retry resumes."""
        deadline = time.monotonic() + self.policy.store_reconnect_s
        delay = 0.5
        log.warning("The store connection broke while recording %d outcomes (%s); reconnecting", len(recipients), lost)
        while True:
            try:
                with self.connect() as fresh, fresh.transaction():
                    self._write_outcomes(fresh, recipients, outcomes, status)
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() + delay > deadline:
                    log.error("Could not record %d outcomes: they stay 'sending' (uncertain): %s", len(recipients), exc)
                    raise lost from exc
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _write_outcomes(
        self, conn: psycopg.Connection, recipients: Sequence[Recipient], outcomes: Sequence[Outcome], status: list[str]
    ) -> None:
        """Inside the caller's transaction: rows still ``sending`` take their outcome (a row
        settled by another attempt meanwhile is left alone, so writing twice changes nothing)."""
        conn.execute(
            """
            UPDATE campaign.message m
            SET status = v.status,
                provider_message_id = v.provider_message_id,
                reason = v.reason,
                error = v.error,
                units = v.units,
                sent_at = CASE WHEN v.status IN ('sent', 'rendered') THEN now() END,
                updated_at = now()
            FROM unnest(%(profile_id)s::bigint[], %(entity_key)s::text[], %(status)s::text[],
                        %(provider_message_id)s::text[], %(reason)s::text[], %(error)s::text[],
                        %(units)s::integer[])
                 AS v(profile_id, entity_key, status, provider_message_id, reason, error, units)
            WHERE m.run_key = %(run_key)s AND m.step_id = %(step_id)s
              AND m.profile_id = v.profile_id AND m.entity_key = v.entity_key
              AND m.status = 'sending'
            """,
            {
                "run_key": self.run_key,
                "step_id": self.step.id,
                "profile_id": [r.profile_id for r in recipients],
                "entity_key": [r.entity_key for r in recipients],
                "status": status,
                "provider_message_id": [o.provider_message_id for o in outcomes],
                "reason": [o.reason for o in outcomes],
                "error": [o.error for o in outcomes],
                "units": [o.units for o in outcomes],
            },
        )
        dead = [r.profile_id for r, o in zip(recipients, outcomes) if o.disable_address]
        if dead and self.step.channel == "push":
            # Not retried next run: the profile is excluded until a new token arrives.
            conn.execute(
                """
                UPDATE crm.profile SET push_disabled_at = now(), push_disabled_reason = 'provider_disabled'
                WHERE profile_id = ANY(%s) AND push_disabled_at IS NULL
                """,
                (dead,),
            )

    def _log_progress(self, batch: Batch, done: int, started: float, stats: BatchStats) -> None:
        elapsed = max(time.monotonic() - started, 1e-6)
        rate = done / elapsed
        eta = (batch.size - done) / rate if rate else 0.0
        log.info(
            "%s: %d/%d processed (%d sent, %d failed) · %.0f msg/s · ETA %.0fs",
            batch.label(),
            done,
            batch.size,
            stats.sent,
            stats.failed,
            rate,
            max(eta, 0.0),
        )


def outcome_summary(stats: BatchStats) -> dict[str, Any]:
    return stats.as_dict()
