"""Which opens and clicks no person made: privacy proxies, security scanners, automation.

A pixel load or a click is recorded either way; a machine one carries its reason in
``campaign.delivery_event.machine``, and the journey conditions and the funnel skip it
unless told otherwise (``include_machine: true``). What is known from a request alone is
decided here; what needs the ledger (a hit within a second of the send) is decided by the
ingestion SQL (``include/sql/orchestrator/ingest_delivery_events.sql``, reason ``too_fast``).

What is publicly documented, and what this module does with it:

- **Apple Mail Privacy Protection** (iOS 15+, macOS 12+) downloads every remote image of a
  message through Apple's proxies when the message reaches the device, opened or not. The
  proxies are the iCloud Private Relay infrastructure (same ``mask.icloud.com`` front ends),
  whose egress ranges Apple publishes at https://mask-api.icloud.com/egress-ip-ranges.csv;
  their image requests send the bare user agent ``Mozilla/5.0``, with no platform token as
  every real browser and mail client sends. An *open* is ``apple_mpp`` when its user agent
  is exactly that, or its address is in Apple's own 17.0.0.0/8 or in ``apple_networks``
  (the connection's extra: load the egress list there). Clicks are never classified by
  these addresses: a Safari user behind Private Relay clicking is a person.
- **Security gateways** follow every link of incoming mail (and often load its images)
  before delivery: Microsoft Defender for Office 365 Safe Links, Proofpoint URL Defense,
  Mimecast URL Protect, Barracuda Link Protection, Cisco Secure Email (IronPort), Trend Micro,
  FortiMail and others. Those that name themselves in the user agent are ``scanner:<vendor>``; the
  addresses of the others (Mimecast's AS 34440, Barracuda ESS, an Azure range Safe Links
  uses) can be listed in ``scanner_networks``, and more user-agent words in
  ``scanner_user_agents``. Safe Links often sends no user agent at all: ``no_user_agent``.
- **Automation** (HTTP libraries, headless browsers, crawlers and link-preview bots that
  fetch a URL someone pasted elsewhere): ``automation``. A ``HEAD`` request, which no
  browser sends for a link or an image, is ``head_request``.
- Proxies that fetch on a person's behalf when the message is opened are *human*: Gmail's
  ``GoogleImageProxy`` and ``YahooMailProxy`` (each loads the pixel once when the message is
  first displayed, and caches it).
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Iterable

APPLE_NETWORKS = ("17.0.0.0/8",)
"""Apple's own address block (Apple holds all of 17/8)."""
MPP_USER_AGENT = "Mozilla/5.0"

SCANNERS = (
    ("barracuda", "barracuda"),
    ("proofpoint", "proofpoint"),
    ("urldefense", "proofpoint"),
    ("mimecast", "mimecast"),
    ("safelinks", "microsoft_safe_links"),
    ("ironport", "cisco"),
    ("ciscosecureemail", "cisco"),
    ("trendmicro", "trend_micro"),
    ("fortimail", "fortinet"),
)
"""(lower-case word in the user agent, vendor): email gateways that name themselves. Web
proxies that forward people's own browsing (Zscaler, Forcepoint…) are left out on purpose."""

_AUTOMATION = re.compile(
    r"python-requests|python-urllib|python-httpx|aiohttp|curl/|wget/|go-http-client|okhttp|java/|"
    r"apache-httpclient|libwww-perl|node-fetch|axios/|headlesschrome|phantomjs|puppeteer|playwright|"
    r"facebookexternalhit|slackbot|twitterbot|linkedinbot|discordbot|telegrambot|whatsapp|skypeuripreview|"
    r"googlebot|bingbot|applebot|yandexbot|"
    r"[a-z]*(?:bot|crawler|spider)/|\+https?://",  # "Foobot/1.2", "(+http://example.com/bot.html)"
    re.IGNORECASE,
)
_SCANNER_WORDS = re.compile("|".join(re.escape(word) for word, _ in SCANNERS), re.IGNORECASE)
_VENDOR = dict(SCANNERS)


