"""A small pool of store connections for an endpoint that writes on every request.

Opening a PostgreSQL connection (and looking the Airflow connection up) costs milliseconds,
many times a request's own work, so the tracking endpoint's request threads share a few
open connections instead. A connection that broke, or that a request left inside a
transaction, is closed rather than handed to the next request.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING

from psycopg.pq import TransactionStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import psycopg


class PoolTimeout(RuntimeError):
    """No connection became free in time."""


class ConnectionPool:
    """At most ``size`` connections from ``connect``, each given to one thread at a time.

    :param connect: opens an autocommit connection (``store_connection``).
    :param size: connections kept open at most; more requests at once wait for one.
    :param configure: run once on each new connection (session settings).
    :param timeout: seconds a request waits for a free connection before :class:`PoolTimeout`.
    """

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection],
        size: int = 4,
        configure: Callable[[psycopg.Connection], None] | None = None,
        timeout: float = 10.0,
    ) -> None:
        if size < 1:
            raise ValueError("a pool needs at least one connection")
        self._connect, self._configure, self._timeout = connect, configure, timeout
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[psycopg.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A connection for the block; it goes back to the pool after, unless unusable."""
        if not self._slots.acquire(timeout=self._timeout):
            raise PoolTimeout(f"no store connection became free within {self._timeout:.0f} s")
        conn = None
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self._open()
            yield conn
        finally:
            if conn is not None:
                reusable = not (conn.closed or conn.broken) and conn.info.transaction_status == TransactionStatus.IDLE
                with self._lock:
                    if reusable and not self._closed:
                        self._idle.append(conn)
                        conn = None
                if conn is not None:
                    conn.close()
            self._slots.release()

    def _open(self) -> psycopg.Connection:
        conn = self._connect()
        try:
            if self._configure is not None:
                self._configure(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        """Close the idle connections, and those in use when they are given back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


__all__ = ["ConnectionPool", "PoolTimeout"]
