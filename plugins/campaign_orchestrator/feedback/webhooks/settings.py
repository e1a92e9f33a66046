"""The webhook secrets: one Airflow connection, ``campaign_webhooks``, extras per provider.

- ``sendgrid_public_key``: the Signed Event Webhook's verification key, as SendGrid shows
  it (base64 of the DER public key) or PEM;
- ``mailgun_signing_secret``: the HTTP webhook signing key (``previous_mailgun_signing_secrets``
  during a rotation);
- ``postmark_user`` and ``postmark_password``: the HTTP Basic credentials put in the
  webhook URL configured at Postmark (``https://user:password@host/...``);
  ``postmark_allowed_ips``: optionally, the addresses or CIDR ranges requests may come from;
- ``max_signature_age_seconds``: how old a signed timestamp may be (default 900).

A provider without its secret is not served (404). Read when the app serves a request,
at most once a minute (a rotated secret is picked up without a restart).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

CONN_ID = "campaign_webhooks"
DEFAULT_MAX_AGE = 900
_MIN_SECRET = 16


class WebhooksNotConfigured(RuntimeError):
    """The ``campaign_webhooks`` connection is unusable for a provider."""


@dataclass(frozen=True)
class WebhookSettings:
    sendgrid_public_key: Any = None
    """A ``cryptography`` EC public key (P-256), or None."""
    mailgun_secrets: tuple[str, ...] = ()
    postmark_credentials: bytes | None = None
    """``user:password`` as sent in the Basic header, or None."""
    postmark_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    max_age: int = DEFAULT_MAX_AGE

    def configured(self, provider: str) -> bool:
        return {
            "sendgrid": self.sendgrid_public_key is not None,
            "mailgun": bool(self.mailgun_secrets),
            "postmark": self.postmark_credentials is not None,
        }.get(provider, False)


def settings_from_extras(extra: dict[str, Any]) -> WebhookSettings:
    key = None
    if extra.get("sendgrid_public_key"):
        key = _ec_key(str(extra["sendgrid_public_key"]))
    secrets = tuple(str(s) for s in [extra.get("mailgun_signing_secret"), *_list(
        extra.get("previous_mailgun_signing_secrets"))] if s)
    if any(len(s) < _MIN_SECRET for s in secrets):
        raise WebhooksNotConfigured(f"connection {CONN_ID!r}: a Mailgun signing secret is shorter than {_MIN_SECRET}")
    credentials = None
    user, password = extra.get("postmark_user"), extra.get("postmark_password")
    if user or password:
        if not user or not password or ":" in str(user) or len(str(password)) < _MIN_SECRET:
            raise WebhooksNotConfigured(
                f"connection {CONN_ID!r}: postmark_user (no ':') and postmark_password (at least {_MIN_SECRET} "
                "characters) go together"
            )
        credentials = f"{user}:{password}".encode()
    try:
        networks = tuple(ipaddress.ip_network(str(n).strip(), strict=False) for n in _list(extra.get(
            "postmark_allowed_ips")))
    except ValueError as exc:
        raise WebhooksNotConfigured(f"connection {CONN_ID!r}: postmark_allowed_ips: {exc}") from None
    return WebhookSettings(
        sendgrid_public_key=key,
        mailgun_secrets=secrets,
        postmark_credentials=credentials,
        postmark_networks=networks,
        max_age=int(extra.get("max_signature_age_seconds") or DEFAULT_MAX_AGE),
    )


def load_settings(conn_id: str = CONN_ID) -> WebhookSettings:
    """The settings of ``conn_id``; no connection means no provider is served."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return WebhookSettings()
    return settings_from_extras(conn.extra_dejson or {})


def _ec_key(text: str) -> Any:
    import base64
    import binascii

    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

    try:
        if "BEGIN PUBLIC KEY" in text:
            key = load_pem_public_key(text.encode())
        else:
            key = load_der_public_key(base64.b64decode("".join(text.split()), validate=True))
    except (ValueError, binascii.Error, TypeError) as exc:
        raise WebhooksNotConfigured(f"connection {CONN_ID!r}: sendgrid_public_key is not a public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise WebhooksNotConfigured(f"connection {CONN_ID!r}: sendgrid_public_key is not a P-256 (ECDSA) key")
    return key


def _list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v for v in value.split(",") if v.strip()]
    return list(value)
