"""The Campaigns page in a real browser: the real ``airflow api-server``, its login page, the
navigation entry, and the funnel numbers read off the screen against the store's ledger.

Needs Chromium (Debian: ``apt-get install -y chromium``); the test fails, never skips, when
it is missing. It leaves a screenshot in ``test-artifacts/campaigns-page.png``.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.fixtures.airflow import AIRFLOW
from tests.integration.ui.conftest import ledger_funnels

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("CAMPAIGNS_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
STARTUP_TIMEOUT_S = 90


def chromium() -> str:
    """The Chromium binary, or the test fails saying how to install it."""
    path = shutil.which(CHROMIUM)
    if path is None:
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: this test drives the Campaigns page in a real browser. "
            "Install it with `apt-get install -y chromium` (Debian/Ubuntu), or point "
            "CAMPAIGNS_TEST_CHROMIUM at a Chromium binary.",
            pytrace=False,
        )
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"airflow api-server exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    pytest.fail(f"airflow api-server not healthy after {STARTUP_TIMEOUT_S}s:\n{log.read_text()[-4000:]}")


def stop(process: subprocess.Popen) -> None:
    """Stop the api-server and its workers: the process group it leads (started here)."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextmanager
def api_server(tmp_path: Path) -> Iterator[str]:
    """``airflow api-server`` on a free port with this process's environment (the session's
    Airflow home, the test users, the run's campaign files); its base URL. Always stopped."""
    env = dict(os.environ)
    # The UI lists DAGs from the metadata DB: serialize the campaigns' DAGs, as the DAG
    # processor would, so the page's links lead to real DAG pages.
    result = subprocess.run([AIRFLOW, "dags", "reserialize"], env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    port = free_port()
    log = tmp_path / "api-server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env={**env, "AIRFLOW__API__PORT": str(port), "AIRFLOW__API__HOST": "127.0.0.1"},
            cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process, log)
        yield url
    finally:
        stop(process)


def shown_funnel(frame, key: str) -> dict[str, int]:
    """The numbers a funnel chart shows, by metric, each checked to be visible."""
    from playwright.sync_api import expect

    values = {}
    labels = frame.locator(f'svg[data-funnel="{key}"] text.value')
    expect(labels.first).to_be_visible()
    for label in labels.all():
        expect(label).to_be_visible()
        values[label.get_attribute("data-metric")] = int(label.text_content().replace(",", ""))
    return values


def expected_on_screen(ledger: dict[str, int]) -> dict[str, int]:
    """The ledger's counts as the chart lists them: failed and uncertain always, pending only
    when some are left, provider feedback as 0 until there is some for the run."""
    feedback = {event: 0 for event in ("delivered", "opened", "clicked", "bounced", "complained")}
    want = {"failed": 0, "uncertain": 0, **feedback, **ledger}
    if not want.get("pending"):
        want.pop("pending", None)
    return want


def test_an_operator_logs_in_and_reads_a_run_funnel_equal_to_the_ledger(
    airflow_db, ui_users, campaign_run, store, tmp_path, capsys
):
    executable = chromium()
    from playwright.sync_api import expect, sync_playwright

    cid, run_key = campaign_run.campaign_id, campaign_run.run_key
    ledger = ledger_funnels(store, run_key)
    failed_rows = store.execute(
        "SELECT count(*) FROM campaign.message WHERE run_key = %s AND status IN ('failed', 'uncertain')", (run_key,)
    ).fetchone()[0]
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "campaigns-page.png"
    with api_server(tmp_path) as base_url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1400}, accept_downloads=True)
            page.set_default_timeout(30_000)

            # Not logged in: the UI sends the browser to Airflow's login page.
            page.goto(f"{base_url}/plugin/campaigns")
            page.wait_for_url("**/auth/login**")
            page.locator("input[name=username]").fill("admin")
            page.locator("input[name=password]").fill(ui_users["admin"])
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/plugin/campaigns**")

            # The navigation entry and the framed page.
            expect(page.get_by_role("link", name="Campaigns").first).to_be_visible()
            frame = page.frame_locator('iframe[title="Campaigns"]')
            row = frame.locator(f'tr[data-campaign="{cid}"]')
            expect(row).to_be_visible()
            expect(row.locator(".last-run .badge")).to_have_text("succeeded")
            expect(row.locator(".next-runs li").first).to_be_visible()
            expect(frame.locator('[data-invalid="broken_one"]')).to_be_visible()
            page.screenshot(path=ARTIFACTS / "campaigns-list.png")

            # The latest run: its funnels, per channel and per step, as drawn on screen.
            row.locator(".last-run a[data-run]").click()
            expect(frame.locator('svg[data-funnel="channel:email"]')).to_be_visible()
            for key, counts in ledger.items():
                assert shown_funnel(frame, key) == expected_on_screen(counts), key
            expect(frame.get_by_text("no feedback yet").first).to_be_visible()
            page.screenshot(path=screenshot)
            with capsys.disabled():
                print(f"\nCampaigns page screenshot: {screenshot}")

            # The failed-messages CSV, downloaded by the browser from inside the UI's frame.
            with page.expect_download() as download:
                frame.locator("#failed-csv").click()
            rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text())))
            assert rows[0][:3] == ["profile_id", "entity_key", "step"] and len(rows) == 1 + failed_rows

            # A link to Airflow opens the Airflow page itself, not a UI nested in the frame.
            frame.get_by_role("link", name="scheduled__ui_test ↗").click()
            page.wait_for_url(f"**/dags/{cid}/runs/scheduled__ui_test")
            assert urlsplit(page.url).path == f"/dags/{cid}/runs/scheduled__ui_test"
            expect(page.locator('iframe[title="Campaigns"]')).to_have_count(0)
        finally:
            browser.close()
