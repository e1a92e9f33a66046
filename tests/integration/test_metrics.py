"""campaign_orchestrator.metrics through Airflow's real metrics stack, to a real UDP socket.

Airflow reads its ``[metrics]`` configuration at import, so each case runs the helper in a
fresh Python process configured by environment variables, with a socket of this test acting
as the StatsD server.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.integration

EMIT = textwrap.dedent(
    """
    from campaign_orchestrator.channels.base import BatchStats
    from campaign_orchestrator.metrics import emit_batch, emit_report
    from campaign_orchestrator.run.report import StepReport

    emit_report("winter_sale", [
        StepReport("offer_email", "email", targeted=132, sent=100, failed=3, uncertain=2, held_out=12,
                   excluded={"opted_out": 10, "suppressed": 5}),
        StepReport("reminder.sms", "sms", targeted=7, sent=7),
    ])
    emit_batch("winter_sale", "offer_email", "email", BatchStats(sent=40), 2.5)
    """
)


@pytest.fixture
def statsd_server() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock


def emit(statsd_server: socket.socket, **metrics_config: str) -> list[str]:
    """Run EMIT with ``AIRFLOW__METRICS__<KEY>`` settings; every StatsD line received."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__METRICS__")}
    env.update({f"AIRFLOW__METRICS__{k.upper()}": v for k, v in metrics_config.items()})
    env["AIRFLOW__METRICS__STATSD_PORT"] = str(statsd_server.getsockname()[1])
    result = subprocess.run(
        [sys.executable, "-c", EMIT], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = []
    statsd_server.settimeout(0.5)
    try:
        while True:
            lines += statsd_server.recv(65535).decode().splitlines()
    except TimeoutError:
        return lines


def test_plain_statsd_gets_totals_and_names_that_carry_campaign_step_and_channel(statsd_server):
    lines = emit(statsd_server, statsd_on="True", statsd_host="127.0.0.1", statsd_prefix="airflow")
    expected = {
        # the tagged names: on plain StatsD, totals over every campaign
        "airflow.campaigns.messages.sent:100|c",
        "airflow.campaigns.messages.sent:7|c",
        "airflow.campaigns.messages.failed:3|c",
        "airflow.campaigns.messages.uncertain:2|c",
        "airflow.campaigns.messages.excluded:10|c",
        "airflow.campaigns.messages.excluded:5|c",
        "airflow.campaigns.batch.sent:40|c",
        "airflow.campaigns.batch.duration:2500.000000|ms",
        # the same counts under names that say which campaign, step and channel
        "airflow.campaigns.winter_sale.offer_email.email.sent:100|c",
        "airflow.campaigns.winter_sale.offer_email.email.failed:3|c",
        "airflow.campaigns.winter_sale.offer_email.email.uncertain:2|c",
        "airflow.campaigns.winter_sale.offer_email.email.pending:0|c",
        "airflow.campaigns.winter_sale.offer_email.email.held_out:12|c",
        "airflow.campaigns.winter_sale.offer_email.email.excluded.opted_out:10|c",
        "airflow.campaigns.winter_sale.offer_email.email.excluded.suppressed:5|c",
        "airflow.campaigns.winter_sale.reminder__sms.sms.sent:7|c",
        "airflow.campaigns.winter_sale.offer_email.email.batch.sent:40|c",
        "airflow.campaigns.winter_sale.offer_email.email.batch.duration:2500.000000|ms",
    }
    ours = [line for line in lines if line.startswith("airflow.campaigns.")]
    assert expected <= set(ours), sorted(ours)
    # 5 outcomes for 2 steps, 2 exclusion reasons, 2 batch metrics: twice each
    assert len(ours) == 2 * (5 * 2 + 2 + 2), sorted(ours)


def test_statsd_with_influxdb_tags_gets_tagged_names_only(statsd_server):
    lines = emit(
        statsd_server, statsd_on="True", statsd_host="127.0.0.1", statsd_prefix="airflow",
        statsd_influxdb_enabled="True",
    )
    assert "airflow.campaigns.messages.sent,campaign=winter_sale,step=offer_email,channel=email:100|c" in lines
    assert (
        "airflow.campaigns.messages.excluded,campaign=winter_sale,step=offer_email,channel=email,"
        "reason=opted_out:10|c"
    ) in lines
    assert (
        "airflow.campaigns.batch.duration,campaign=winter_sale,step=offer_email,channel=email:2500.000000|ms"
    ) in lines
    assert not [line for line in lines if line.startswith("airflow.campaigns.winter_sale.")], lines


def test_nothing_is_sent_when_metrics_are_off(statsd_server):
    assert emit(statsd_server, statsd_on="False", statsd_host="127.0.0.1") == []
