"""What each channel needs from a campaign: its template files and its profile address.

Kept free of heavy imports: the config loader uses it while Airflow parses DAG files.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    template_parts: tuple[str, ...]
    address_column: str
    """Column of crm.profile that holds this channel's address."""
    consent_channel: str
    """Value of crm.consent.channel that governs this channel."""


CHANNELS: dict[str, ChannelSpec] = {
    "email": ChannelSpec("email", ("subject.txt", "body.html", "body.txt"), "email", "email"),
}


def template_parts(channel: str) -> tuple[str, ...]:
    return CHANNELS[channel].template_parts
