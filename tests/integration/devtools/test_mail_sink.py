"""The local SMTP sink: messages sent with smtplib come back as .eml files, byte for byte."""

from __future__ import annotations

import email
import email.policy
import smtplib
import subprocess
import sys
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

import pytest

from campaign_orchestrator.devtools.mail_sink import PID_FILE, free_port, read_pid, start_mail_sink

pytestmark = pytest.mark.integration


def _message(index: int, recipient: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Wanderly <offers@wanderly.example>"
    msg["To"] = recipient
    msg["Subject"] = f"Test {index}: Zoé's trip"
    msg["Message-ID"] = f"<test-{index}@wanderly.example>"
    # A line starting with a dot checks that the sink keeps the un-stuffed DATA.
    msg.set_content(f"Hello {index}\n.a line starting with a dot\nBye\n")
    msg.add_alternative(f"<p>Hello <b>{index}</b></p>", subtype="html")
    return msg


def test_three_messages_become_three_eml_files(tmp_path: Path) -> None:
    mailbox = tmp_path / "mailbox"
    controller, port = start_mail_sink(mailbox)
    recipients = ["jane.doe@example.com", "Jean.Dupont@example.org", "o'brien+tag@example.net"]
    sent: dict[str, bytes] = {}
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            for index, recipient in enumerate(recipients, start=1):
                msg = _message(index, recipient)
                data = msg.as_bytes(policy=SMTP_POLICY)  # CRLF line ends, as on the wire
                client.sendmail("offers@wanderly.example", [recipient], data)
                sent[msg["Message-ID"]] = data
    finally:
        controller.stop()

    files = sorted(mailbox.glob("*.eml"))
    assert len(files) == 3
    assert not list(mailbox.glob(".*.part"))
    # <timestamp>-<counter>-<recipient>.eml, in sending order; unsafe characters replaced.
    names = [f.name.split("-", 2) for f in files]
    assert [counter for _, counter, _ in names] == ["000001", "000002", "000003"]
    assert [rest for _, _, rest in names] == [
        "jane.doe@example.com.eml",
        "Jean.Dupont@example.org.eml",
        "o_brien+tag@example.net.eml",
    ]
    for path in files:
        raw = path.read_bytes()
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert raw == sent[parsed["Message-ID"]]
        assert parsed["Subject"].endswith(": Zoé's trip")
        assert ".a line starting with a dot" in parsed.get_body(("plain",)).get_content()


def test_port_zero_picks_a_free_port_and_two_sinks_coexist(tmp_path: Path) -> None:
    first, first_port = start_mail_sink(tmp_path / "a")
    second, second_port = start_mail_sink(tmp_path / "b")
    try:
        assert first_port != second_port and first_port > 0
        with smtplib.SMTP("127.0.0.1", second_port, timeout=10) as client:
            client.sendmail("a@wanderly.example", ["b@example.com"], b"Subject: hi\r\n\r\nbody\r\n")
    finally:
        first.stop()
        second.stop()
    assert len(list((tmp_path / "b").glob("*.eml"))) == 1
    assert not list((tmp_path / "a").glob("*.eml"))


def test_a_taken_port_is_an_error(tmp_path: Path) -> None:
    controller, port = start_mail_sink(tmp_path / "a")
    try:
        with pytest.raises(OSError):
            start_mail_sink(tmp_path / "b", port=port)
    finally:
        controller.stop()


def test_daemon_mode_writes_a_pid_file_and_stops(tmp_path: Path) -> None:
    mailbox = tmp_path / "mailbox"
    port = free_port()
    cli = [sys.executable, "-m", "campaign_orchestrator.devtools.mail_sink", "--dir", str(mailbox)]
    started = subprocess.run([*cli, "--port", str(port), "--daemon"], capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr
    pid = read_pid(mailbox)
    try:
        assert pid is not None and (mailbox / PID_FILE).read_text().strip() == str(pid)
        assert subprocess.run([*cli, "--status"], capture_output=True, timeout=30).returncode == 0
        again = subprocess.run([*cli, "--port", str(port), "--daemon"], capture_output=True, text=True, timeout=30)
        assert again.returncode == 0 and "already running" in again.stdout
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("a@wanderly.example", ["b@example.com"], b"Subject: hi\r\n\r\nbody\r\n")
        assert len(list(mailbox.glob("*.eml"))) == 1
    finally:
        stopped = subprocess.run([*cli, "--stop"], capture_output=True, text=True, timeout=30)
    assert stopped.returncode == 0, stopped.stderr
    assert not (mailbox / PID_FILE).exists()
    assert subprocess.run([*cli, "--status"], capture_output=True, timeout=30).returncode == 1
    assert "Mail sink listening" in (mailbox / "sink.log").read_text()
