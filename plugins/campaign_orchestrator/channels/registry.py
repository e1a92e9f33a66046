"""What each channel needs from a campaign and from the profile.

Kept free of heavy imports: the config loader uses it while Airflow parses DAG files. The
SQL fragments are this project's own (never user input); they read the profile as ``p``
and are composed into include/sql/orchestrator/target_reasoning.sql.
"""

from __future__ import annotations

from dataclasses import dataclass

from campaign_orchestrator.channels.email.relay import RELAYS


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    template_parts: tuple[str, ...]
    """Files the step's template folder must hold."""
    consent_channel: str | None
    """Value of crm.consent.channel that governs this channel (None: the step names it)."""
    address_sql: str
    """The profile's address on this channel, NULL when it has none."""
    normalized_sql: str
    """The address as compared with crm.suppression and for duplicates."""
    checks: tuple[tuple[str, str], ...] = ()
    """(condition, reason): a present address for which the condition holds is excluded."""
    optional_parts: tuple[str, ...] = ()


EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
E164_PATTERN = r"^\+[1-9][0-9]{7,14}$"
_PHONE = r"nullif(regexp_replace(p.phone, '[[:space:]().-]', '', 'g'), '')"

CHANNELS: dict[str, ChannelSpec] = {
    "email": ChannelSpec(
        "email",
        ("subject.txt", "body.html", "body.txt"),
        "email",
        address_sql="nullif(btrim(p.email), '')",
        normalized_sql="lower(btrim(p.email))",
        # Deliberately permissive: mailbox existence is the provider's job (a hard bounce
        # then suppresses the address).
        checks=((f"btrim(p.email) !~ '{EMAIL_PATTERN}'", "invalid_address"),),
    ),
    "sms": ChannelSpec(
        "sms",
        ("sms.txt",),
        "sms",
        address_sql=_PHONE,
        normalized_sql=_PHONE,
        checks=((f"{_PHONE} !~ '{E164_PATTERN}'", "invalid_phone_number"),),
    ),
    "push": ChannelSpec(
        "push",
        ("title.txt", "body.txt"),
        "push",
        address_sql="nullif(btrim(p.push_token), '')",
        normalized_sql="btrim(p.push_token)",
        checks=(
            ("p.push_platform IS NULL", "unknown_push_platform"),
            ("p.push_disabled_at IS NOT NULL", "push_endpoint_disabled"),
        ),
        optional_parts=("link.txt",),
    ),
    "direct_mail": ChannelSpec(
        "direct_mail",
        (),
        "direct_mail",
        address_sql=(
            "nullif(concat_ws(', ', nullif(btrim(p.address_line1), ''), nullif(btrim(p.address_line2), ''), "
            "nullif(btrim(p.postal_code), ''), nullif(btrim(p.city), ''), p.country_code), '')"
        ),
        normalized_sql=(
            "lower(concat_ws('|', btrim(p.address_line1), btrim(p.address_line2), btrim(p.postal_code), "
            "btrim(p.city), p.country_code))"
        ),
        checks=(
            (
                "nullif(btrim(p.address_line1), '') IS NULL OR nullif(btrim(p.postal_code), '') IS NULL "
                "OR nullif(btrim(p.city), '') IS NULL OR p.country_code IS NULL",
                "incomplete_postal_address",
            ),
        ),
    ),
    "webhook": ChannelSpec(
        "webhook",
        ("payload.json",),
        None,
        address_sql="p.profile_id::text",
        normalized_sql="p.profile_id::text",
    ),
}


def template_parts(channel: str) -> tuple[str, ...]:
    return CHANNELS[channel].template_parts


def consent_channel(step) -> str | None:
    """The consent a step needs: the channel's own, or the one a webhook step names."""
    return CHANNELS[step.channel].consent_channel or getattr(step, "consent_channel", None)


_DEFAULT_CONNECTIONS = {
    ("email", "smtp"): "smtp_default",
    **{("email", name): relay.default_conn_id for name, relay in RELAYS.items()},
    ("webhook", None): "webhook_default",
}


def effective_connection_id(step) -> str:
    """The Airflow connection a step sends through: its own, or its provider's default."""
    if step.connection_id:
        return step.connection_id
    return _DEFAULT_CONNECTIONS.get((step.channel, getattr(step, "provider", None)), "aws_default")
