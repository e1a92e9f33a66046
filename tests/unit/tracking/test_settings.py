"""The tracking connection, or the unsubscribe connection's secret and host."""

from __future__ import annotations

import json

import pytest

from campaign_orchestrator.tracking.settings import FALLBACK_CONN_ID, TrackingNotConfigured, load_settings


def test_settings_from_the_tracking_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CAMPAIGN_TRACKING", json.dumps({
        "conn_type": "generic", "host": "track.example.com", "password": "tracking-secret-0123456789",
        "extra": {"previous_secrets": ["old-tracking-secret-0123456"], "validity_days": 30,
                  "scanner_networks": ["198.51.100.0/24"]},
    }))
    found = load_settings()
    assert found.secrets == ("tracking-secret-0123456789", "old-tracking-secret-0123456")
    assert found.endpoint == "https://track.example.com/campaigns-track"
    assert (found.validity_days, found.conn_id) == (30, "campaign_tracking")
    assert "198.51.100.9" in found.machine.scanner_networks


def test_settings_fall_back_to_the_unsubscribe_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_CAMPAIGN_TRACKING", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_CAMPAIGN_UNSUBSCRIBE", json.dumps({
        "conn_type": "generic", "host": "campaigns.example.com", "password": "unsubscribe-secret-0123456789",
        "extra": {"validity_days": 7},
    }))
    found = load_settings()
    assert (found.conn_id, found.secrets) == (FALLBACK_CONN_ID, ("unsubscribe-secret-0123456789",))
    assert found.endpoint == "https://campaigns.example.com/campaigns-track"
    assert found.validity_days == 365  # the unsubscribe links' validity is theirs


def test_settings_without_either_connection_say_what_to_define(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_CAMPAIGN_TRACKING", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_CAMPAIGN_UNSUBSCRIBE", raising=False)
    with pytest.raises(TrackingNotConfigured, match="neither Airflow connection 'campaign_tracking' nor"):
        load_settings()


@pytest.mark.parametrize(
    ("extra", "password", "message"),
    [({"scanner_networks": ["nope"]}, "tracking-secret-0123456789", "campaign_tracking"),
     ({}, "short", "at least 16 characters"),
     ({"validity_days": 0}, "tracking-secret-0123456789", "validity_days")],
)
def test_unusable_tracking_connection(monkeypatch: pytest.MonkeyPatch, extra: dict, password: str, message: str) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CAMPAIGN_TRACKING", json.dumps(
        {"conn_type": "generic", "host": "t.example", "password": password, "extra": extra}))
    with pytest.raises(TrackingNotConfigured, match=message):
        load_settings()
