"""Store connections kept open between the requests of a web endpoint.

Opening a store connection per request costs an Airflow connection lookup and a PostgreSQL
session start, most of a webhook request's time (bench/bench_feedback.py). A few idle
connections are kept instead, per process: a request takes one, returns it when it is done
and still healthy (idle, not in a transaction, not closed), or closes it. A connection that
broke while idle (the store restarted) is noticed when the request's first statement fails;
the request then fails, and the caller answers 503 so the sender retries.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING

from psycopg.pq import TransactionStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import psycopg


class IdleConnections:
    """At most ``keep`` idle connections made by ``connect`` (autocommit ones)."""

    def __init__(self, connect: Callable[[], psycopg.Connection], keep: int = 4) -> None:
        self._connect = connect
        self._keep = keep
        self._idle: list[psycopg.Connection] = []
        self._lock = threading.Lock()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None or conn.closed:
            conn = self._connect()
        try:
            yield conn
        except BaseException:
            conn.close()  # its state is unknown: never reused
            raise
        if conn.closed or conn.info.transaction_status != TransactionStatus.IDLE:
            conn.close()
            return
        with self._lock:
            if len(self._idle) < self._keep:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
