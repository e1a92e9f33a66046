"""The run page's lift chart inside Airflow's API app: an inline SVG whose numbers equal an
independent computation on the seeded conversions, recomputed on each request."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import timedelta
from decimal import Decimal

import pytest

from tests.integration.lift.seed import Booking, book, campaign_dict, expected, seed_run, standard_bookings, write_campaign
from tests.integration.ui.test_campaigns_api import PREFIX, admin_token, bearer, client  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration


@pytest.fixture
def lift_run(store, tmp_path, monkeypatch):
    monkeypatch.setenv("CAMPAIGNS_CONFIG_DIR", str(write_campaign(tmp_path / "campaigns", campaign_dict())))
    seeded = seed_run(store)
    book(store, seeded, standard_bookings(seeded))
    return seeded


def chart(html: str) -> ET.Element:
    match = re.search(r'<svg class="lift-chart".*?</svg>', html, re.S)
    assert match, "the run page has no lift chart"
    return ET.fromstring(match.group(0))


def drawn(svg: ET.Element) -> dict[str, dict]:
    """Per step label: each group's numbers and the lift marker, as the SVG carries them."""
    steps = {}
    for row in svg.iter("g"):
        if row.get("class") != "lift-row":
            continue
        groups = {bar.get("data-group"): bar.attrib for bar in row.iter("g") if bar.get("class") == "bar"}
        marker = next((g.attrib for g in row.iter("g") if (g.get("class") or "").startswith("marker")), None)
        steps[row.get("data-step")] = {"groups": groups, "marker": marker}
    return steps


def test_the_run_page_draws_the_lift_equal_to_the_seeded_data(client, admin_token, lift_run, store) -> None:
    response = client.get(f"{PREFIX}/run/{lift_run.run_key}", headers=bearer(admin_token))
    assert response.status_code == 200
    html = response.text
    section = html[html.index('<section class="lift"'):html.index("</section>", html.index('<section class="lift"'))]
    assert "<script" not in section and "http" not in section  # drawn by the server: offline, no CDN
    steps = drawn(chart(html))
    assert list(steps) == ["mail", "sms", "whole campaign"]
    for label, step_id in (("mail", "mail"), ("sms", "sms"), ("whole campaign", None)):
        want = expected(lift_run, step_id)
        groups, marker = steps[label]["groups"], steps[label]["marker"]
        for group, (x, n, interval) in {
            "treated": (want.treated_converted, want.treated_n, want.wilson(True)),
            "held_out": (want.held_converted, want.held_n, want.wilson(False)),
        }.items():
            assert (int(groups[group]["data-converted"]), int(groups[group]["data-recipients"])) == (x, n)
            assert float(groups[group]["data-rate"]) == pytest.approx(x / n, abs=1e-6)
            assert (float(groups[group]["data-low"]), float(groups[group]["data-high"])) == pytest.approx(interval, abs=1e-6)
        low, high = want.newcombe()
        assert float(marker["data-absolute"]) == pytest.approx(want.absolute, abs=1e-6)
        assert (float(marker["data-low"]), float(marker["data-high"])) == pytest.approx((low, high), abs=1e-6)
        assert marker["class"] == "marker " + ("up" if low > 0 else "down" if high < 0 else "flat")
        # The table beside the chart prints the same lift.
        assert f"absolute {100 * want.absolute:+.2f} pp [{100 * low:+.2f} pp, {100 * high:+.2f} pp]" in html


def test_the_run_api_carries_the_lift_and_it_is_recomputed_as_conversions_arrive(
    client, admin_token, lift_run, store
) -> None:
    url = f"{PREFIX}/api/runs/{lift_run.run_key}"
    before = {s["label"]: s for s in client.get(url, headers=bearer(admin_token)).json()["lift"]["steps"]}
    want = expected(lift_run, "mail")
    assert before["mail"]["treated"]["converted"] == want.treated_converted
    assert before["mail"]["revenue_interval"] == pytest.approx(want.welch(), abs=1e-7)
    assert before["mail"]["relative_interval"] == pytest.approx(want.koopman(), abs=1e-7)

    late = sorted(lift_run.held_out)[:10]  # ten held-out members book a day after the email
    book(store, lift_run, [Booking(p, lift_run.starts["mail"] + timedelta(days=1), Decimal(75)) for p in late])
    after = {s["label"]: s for s in client.get(url, headers=bearer(admin_token)).json()["lift"]["steps"]}
    want = expected(lift_run, "mail")
    assert after["mail"]["held_out"]["converted"] == want.held_converted > before["mail"]["held_out"]["converted"]
    assert after["mail"]["absolute_interval"] == pytest.approx(want.newcombe(), abs=1e-9)
