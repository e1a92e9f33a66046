"""The chaos tests' SMTP sink: aiosmtpd in the test process, so what it received survives
the send process it kills.

It keeps only the Message-ID and recipient of each accepted message (100,000 messages of a
few kB each would otherwise be held in memory), and can be armed to act when its n-th
message arrives: SIGKILL a process before the reply (the provider has the message, the
sender never learns it), refuse it and kill (nothing was accepted), kill a moment after the
reply, or drop the connection, answer 421 or 451 for a while.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.fixtures.mail import _Controller

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]+>)", re.MULTILINE | re.IGNORECASE)


@dataclass
class Trap:
    """What to do when the sink's ``at``-th message (counted since the sink started) arrives.

    ``action``:
    - ``kill_before_reply``: record the message, SIGKILL ``pid``, never answer;
    - ``kill_unaccepted``: SIGKILL ``pid`` and drop the message (not recorded);
    - ``kill_after_reply``: record and answer 250, then SIGKILL ``pid`` ``delay`` s later
      (lands wherever the sender then is: reading the reply, recording, claiming, rendering);
    - ``drop_after_data``: record, then close the connection without answering;
    - ``drop_before_data``: close the connection at this message's RCPT;
    - ``reply``: answer ``reply`` (e.g. ``451 4.7.1 rate limited``) for ``times`` messages,
      or with ``seconds``, to every message for that long after the first (a throttling
      episode: the server refuses until the sender has slowed down for a while);
    - ``call``: call ``callback()`` while the message waits for its reply (e.g. restart the
      store, commit an opt-out), then accept it.
    """

    at: int
    action: str
    pid: int | None = None
    delay: float = 0.0
    reply: str = ""
    times: int = 1
    seconds: float = 0.0
    callback: Callable[[], None] | None = None
    fired: threading.Event = field(default_factory=threading.Event)
    until: float | None = None
    """With ``seconds``: when the episode ends (set when it springs)."""


@dataclass
class ChaosHandler:
    received: list[tuple[str, str]] = field(default_factory=list)
    """(Message-ID, recipient) of every accepted message, in arrival order."""
    connections: int = 0
    traps: list[Trap] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _seen: int = 0
    """Messages that reached DATA, accepted or not: traps count these."""

    def _trap(self, kinds: tuple[str, ...]) -> Trap | None:
        """Count this message and return the trap it springs, if any."""
        with self.lock:
            self._seen += 1
            for trap in list(self.traps):
                if trap.action in kinds and trap.at <= self._seen:
                    if trap.seconds:
                        now = time.monotonic()
                        if trap.until is None:
                            trap.until = now + trap.seconds
                        if now >= trap.until:
                            self.traps.remove(trap)  # the episode is over
                            continue
                        trap.fired.set()
                        return trap
                    trap.times -= 1
                    if trap.times <= 0:
                        self.traps.remove(trap)
                    trap.fired.set()
                    return trap
        return None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 - aiosmtpd API
        with self.lock:
            number = self._seen + 1
            trap = next((t for t in self.traps if t.action == "drop_before_data" and t.at <= number), None)
            if trap is not None:
                self.traps.remove(trap)
                trap.fired.set()
        if trap is not None:
            server.transport.abort()
            return "421 dropped"  # never reaches the client
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd API
        trap = self._trap(
            ("kill_before_reply", "kill_unaccepted", "kill_after_reply", "drop_after_data", "reply", "call")
        )
        if trap is not None and trap.action == "call":
            trap.callback()
            trap = None
        if trap is not None and trap.action == "kill_unaccepted":
            os.kill(trap.pid, signal.SIGKILL)
            server.transport.abort()
            return "451 never sent"
        if trap is not None and trap.action == "reply":
            return trap.reply
        self._record(envelope)
        if trap is None:
            return "250 OK"
        if trap.action == "kill_before_reply":
            os.kill(trap.pid, signal.SIGKILL)
            server.transport.abort()
            return "250 never sent"
        if trap.action == "drop_after_data":
            server.transport.abort()
            return "250 never sent"
        # kill_after_reply
        asyncio.get_running_loop().call_later(trap.delay, _kill_quietly, trap.pid)
        return "250 OK"

    def _record(self, envelope) -> None:
        head = bytes(envelope.original_content[:8192])
        found = _MESSAGE_ID.search(head)
        message_id = found.group(1).decode() if found else ""
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.received.append((message_id, rcpt))

    def by_message_id(self) -> Counter:
        with self.lock:
            return Counter(mid for mid, _ in self.received)


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:  # it finished first
        pass


@dataclass
class ChaosSink:
    host: str
    port: int
    handler: ChaosHandler
    conn_id: str = "smtp_chaos"

    def conn_uri(self) -> str:
        return f"smtp://{self.host}:{self.port}?disable_ssl=true&disable_tls=true&timeout=30&retry_limit=0"

    def env(self) -> dict[str, str]:
        return {f"AIRFLOW_CONN_{self.conn_id.upper()}": self.conn_uri()}

    def arm(self, trap: Trap) -> Trap:
        with self.handler.lock:
            self.handler.traps.append(trap)
        return trap


@contextmanager
def chaos_sink() -> Iterator[ChaosSink]:
    # aiosmtpd logs every command at INFO: 100,000 messages would spend most of the time there.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    handler = ChaosHandler()
    controller = _Controller(handler, hostname="127.0.0.1", port=0)
    controller.start()
    try:
        yield ChaosSink("127.0.0.1", controller.port, handler)
    finally:
        controller.stop()
