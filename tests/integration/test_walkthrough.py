"""The README's "Your own campaign, step by step", followed literally in a copy of the project.

Every file the section shows (a fenced block whose first line names it) is written into a
temporary copy of the project, and its commands are run the way a new user's shell runs them:
`eval "$(campaigns env)"`, then `campaigns …` and `airflow dags test …`. The run is killed
with SIGKILL mid-batch and retried as the section says; what reached the SMTP server is then
compared with an expectation written here in SQL: every expected message once (or, for the
chunk in flight when the process died, uncertain), nothing else, nothing twice. A recreated
run of the same slot sends nothing, and demo-data refuses to empty the user's own table.

Deviations from a user's shell, each because the test must not touch the developer's own
setup: CAMPAIGNS_HOME points at the copy (a user works in their clone), the store is a private
database, Airflow's home is the test session's, the SMTP sink listens on a free port, and a
rate of 40 emails/s (CAMPAIGNS_RATE_EMAIL_SMTP_DEFAULT, the documented override) makes the
batch last long enough to be killed in the middle.
"""

from __future__ import annotations

import email
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections import Counter
from email import policy
from pathlib import Path

import psycopg
import pytest

from campaign_orchestrator.devtools.mail_sink import free_port
from tests.fixtures.store import LOCAL_SERVER, _airflow_conn_json

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SLOT = "2026-12-07T18:00:00+01:00"
_FILE_BLOCK = re.compile(r"```\w*\n(?:#|--) (?P<path>[\w./-]+)(?P<note> \(add under entities:\))?\n(?P<body>.*?)```", re.S)


