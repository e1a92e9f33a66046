"""The tracking links' signing secret, public URL and machine rules: the ``campaign_tracking``
Airflow connection, or, where it is not defined, the ``campaign_unsubscribe`` one.

``campaign_tracking``: password = signing secret, extra ``previous_secrets`` (rotation),
host (+ schema as URL scheme, port) = the public base URL the endpoint is reached at,
extra ``validity_days`` (how long links work after sending, default 365), and the machine
rules' extras ``apple_networks``, ``scanner_networks``, ``scanner_user_agents``
(:mod:`.machine`).

Without it, the unsubscribe connection's secrets and host serve: every marketing email
already needs that one, both endpoints are mounted in the same api-server, and the MACs
are domain-separated (``track.v1.`` vs ``unsubscribe.v1.``), so one secret signing both is
safe. Its ``validity_days`` (for unsubscribe links) is not used; tracking links keep their
own default. Read when a send builds its renderer or when the endpoint serves (cached for a
minute), never at import.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from campaign_orchestrator import signing
from campaign_orchestrator.tracking.machine import MachineRules

CONN_ID = "campaign_tracking"
FALLBACK_CONN_ID = "campaign_unsubscribe"
URL_PREFIX = "/campaigns-track"
"""Where the api-server (and the standalone server) mount the tracking app."""
DEFAULT_VALIDITY_DAYS = 365


class TrackingNotConfigured(signing.SigningNotConfigured):
    """Neither ``campaign_tracking`` nor ``campaign_unsubscribe`` can sign tracking links."""


@dataclass(frozen=True)
class TrackingSettings:
    """:param secrets: the current signing secret first, then previous ones still accepted.
    :param base_url: public URL of the server the app is mounted in, without the mount prefix
        (``https://campaigns.example.com``); empty when only verifying.
    :param validity_days: how long a link works after its message was rendered.
    :param conn_id: the connection these came from.
    :param machine: the extra machine rules.
    """

    secrets: tuple[str, ...]
    base_url: str = ""
    validity_days: int = DEFAULT_VALIDITY_DAYS
    conn_id: str = CONN_ID
    machine: MachineRules = field(default_factory=MachineRules)

    def __post_init__(self) -> None:
        signing.check_secrets(self.secrets, self.conn_id, TrackingNotConfigured)
        if self.validity_days < 1:
            raise TrackingNotConfigured(f"connection {self.conn_id!r}: validity_days must be at least 1")

    @property
    def endpoint(self) -> str:
        """``{base_url}/campaigns-track``: the links are ``…/o/<token>`` and ``…/c/<token>?u=…``."""
        if not self.base_url:
            raise TrackingNotConfigured(
                f"connection {self.conn_id!r} has no host: set it to the public URL of the tracking endpoint, "
                "e.g. https://campaigns.example.com"
            )
        return self.base_url + URL_PREFIX


def load_settings() -> TrackingSettings:
    """``campaign_tracking``, else ``campaign_unsubscribe``'s secrets and host.

    Raises :class:`TrackingNotConfigured` naming both when neither is defined, and naming the
    one at fault when it is unusable.
    """
    conn = signing.read_connection(CONN_ID, TrackingNotConfigured, "", optional=True)
    if conn is not None:
        try:
            machine = MachineRules.from_extra(conn.extra)
            days = conn.extra.get("validity_days")
            validity = DEFAULT_VALIDITY_DAYS if days is None or days == "" else int(days)
        except ValueError as exc:
            raise TrackingNotConfigured(f"connection {CONN_ID!r}: {exc}") from None
        return TrackingSettings(conn.secrets, conn.base_url, validity, CONN_ID, machine)
    fallback = signing.read_connection(FALLBACK_CONN_ID, TrackingNotConfigured, "", optional=True)
    if fallback is None:
        raise TrackingNotConfigured(
            f"neither Airflow connection {CONN_ID!r} nor {FALLBACK_CONN_ID!r} is defined: tracked emails need "
            f"one to sign their open pixel and click links (password = signing secret, host = public URL of "
            f"the endpoint); set tracking: {{opens: false, clicks: false}} on the step to send without"
        )
    return TrackingSettings(fallback.secrets, fallback.base_url, conn_id=FALLBACK_CONN_ID)


__all__ = [
    "CONN_ID",
    "DEFAULT_VALIDITY_DAYS",
    "FALLBACK_CONN_ID",
    "URL_PREFIX",
    "TrackingNotConfigured",
    "TrackingSettings",
    "load_settings",
]
