"""Which opens and clicks no person made."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaign_orchestrator.tracking.machine import MachineRules, NetworkSet, classify

IPHONE_MAIL = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
OUTLOOK = ("Mozilla/4.0 (compatible; ms-office; MSOffice 16) Microsoft Outlook 16.0.17328; Pro)")
GMAIL_PROXY = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
YAHOO_PROXY = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
          "Safari/537.36")
HOME = "203.0.113.7"


@pytest.mark.parametrize("agent", [IPHONE_MAIL, OUTLOOK, GMAIL_PROXY, YAHOO_PROXY, CHROME])
def test_people_and_the_proxies_that_fetch_for_them_are_human(agent: str) -> None:
    assert classify("open", agent, HOME) is None
    assert classify("click", agent, HOME) is None


def test_apple_mail_privacy_protection_opens() -> None:
    assert classify("open", "Mozilla/5.0", HOME) == "apple_mpp"
    assert classify("open", IPHONE_MAIL, "17.58.101.3") == "apple_mpp"
    # A click from Apple's addresses (Private Relay, an Apple employee) is a person's.
    assert classify("click", IPHONE_MAIL, "17.58.101.3") is None


@pytest.mark.parametrize(
    ("agent", "reason"),
    [
        ("Barracuda Sentinel (EE)", "scanner:barracuda"),
        ("Mozilla/5.0 (compatible; Proofpoint URL Defense)", "scanner:proofpoint"),
        ("Mimecast-URL-Protect/1.0", "scanner:mimecast"),
        ("Mozilla/5.0 SafeLinks-Detonation", "scanner:microsoft_safe_links"),
        ("IronPort URL scanner", "scanner:cisco"),
        ("python-requests/2.32.3", "automation"),
        ("curl/8.5.0", "automation"),
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "automation"),
        ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "automation"),
        ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0 Safari/537.36",
         "automation"),
        ("", "no_user_agent"),
        (None, "no_user_agent"),
    ],
)
def test_scanners_and_automation(agent: str | None, reason: str) -> None:
    assert classify("click", agent, HOME) == reason
    assert classify("open", agent, HOME) == reason


def test_head_requests_are_machines() -> None:
    assert classify("click", CHROME, HOME, method="HEAD") == "head_request"


def test_rules_from_the_connection_extras() -> None:
    rules = MachineRules.from_extra(
        {"scanner_networks": ["198.51.100.0/24", "2001:db8::/32"], "apple_networks": "192.0.2.0/28",
         "scanner_user_agents": ["AcmeGuard"]}
    )
    assert classify("click", CHROME, "198.51.100.77", rules=rules) == "scanner_network"
    assert classify("click", CHROME, "2001:db8::1", rules=rules) == "scanner_network"
    assert classify("click", CHROME, "::ffff:198.51.100.1", rules=rules) == "scanner_network"
    assert classify("open", CHROME, "192.0.2.5", rules=rules) == "apple_mpp"
    assert classify("open", CHROME, "17.0.0.1", rules=rules) == "apple_mpp"  # the built-in range stays
    assert classify("click", CHROME, "192.0.2.5", rules=rules) is None
    assert classify("open", "Mozilla/5.0 acmeguard/2", HOME, rules=rules) == "scanner"
    assert classify("open", CHROME, "not an address", rules=rules) is None
    with pytest.raises(ValueError):
        MachineRules.from_extra({"scanner_networks": ["999.1.2.0/24"]})


networks = st.lists(
    st.tuples(st.integers(0, 2**32 - 1), st.integers(8, 32)).map(
        lambda t: str(ipaddress.ip_network((t[0] >> (32 - t[1]) << (32 - t[1]), t[1])))
    ),
    max_size=20,
)


@settings(max_examples=200, deadline=None)
@given(cidrs=networks, probes=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20))
def test_network_set_agrees_with_plain_membership(cidrs: list[str], probes: list[int]) -> None:
    found = NetworkSet(cidrs)
    for probe in probes:
        address = ipaddress.ip_address(probe)
        expected = any(address in ipaddress.ip_network(c) for c in cidrs)
        assert (str(address) in found) == expected
