"""Register an Airflow DAG run in the store, so ledger rows can carry a small run key.

A run is found by its Airflow run id, and a scheduled slot (the campaign and its logical
date) is sent at most once, whatever Airflow does with its run rows: ``airflow dags test
<dag> <date>`` run twice, or a DAG run deleted and created again, gives the same slot a new
run id. The newcomer then *adopts* the slot's existing run (and with it the frozen audience
and the ledger), so what was sent is not sent again and what was not is sent now. Only the
trigger parameter ``resend_slot`` sends a slot a second time, as a new generation with a
ledger of its own. Dry runs neither adopt nor are adopted: rendering to files is not a send.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

if TYPE_CHECKING:
    from datetime import datetime

    import psycopg

log = logging.getLogger(__name__)

_SLOT_LOCK_NAMESPACE = 726_374_003  # advisory-lock class of slot registrations


@dataclass(frozen=True)
class RegisteredRun:
    """The store's run for an Airflow DAG run.

    :param adopted_from: the Airflow run id whose run (and ledger) this DAG run carries on,
        when Airflow recreated the slot's run under a new id.
    :param generation: 0 for a slot's first send, 1… for deliberate resends (``resend_slot``).
    """

    run_key: int
    adopted_from: str | None = None
    generation: int = 0
    resent: bool = False
    """A new generation of a slot sent before, by ``resend_slot``."""

    def describe(self, campaign_id: str, logical_date: datetime | None) -> str:
        if self.adopted_from is not None:
            return (
                f"Slot {logical_date} of {campaign_id} was already run as {self.adopted_from} (Airflow "
                f"recreated the run under a new id): carrying on from its ledger (run_key {self.run_key}); "
                "messages already sent are not sent again. To send this slot a second time on purpose, "
                "trigger it with resend_slot: true."
            )
        if self.resent:
            return (
                f"Deliberate resend of slot {logical_date} of {campaign_id} (resend_slot): generation "
                f"{self.generation}, a new ledger (run_key {self.run_key})."
            )
        return f"Run of {campaign_id} registered as run_key {self.run_key}"


def register_run(
    conn: psycopg.Connection,
    campaign_id: str,
    dag_run_id: str,
    logical_date: datetime | None,
    params: dict[str, Any],
) -> int:
    """The run key of this DAG run (see :func:`register_dag_run`)."""
    return register_dag_run(conn, campaign_id, dag_run_id, logical_date, params).run_key


def register_dag_run(
    conn: psycopg.Connection,
    campaign_id: str,
    dag_run_id: str,
    logical_date: datetime | None,
    params: dict[str, Any],
    *,
    resend_slot: bool = False,
) -> RegisteredRun:
    """Return this DAG run's store run, creating or adopting it on first call (idempotent:
    a retried or cleared task finds the same run)."""
    dry_run = bool(params.get("dry_run"))
    with conn.transaction():
        if logical_date is not None:
            # Two recreated runs of one slot registering at once must not both adopt it.
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_SLOT_LOCK_NAMESPACE, _slot_key(campaign_id, logical_date)))
        row = conn.execute(
            """
            UPDATE campaign.run SET status = 'running', finished_at = NULL
            WHERE campaign_id = %s AND dag_run_id = %s
            RETURNING run_key, slot_generation
            """,
            (campaign_id, dag_run_id),
        ).fetchone()
        if row is not None:
            return RegisteredRun(int(row[0]), generation=int(row[1]))
        generation = 0
        if logical_date is not None:
            latest = conn.execute(
                """
                SELECT run_key, dag_run_id, slot_generation, coalesce((params->>'dry_run')::boolean, false)
                FROM campaign.run WHERE campaign_id = %s AND logical_date = %s
                ORDER BY slot_generation DESC LIMIT 1
                """,
                (campaign_id, logical_date),
            ).fetchone()
            if latest is not None:
                run_key, earlier_id, earlier_generation, earlier_dry = latest
                if not resend_slot and not dry_run and not earlier_dry:
                    conn.execute(
                        """
                        UPDATE campaign.run
                        SET dag_run_id = %s, replaced_run_ids = replaced_run_ids || %s::text,
                            status = 'running', finished_at = NULL
                        WHERE run_key = %s
                        """,
                        (dag_run_id, earlier_id, run_key),
                    )
                    return RegisteredRun(int(run_key), adopted_from=earlier_id, generation=int(earlier_generation))
                generation = int(earlier_generation) + 1
        row = conn.execute(
            """
            INSERT INTO campaign.run (campaign_id, dag_run_id, logical_date, params, slot_generation)
            VALUES (%s, %s, %s, %s, %s)
            RETURNING run_key
            """,
            (campaign_id, dag_run_id, logical_date, Jsonb(params), generation),
        ).fetchone()
    assert row is not None
    return RegisteredRun(int(row[0]), generation=generation, resent=resend_slot and generation > 0)


def _slot_key(campaign_id: str, logical_date: datetime) -> int:
    digest = hashlib.blake2b(f"{campaign_id}@{logical_date.isoformat()}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


def finish_run(conn: psycopg.Connection, run_key: int, succeeded: bool) -> None:
    with conn.transaction():
        conn.execute(
            "UPDATE campaign.run SET status = %s, finished_at = now() WHERE run_key = %s",
            ("succeeded" if succeeded else "failed", run_key),
        )