class NetworkSet:
    """IP networks, looked up by bisection (the Private Relay egress list has tens of thousands)."""

    def __init__(self, networks: Iterable[str] = ()) -> None:
        spans: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
        for text in networks:
            net = ipaddress.ip_network(str(text).strip(), strict=False)
            spans[net.version].append((int(net.network_address), int(net.broadcast_address)))
        self._starts: dict[int, list[int]] = {}
        self._ends: dict[int, list[int]] = {}
        for version, ranges in spans.items():
            merged: list[list[int]] = []
            for start, end in sorted(ranges):
                if merged and start <= merged[-1][1] + 1:
                    merged[-1][1] = max(merged[-1][1], end)
                else:
                    merged.append([start, end])
            self._starts[version] = [s for s, _ in merged]
            self._ends[version] = [e for _, e in merged]

    def __contains__(self, address: str | None) -> bool:
        if not address:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        value = int(ip)
        starts = self._starts[ip.version]
        at = bisect.bisect_right(starts, value) - 1
        return at >= 0 and value <= self._ends[ip.version][at]

    def __bool__(self) -> bool:
        return any(self._starts.values())


@dataclass(frozen=True)
class MachineRules:
    """What marks a hit as a machine's, beyond the built-in signatures.

    :param apple_networks: addresses of Apple's MPP proxies (opens only), besides 17.0.0.0/8.
    :param scanner_networks: addresses of security scanners (opens and clicks).
    :param scanner_user_agents: further lower-case words naming a scanner in the user agent.
    """

    apple_networks: NetworkSet = field(default_factory=lambda: NetworkSet(APPLE_NETWORKS))
    scanner_networks: NetworkSet = field(default_factory=NetworkSet)
    scanner_user_agents: tuple[str, ...] = ()

    @classmethod
    def from_extra(cls, extra: dict) -> MachineRules:
        """Rules from a connection's extras ``apple_networks``, ``scanner_networks`` (lists of
        CIDRs) and ``scanner_user_agents`` (list of words); raises ValueError for a bad CIDR."""
        return cls(
            apple_networks=NetworkSet([*APPLE_NETWORKS, *_strings(extra.get("apple_networks"))]),
            scanner_networks=NetworkSet(_strings(extra.get("scanner_networks"))),
            scanner_user_agents=tuple(w.lower() for w in _strings(extra.get("scanner_user_agents"))),
        )


def _strings(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in re.split(r"[\s,]+", value) if v]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    raise ValueError(f"expected a list, got {type(value).__name__}")


DEFAULT_RULES = MachineRules()


def classify(
    kind: Literal["open", "click"],
    user_agent: str | None,
    address: str | None,
    method: str = "GET",
    rules: MachineRules = DEFAULT_RULES,
) -> str | None:
    """Why this hit is a machine's, or None when nothing says so.

    :param kind: ``open`` (pixel) or ``click``.
    :param user_agent: the request's User-Agent header.
    :param address: the client's IP address (behind a proxy: the forwarded one).
    :param method: the HTTP method.
    """
    if method == "HEAD":
        return "head_request"
    agent = (user_agent or "").strip()
    if not agent:
        return "no_user_agent"
    if kind == "open" and (agent == MPP_USER_AGENT or address in rules.apple_networks):
        return "apple_mpp"
    found = _SCANNER_WORDS.search(agent)
    if found:
        return f"scanner:{_VENDOR[found.group().lower()]}"
    if rules.scanner_user_agents:
        lowered = agent.lower()
        for word in rules.scanner_user_agents:
            if word in lowered:
                return "scanner"
    if rules.scanner_networks and address in rules.scanner_networks:
        return "scanner_network"
    if _AUTOMATION.search(agent):
        return "automation"
    return None


__all__ = ["APPLE_NETWORKS", "DEFAULT_RULES", "MPP_USER_AGENT", "MachineRules", "NetworkSet", "classify"]
