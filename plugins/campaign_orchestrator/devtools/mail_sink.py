"""A local SMTP sink: every message it receives becomes one ``.eml`` file in a folder.

Point a campaign's SMTP connection at it to see exactly what would have been sent, without
sending anything. Each file holds the message's DATA bytes exactly as received (CRLF line
ends, dot-unstuffed) and is named ``<UTC timestamp>-<counter>-<first recipient>.eml``, e.g.
``20261127T080000123456Z-000001-jane.doe@example.com.eml``; files appear atomically, so a
reader polling the folder never sees half a message.

In a program (tests, ``make demo``)::

    controller, port = start_mail_sink(".mailbox")   # a free port on 127.0.0.1
    ...
    controller.stop()

From a shell, in the foreground (Ctrl-C stops it)::

    python -m campaign_orchestrator.devtools.mail_sink --dir .mailbox --port 1025

or in the background for a Makefile, with the pid in ``<dir>/sink.pid`` and the log in
``<dir>/sink.log``::

    python -m campaign_orchestrator.devtools.mail_sink --dir .mailbox --port 1025 --daemon
    python -m campaign_orchestrator.devtools.mail_sink --dir .mailbox --stop
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from aiosmtpd.controller import Controller

if TYPE_CHECKING:
    from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger(__name__)

MODULE = "campaign_orchestrator.devtools.mail_sink"
PID_FILE = "sink.pid"
LOG_FILE = "sink.log"
_UNSAFE = re.compile(r"[^A-Za-z0-9@._+-]")
_BIND_ATTEMPTS = 5
_READY_TIMEOUT = 3.0


class MailboxHandler:
    """aiosmtpd handler writing each message to ``directory`` as one ``.eml`` file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._counter = itertools.count(1)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd API
        data = envelope.original_content if envelope.original_content is not None else envelope.content
        if isinstance(data, str):  # only with decode_data=True, which this sink does not use
            data = data.encode("utf-8", "surrogateescape")
        path = self.save(bytes(data or b""), [str(r) for r in envelope.rcpt_tos])
        log.debug("%s: %d bytes from %s", path.name, len(data or b""), envelope.mail_from)
        return "250 Message accepted for delivery"

    def save(self, data: bytes, recipients: list[str]) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        recipient = _UNSAFE.sub("_", recipients[0])[:120] if recipients else "no-recipient"
        name = f"{stamp}-{next(self._counter):06d}-{recipient}.eml"
        partial = self.directory / f".{name}.part"
        partial.write_bytes(data)
        final = self.directory / name
        os.replace(partial, final)
        return final


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (another process may still take it first)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def start_mail_sink(directory: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 0) -> tuple[Controller, int]:
    """Start the sink in a background thread; return its controller and port.

    :param directory: the mailbox folder, created if missing.
    :param host: the address to listen on.
    :param port: the port; 0 picks a free one (retried if another process takes it first).
    :returns: ``(controller, port)``; ``controller.stop()`` shuts the sink down.
    """
    folder = Path(directory).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    handler = MailboxHandler(folder)
    last_error: Exception | None = None
    for _ in range(_BIND_ATTEMPTS if port == 0 else 1):
        chosen = port or free_port(host)
        controller = Controller(
            handler,
            hostname=host,
            port=chosen,
            ready_timeout=_READY_TIMEOUT,
            server_hostname="campaign-mail-sink",
            enable_SMTPUTF8=True,
        )
        try:
            controller.start()
        except OSError as exc:  # the port was taken between choosing and binding it
            last_error = exc
            controller.loop.close()
            continue
        log.info("Mail sink on %s:%d writing to %s", host, chosen, folder)
        return controller, chosen
    assert last_error is not None
    raise last_error


# -- command line --------------------------------------------------------------------------


def read_pid(folder: Path) -> int | None:
    """The pid in ``<folder>/sink.pid`` if that process is alive, else None."""
    try:
        pid = int((folder / PID_FILE).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, owned by someone else
        return pid
    return pid


def run_foreground(folder: Path, host: str, port: int) -> int:
    controller, port = start_mail_sink(folder, host, port)
    pid_file = folder / PID_FILE
    pid_file.write_text(f"{os.getpid()}\n")
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    print(f"Mail sink listening on {host}:{port}, writing .eml files to {folder} (Ctrl-C stops it)", flush=True)
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        controller.stop()
        if read_pid(folder) == os.getpid():
            pid_file.unlink(missing_ok=True)
    print("Mail sink stopped", flush=True)
    return 0


def start_daemon(folder: Path, host: str, port: int, timeout: float = 15.0) -> int:
    running = read_pid(folder)
    if running is not None:
        print(f"Mail sink already running (pid {running}); stop it with --stop")
        return 0
    port = port or free_port(host)
    (folder / PID_FILE).unlink(missing_ok=True)
    command = [sys.executable, "-m", MODULE, "--dir", str(folder), "--host", host, "--port", str(port)]
    with open(folder / LOG_FILE, "ab") as log_file:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (folder / LOG_FILE).read_text(errors="replace")[-2000:]
            print(f"Mail sink failed to start (exit code {process.returncode}):\n{tail}", file=sys.stderr)
            return 1
        if read_pid(folder) == process.pid:  # written once the server accepts connections
            print(f"Mail sink running (pid {process.pid}) on {host}:{port}, writing .eml files to {folder}")
            return 0
        time.sleep(0.1)
    process.terminate()
    print(f"Mail sink did not start within {timeout:.0f}s; see {folder / LOG_FILE}", file=sys.stderr)
    return 1


def stop_daemon(folder: Path, timeout: float = 10.0) -> int:
    pid = read_pid(folder)
    if pid is None:
        (folder / PID_FILE).unlink(missing_ok=True)
        print("Mail sink is not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if read_pid(folder) is None:
            (folder / PID_FILE).unlink(missing_ok=True)
            print(f"Mail sink stopped (pid {pid})")
            return 0
        time.sleep(0.1)
    print(f"Mail sink (pid {pid}) did not stop within {timeout:.0f}s", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python -m {MODULE}",
        description="Local SMTP sink: every message received is kept as one .eml file.",
    )
    parser.add_argument("--dir", type=Path, default=Path(".mailbox"), help="mailbox folder (default: .mailbox)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=1025, help="port; 0 picks a free one (default: 1025)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--daemon", action="store_true", help=f"run in the background; pid in <dir>/{PID_FILE}")
    mode.add_argument("--stop", action="store_true", help="stop the background sink of <dir>")
    mode.add_argument("--status", action="store_true", help="exit 0 if the sink of <dir> runs, 1 if not")
    args = parser.parse_args(argv)

    folder = args.dir.resolve()
    if args.stop:
        return stop_daemon(folder)
    if args.status:
        pid = read_pid(folder)
        print(f"Mail sink running (pid {pid})" if pid else "Mail sink is not running")
        return 0 if pid else 1
    folder.mkdir(parents=True, exist_ok=True)
    if args.daemon:
        return start_daemon(folder, args.host, args.port)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-connection chatter
    return run_foreground(folder, args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
