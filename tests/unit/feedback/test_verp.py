"""VERP return paths: round trip, forgery, rotation, case folding, and the local-part limit."""

from __future__ import annotations

import uuid

import pytest
from campaign_orchestrator.channels.messages import email_message_id as message_id
from campaign_orchestrator.feedback.verp import VerpNotConfigured, VerpSettings, settings_from_extras

SECRET = "verp-unit-secret-0123456789"
OLD = "verp-retired-secret-9876543210"


def settings(*secrets: str, local: str = "bounces") -> VerpSettings:
    return VerpSettings(secrets=secrets or (SECRET,), domain="bounces.example.com", local=local)


def test_the_return_path_names_the_message_and_profile_and_reads_back() -> None:
    mid = message_id(42, "offer_email", 1234567, "", "wanderly.example")
    address = settings().return_path(mid, 1234567)
    local, _, domain = address.partition("@")
    assert domain == "bounces.example.com" and local.startswith("bounces+")
    assert len(local) <= 64  # RFC 5321
    reference = settings().read([f"<{address}>"])
    assert reference == (mid[1:37], 1234567)
    # The uuid is visible (it is the Message-ID's anyway); the profile id is not.
    assert "1234567" not in address


def test_any_case_and_surrounding_text_still_read() -> None:
    mid = message_id(1, "s", 9, "booking-3", "example.org")
    address = settings().return_path(mid, 9)
    assert settings().read([f"Received-SPF: pass (sender {address.upper()}) x"]) == (mid[1:37], 9)
    assert settings().read([f"x{address}"]) is None  # part of another address


def test_forged_or_altered_tokens_are_refused() -> None:
    mid = message_id(1, "s", 9, "", "example.org")
    token = settings().return_path(mid, 9).split("+")[1].split("@")[0]
    for position in (0, 20, 30, 47):  # in the uuid, the hidden profile, the MAC
        altered = token[:position] + ("a" if token[position] != "a" else "b") + token[position + 1:]
        reference = settings().read_token(altered)
        # Only an altered profile id survives the MAC, and then names another profile: the
        # store finds no message with that uuid in its history.
        assert reference is None or (20 <= position < 39 and reference.profile_id != 9)
    assert settings("another-secret-entirely-000").read_token(token) is None
    assert settings().read_token("not-a-token") is None


def test_rotation_reads_tokens_of_the_previous_secret() -> None:
    mid = message_id(3, "s", 5, "", "example.org")
    old_address = settings(OLD).return_path(mid, 5)
    assert settings(SECRET, OLD).read([old_address]) == (mid[1:37], 5)
    assert settings(SECRET).read([old_address]) is None


def test_negative_and_large_profile_ids_round_trip() -> None:
    for profile_id in (-1, 0, 2**63 - 1, -(2**63)):
        mid = f"<{uuid.uuid4()}@example.org>"
        assert settings().read([settings().return_path(mid, profile_id)]) == (mid[1:37], profile_id)


def test_ids_not_of_ours_keep_the_plain_sender() -> None:
    assert settings().return_path("<0100018c-ses-id@email.amazonses.com>", 1) is None


def test_configuration_errors_name_the_extra() -> None:
    assert settings_from_extras({}) is None  # VERP off
    with pytest.raises(VerpNotConfigured, match="'secret'"):
        settings_from_extras({"verp_domain": "bounces.example.com"})
    with pytest.raises(VerpNotConfigured, match="at least 16"):
        settings_from_extras({"verp_domain": "bounces.example.com", "secret": "short"})
    with pytest.raises(VerpNotConfigured, match="verp_local"):
        settings_from_extras({"verp_domain": "b.example.com", "secret": SECRET, "verp_local": "x" * 20})
    with pytest.raises(VerpNotConfigured, match="not a domain"):
        settings_from_extras({"verp_domain": "not a domain", "secret": SECRET})
    s = settings_from_extras({"verp_domain": "B.Example.com", "secret": SECRET, "previous_secrets": OLD,
                              "verp_local": "rp"})
    assert (s.domain, s.local, s.secrets) == ("b.example.com", "rp", (SECRET, OLD))
