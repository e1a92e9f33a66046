"""The bounce mailbox over IMAP: list, fetch and file away the reports delivered to it.

The standard library's :mod:`imaplib` is enough and adds no dependency: IMAP4 over TLS
(``IMAP4_SSL``, the default, port 993) or STARTTLS, ``UID SEARCH``/``UID FETCH`` with
``BODY.PEEK[]`` (reading does not mark anything), and ``UID MOVE`` (RFC 6851; ``COPY`` +
``\\Deleted`` + ``UID EXPUNGE`` where the server lacks it). Only messages still in the
inbox are unprocessed: a report is moved to ``processed_folder`` (or ``unmatched_folder``)
after its events are committed, never deleted. A crash between the commit and the move
leaves it in the inbox; the next read finds it again and its events are already stored
(``provider_event_id``), so nothing counts twice.

Connection ``campaign_bounces`` (see :mod:`.verp` for the return-path extras): host, port,
login, password; extras ``ssl`` (default true), ``starttls`` (with ``ssl: false``),
``ssl_ca_file`` (a private CA), ``folder`` (default ``INBOX``), ``processed_folder``
(``Processed``), ``unmatched_folder`` (``Unmatched``), ``timeout`` (seconds, 30).
"""

from __future__ import annotations

import imaplib
import re
import ssl
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from campaign_orchestrator.feedback.verp import CONN_ID

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

_FOLDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._/-]{0,99}")
_UID = re.compile(rb"\bUID (\d+)")


class MailboxError(RuntimeError):
    """The IMAP server refused a command the ingestion needs."""


class MailboxNotConfigured(RuntimeError):
    """The ``campaign_bounces`` connection lacks what reading the mailbox needs."""


@dataclass(frozen=True)
class MailboxSettings:
    """Where the bounce mailbox is and how to reach it; see the module docstring."""

    host: str
    port: int
    login: str
    password: str
    ssl: bool = True
    starttls: bool = False
    ssl_ca_file: str | None = None
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    unmatched_folder: str = "Unmatched"
    timeout: float = 30.0

    def __post_init__(self) -> None:
        for name in ("folder", "processed_folder", "unmatched_folder"):
            if not _FOLDER.fullmatch(getattr(self, name)):
                raise MailboxNotConfigured(
                    f"connection {CONN_ID!r}: {name} {getattr(self, name)!r} must be letters, digits, spaces, "
                    "'.', '_', '/' or '-'"
                )


def settings_from_connection(conn: Any) -> MailboxSettings:
    """:class:`MailboxSettings` of an Airflow connection; raises :class:`MailboxNotConfigured`."""
    extra = conn.extra_dejson or {}
    if not conn.host:
        raise MailboxNotConfigured(f"connection {conn.conn_id!r} has no host: set it to the IMAP server of the "
                                   "bounce mailbox")
    if not conn.login or not conn.password:
        raise MailboxNotConfigured(f"connection {conn.conn_id!r} needs the mailbox's login and password")
    use_ssl = _flag(extra.get("ssl"), True)
    return MailboxSettings(
        host=conn.host,
        port=int(conn.port or (993 if use_ssl else 143)),
        login=conn.login,
        password=conn.password,
        ssl=use_ssl,
        starttls=_flag(extra.get("starttls"), False),
        ssl_ca_file=extra.get("ssl_ca_file") or None,
        folder=str(extra.get("folder") or "INBOX"),
        processed_folder=str(extra.get("processed_folder") or "Processed"),
        unmatched_folder=str(extra.get("unmatched_folder") or "Unmatched"),
        timeout=float(extra.get("timeout") or 30),
    )


def _flag(value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


class BounceMailbox:
    """One IMAP session on the bounce mailbox, inbox selected; a context manager.

    :param settings: where and how to connect.
    """

    def __init__(self, settings: MailboxSettings) -> None:
        self.settings = settings
        self._client: imaplib.IMAP4 | None = None

    def __enter__(self) -> BounceMailbox:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @cached_property
    def _ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.settings.ssl_ca_file)

    def open(self) -> None:
        s = self.settings
        if s.ssl:
            client: imaplib.IMAP4 = imaplib.IMAP4_SSL(s.host, s.port, ssl_context=self._ssl_context, timeout=s.timeout)
        else:
            client = imaplib.IMAP4(s.host, s.port, timeout=s.timeout)
            if s.starttls:
                client.starttls(ssl_context=self._ssl_context)
        self._client = client
        _ok(client.login(s.login, s.password), "LOGIN")
        # Servers announce more after login (MOVE, UIDPLUS) than in their greeting.
        announced = _ok(client.capability(), "CAPABILITY")
        client.capabilities = tuple(announced[-1].decode("ascii", "replace").upper().split())
        for folder in (s.processed_folder, s.unmatched_folder):
            client.create(_quoted(folder))  # NO when it exists already: fine
        _ok(client.select(_quoted(s.folder)), f"SELECT {s.folder}")

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.logout()
        except (imaplib.IMAP4.error, OSError):
            pass  # the session is being abandoned either way

    @property
    def client(self) -> imaplib.IMAP4:
        if self._client is None:
            raise MailboxError("the mailbox is not open")
        return self._client

    def uids(self) -> list[int]:
        """The UIDs of every message in the inbox, oldest first."""
        data = _ok(self.client.uid("SEARCH", "ALL"), "UID SEARCH")
        return sorted(int(u) for u in b" ".join(d for d in data if d).split())

    def fetch(self, uids: Sequence[int]) -> list[tuple[int, bytes]]:
        """``(uid, raw message)`` for ``uids`` that still exist, without setting ``\\Seen``."""
        if not uids:
            return []
        data = _ok(self.client.uid("FETCH", _uid_set(uids), "(UID BODY.PEEK[])"), "UID FETCH")
        fetched = []
        for item in data:
            if isinstance(item, tuple) and len(item) == 2:
                match = _UID.search(item[0])
                if match:
                    fetched.append((int(match.group(1)), item[1]))
        return fetched

    def move(self, uids: Sequence[int], folder: str) -> None:
        """Move ``uids`` out of the inbox into ``folder`` (idempotent: a UID already gone is
        skipped by the server)."""
        if not uids:
            return
        client = self.client
        if "MOVE" in client.capabilities:
            _ok(client.uid("MOVE", _uid_set(uids), _quoted(folder)), f"UID MOVE to {folder}")
            return
        _ok(client.uid("COPY", _uid_set(uids), _quoted(folder)), f"UID COPY to {folder}")
        _ok(client.uid("STORE", _uid_set(uids), "+FLAGS.SILENT", r"(\Deleted)"), "UID STORE \\Deleted")
        if "UIDPLUS" in client.capabilities:
            _ok(client.uid("EXPUNGE", _uid_set(uids)), "UID EXPUNGE")
        else:
            _ok(client.expunge(), "EXPUNGE")

    def append(self, raw: bytes, folder: str | None = None) -> None:
        """Deliver ``raw`` into ``folder`` (the inbox by default): what an MTA's delivery
        does, for tests and replays."""
        _ok(self.client.append(_quoted(folder or self.settings.folder), None, None, raw), "APPEND")


def _ok(response: tuple[str, list[Any]], what: str) -> list[Any]:
    status, data = response
    if status != "OK":
        raise MailboxError(f"IMAP {what} failed: {status} {data!r}")
    return data


def _uid_set(uids: Sequence[int]) -> str:
    return ",".join(str(int(u)) for u in uids)


def _quoted(folder: str) -> str:
    return f'"{folder}"' if " " in folder else folder