def walkthrough_files() -> dict[str, tuple[str, bool]]:
    """{path: (content, append)} of the README section's file blocks."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Your own campaign, step by step"):]
    section = section[: section.index("\n## ", 5)]
    return {m["path"]: (m["body"], bool(m["note"])) for m in _FILE_BLOCK.finditer(section)}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "myproject"
    for folder in ("dags", "include"):
        shutil.copytree(ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for link in ("plugins", ".venv"):
        (root / link).symlink_to(ROOT / link)
    for path, (body, append) in walkthrough_files().items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if append:
            assert target.read_text().rstrip().endswith(tuple("abcdefghijklmnopqrstuvwxyz_}")), path
            target.write_text(target.read_text().rstrip("\n") + "\n" + body)
        else:
            target.write_text(body)
    return root


@pytest.fixture
def private_store() -> str:
    name = f"campaigns_walkthrough_{secrets.token_hex(4)}"
    with psycopg.connect(LOCAL_SERVER, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield LOCAL_SERVER.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(LOCAL_SERVER, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Shell:
    """A new user's shell in the project: the venv activated, `eval "$(campaigns env)"`."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env

    def script(self, command: str) -> list[str]:
        return ["bash", "-c", f'source .venv/bin/activate && eval "$(campaigns env)" && {command}']

    def run(self, command: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.script(command), cwd=self.root, env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def start(self, command: str, log: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.script(command), cwd=self.root, env=self.env, stdout=log.open("wb"),
                                stderr=subprocess.STDOUT, start_new_session=True)


def delivered(box: Path) -> Counter[int]:
    """Bookings whose reminder reached the sink, from each message's own text."""
    counts: Counter[int] = Counter()
    for path in box.glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        text = message.get_body(("plain",)).get_content()
        counts[int(re.search(r"Booking (\d+)\.", text).group(1))] += 1
    return counts


def test_the_walkthrough_from_own_tables_to_a_killed_and_retried_send(project, private_store, airflow_db, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__CORE__", "CAMPAIGNS_"))}
    env.update({
        "CAMPAIGNS_HOME": str(project),
        "AIRFLOW_CONN_CAMPAIGN_STORE": _airflow_conn_json(private_store),
        "CAMPAIGNS_RATE_EMAIL_SMTP_DEFAULT": "40",
    })
    shell = Shell(project, env)
    out = shell.run("campaigns store demo-data --profiles 1500 && campaigns store migrate")
    assert out.returncode == 0, out.stderr


    with psycopg.connect(private_store, autocommit=True) as conn:
        applied = conn.execute("SELECT name FROM public.campaign_schema_migration WHERE version = 1000").fetchone()
        assert applied == ("myco_classes",)  # the user's migration
        # The user's data: classes every 3 hours from a day ago to three days ahead (half an
        # hour off the window's edges), booked by profiles with a clean, unique address.
        conn.execute(
            "INSERT INTO myco.class SELECT i, 'Yoga ' || i, 'Studio ' || (i % 3), "
            "now() + make_interval(hours => 3 * i) + interval '30 minutes' FROM generate_series(-8, 24) AS i"
        )
        clean = [row[0] for row in conn.execute(
            """
            SELECT p.profile_id FROM crm.profile p
            WHERE p.email ~ '^[a-z0-9.]+@[a-z0-9.]+\\.[a-z]+$'
              AND NOT EXISTS (SELECT FROM crm.suppression s WHERE s.address = lower(btrim(p.email)))
              AND (SELECT count(*) FROM crm.profile q WHERE lower(btrim(q.email)) = lower(btrim(p.email))) = 1
            ORDER BY p.profile_id LIMIT 300
            """
        )]
        conn.execute(
            "INSERT INTO myco.class_booking SELECT 7000 + n, p, (n %% 33) - 8, CASE WHEN n %% 10 = 0 THEN 'cancelled' "
            "ELSE 'booked' END FROM unnest(%s::bigint[]) WITH ORDINALITY AS t(p, n)",
            (clean,),
        )
        conn.execute("UPDATE crm.profile SET email = 'coach' || profile_id || '@myco.example' WHERE profile_id = ANY(%s)",
                     (clean[:12],))
        expected = {row[0] for row in conn.execute(
            """
            SELECT b.class_booking_id FROM myco.class_booking b
            JOIN myco.class c USING (class_id)
            JOIN crm.profile p USING (profile_id)
            JOIN crm.consent k ON k.profile_id = p.profile_id AND k.channel = 'email' AND k.status = 'opted_in'
            WHERE b.status = 'booked' AND c.starts_at BETWEEN now() AND now() + interval '48 hours'
              AND p.email NOT ILIKE '%%@myco.example'
            """
        )}
    assert len(expected) > 60

    checks = shell.run("campaigns validate && campaigns validate --store && campaigns calculate class_reminder")
    assert checks.returncode == 0, checks.stdout + checks.stderr
    assert f"{len(expected):,}" in checks.stdout  # calculate's sendable count, before anything runs
    unknown = shell.run("campaigns calculate class_reminder --param domian=x")
    assert unknown.returncode == 1 and "did you mean 'domain'?" in unknown.stderr
    some = min(expected)
    rendered = shell.run(f"campaigns render class_reminder --profile {_profile_of(private_store, some)} --entity {some}")
    assert rendered.returncode == 0 and f"Booking {some}." in rendered.stdout, rendered.stdout + rendered.stderr

    box = tmp_path / "box"
    port = free_port()
    sink = shell.run(f"python -m campaign_orchestrator.devtools.mail_sink --dir {box} --port {port} --daemon")
    assert sink.returncode == 0, sink.stderr
    env["AIRFLOW_CONN_SMTP_DEFAULT"] = (
        f'{{"conn_type": "smtp", "host": "127.0.0.1", "port": {port}, '
        '"extra": {"disable_ssl": true, "disable_tls": true}}'
    )
    try:
        # Killed mid-batch: SIGKILL to the whole `airflow dags test` once some mail is out.
        log = tmp_path / "first.log"
        first = shell.start(f"airflow dags test class_reminder {SLOT}", log)
        deadline = time.monotonic() + 300
        while len(list(box.glob("*.eml"))) < 25:
            assert first.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(30)
        partial = sum(delivered(box).values())
        assert partial < len(expected)

        # The retry the README gives: the same command again.
        retry = shell.run(f"airflow dags test class_reminder {SLOT}")
        assert retry.returncode == 0 and "state=success" in retry.stdout + retry.stderr, (retry.stdout + retry.stderr)[-5000:]
        assert "carrying on from its ledger" in retry.stdout + retry.stderr

        got = delivered(box)
        with psycopg.connect(private_store) as conn:
            ledger = dict(conn.execute(
                "SELECT m.entity_key::bigint, m.status FROM campaign.message m JOIN campaign.run r USING (run_key) "
                "WHERE r.campaign_id = 'class_reminder' AND m.status IN ('sent', 'uncertain')"
            ).fetchall())
            runs = conn.execute("SELECT count(*) FROM campaign.run WHERE campaign_id = 'class_reminder'").fetchone()[0]
        uncertain = {k for k, status in ledger.items() if status == "uncertain"}
        assert runs == 1  # the recreated run carried on the slot's run
        assert set(ledger) == expected  # 0 missing, 0 extra
        assert max(got.values()) == 1  # 0 duplicates
        assert set(got) - expected == set()
        assert {k for k, s in ledger.items() if s == "sent"} <= set(got)  # every sent one arrived
        assert expected - set(got) <= uncertain and len(uncertain) <= 100  # only the chunk in flight

        # The same slot once more: Airflow recreates its run again, nothing is sent twice.
        before = sum(got.values())
        again = shell.run(f"airflow dags test class_reminder {SLOT}")
        assert again.returncode == 0 and "carrying on from its ledger" in again.stdout + again.stderr
        assert sum(delivered(box).values()) == before

        report = shell.run("campaigns report class_reminder")
        assert report.returncode == 0 and "reminder_email" in report.stdout
    finally:
        shell.run(f"python -m campaign_orchestrator.devtools.mail_sink --dir {box} --stop")

    refused = shell.run("campaigns store demo-data --profiles 100")
    assert refused.returncode == 1 and "myco.class_booking references crm.profile" in refused.stderr
    with psycopg.connect(private_store) as conn:
        assert conn.execute("SELECT count(*) FROM myco.class_booking").fetchone()[0] == 300


def _profile_of(dsn: str, booking: int) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT profile_id FROM myco.class_booking WHERE class_booking_id = %s",
                            (booking,)).fetchone()[0]
