"""Signed, expiring unsubscribe tokens: the only authentication of the unsubscribe link.

A token is ``base64url(payload) + "." + base64url(HMAC-SHA256(secret, "unsubscribe.v1." + payload))``
without padding, so it can sit in a URL path unescaped. The payload is a compact JSON array
``[1, profile_id, channel, campaign_id, message_ref, expires]``; ``message_ref`` is the ledger
key of the message (``run_key:step_id:entity_key`` for email), ``expires`` seconds since the
epoch.

The secret is the password of the Airflow connection ``campaign_unsubscribe``, read when a
send builds its renderer or when the endpoint serves a request, never at import. Rotation:
tokens are always signed with the current secret and verified against it and every secret
in the connection's extra ``previous_secrets``, so links already in mailboxes keep working
while the new secret rolls out. Encoding, MACs and the connection are shared with the
tracking links (:mod:`campaign_orchestrator.signing`).

:func:`verify` checks the signature before it looks at the payload (a forged token tells
the caller nothing), compares in constant time, and raises :class:`MalformedToken`,
:class:`ForgedToken` or :class:`ExpiredToken`.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING
from urllib.parse import quote

from campaign_orchestrator import signing
from campaign_orchestrator.signing import ForgedToken, MalformedToken, TokenError, b64decode, b64encode

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

CONN_ID = "campaign_unsubscribe"
"""Airflow connection: password = signing secret, host (+ schema as URL scheme) = public base URL."""
URL_PREFIX = "/campaigns-unsubscribe"
"""Where the api-server (and the standalone server) mount the unsubscribe app."""
DEFAULT_VALIDITY_DAYS = 60
CHANNELS = frozenset({"email", "sms", "push", "direct_mail"})

_VERSION = 1
_DOMAIN = b"unsubscribe.v1."
"""Signed before the payload: a MAC made for anything else with the same secret never verifies here."""
_MAX_TOKEN = 1024


class ExpiredToken(signing.ExpiredToken):
    """Genuine but past its expiry; carries the payload so a page can say which campaign."""

    payload: TokenPayload

    def __init__(self, payload: TokenPayload) -> None:
        super().__init__(f"the unsubscribe link expired at {payload.expires} (epoch seconds)", payload)


class UnsubscribeNotConfigured(signing.SigningNotConfigured):
    """The ``campaign_unsubscribe`` connection is missing or unusable."""


@dataclass(frozen=True, slots=True)
class TokenPayload:
    """What a token says: who unsubscribes from which channel, after which message.

    :param profile_id: ``crm.profile.profile_id``.
    :param channel: the consent channel (``email``, ``sms``, ``push``, ``direct_mail``).
    :param campaign_id: the campaign that sent the message.
    :param message_ref: the message's ledger key (``run_key:step_id:entity_key``) or Message-ID.
    :param expires: seconds since the epoch after which the token is refused.
    """

    profile_id: int
    channel: str
    campaign_id: str
    message_ref: str
    expires: int


def _mac(secret: str, encoded_payload: str) -> bytes:
    return signing.mac(secret, _DOMAIN, encoded_payload.encode("ascii"))


def _payload_json(profile_id: int, channel: str, campaign_id: str, message_ref: str, expires: int) -> str:
    fields = [_VERSION, profile_id, channel, campaign_id, message_ref, expires]
    if type(profile_id) is int and type(expires) is int and all(type(s) is str for s in fields[2:5]):
        # What json.dumps below writes for exact ints (their repr) and strs (its own ASCII
        # escaper), without building an encoder per token; anything else takes json.dumps.
        return (
            f"[{_VERSION},{profile_id},{encode_basestring_ascii(channel)},{encode_basestring_ascii(campaign_id)},"
            f"{encode_basestring_ascii(message_ref)},{expires}]"
        )
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=True)


def _sign(secret: str, profile_id: int, channel: str, campaign_id: str, message_ref: str, expires: int) -> str:
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    encoded = b64encode(_payload_json(profile_id, channel, campaign_id, message_ref, expires).encode("ascii"))
    return f"{encoded}.{b64encode(_mac(secret, encoded))}"


def sign(payload: TokenPayload, secret: str) -> str:
    """The token for ``payload``, signed with ``secret``."""
    return _sign(secret, payload.profile_id, payload.channel, payload.campaign_id, payload.message_ref, payload.expires)


def _decode(encoded: str) -> TokenPayload:
    try:
        data = json.loads(b64decode(encoded))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedToken(f"token payload is not JSON: {exc}") from None
    if not (isinstance(data, list) and len(data) == 6 and data[0] == _VERSION):
        raise MalformedToken("token payload has an unknown layout or version")
    _, profile_id, channel, campaign_id, message_ref, expires = data
    if not (
        type(profile_id) is int
        and channel in CHANNELS
        and isinstance(campaign_id, str)
        and isinstance(message_ref, str)
        and type(expires) is int
    ):
        raise MalformedToken("token payload has fields of the wrong type")
    return TokenPayload(profile_id, channel, campaign_id, message_ref, expires)


def verify(token: str, secrets: Sequence[str], *, now: float | None = None) -> TokenPayload:
    """The payload of a genuine, unexpired ``token``; ``secrets[0]`` is the current secret.

    Raises :class:`MalformedToken`, :class:`ForgedToken` or :class:`ExpiredToken`.
    """
    if not secrets:
        raise UnsubscribeNotConfigured("no secret to verify unsubscribe tokens with")
    if not isinstance(token, str) or len(token) > _MAX_TOKEN or token.count(".") != 1:
        raise MalformedToken("not an unsubscribe token")
    encoded, _, signature = token.partition(".")
    given = b64decode(signature)
    b64decode(encoded)  # a malformed payload is malformed whoever signed it
    if len(given) != hashlib.sha256().digest_size:
        raise MalformedToken("token signature has the wrong length")
    signing.check_mac(secrets, _DOMAIN, encoded.encode("ascii"), given, "unsubscribe token")
    payload = _decode(encoded)
    if (time.time() if now is None else now) >= payload.expires:
        raise ExpiredToken(payload)
    return payload


@dataclass(frozen=True)
class UnsubscribeSettings:
    """The ``campaign_unsubscribe`` connection, read once per renderer or per cache period.

    :param secrets: the current signing secret first, then previous ones still accepted.
    :param base_url: public URL the unsubscribe app is reached at, without the mount prefix
        (``https://campaigns.example.com``); empty when only verifying.
    :param mailto: optional address for a ``mailto:`` alternative in ``List-Unsubscribe``.
    :param validity_days: how long a link works after the message is rendered.
    """

    secrets: tuple[str, ...]
    base_url: str = ""
    mailto: str | None = None
    validity_days: int = DEFAULT_VALIDITY_DAYS

    def __post_init__(self) -> None:
        signing.check_secrets(self.secrets, CONN_ID, UnsubscribeNotConfigured)
        if self.validity_days < 1:
            raise UnsubscribeNotConfigured(f"connection {CONN_ID!r}: validity_days must be at least 1")

    def token(self, payload: TokenPayload) -> str:
        return sign(payload, self.secrets[0])

    def verify(self, token: str, *, now: float | None = None) -> TokenPayload:
        return verify(token, self.secrets, now=now)

    def url(self, token: str) -> str:
        """The one-click URL for ``token``: ``{base_url}/campaigns-unsubscribe/unsubscribe/{token}``."""
        if not self.base_url:
            raise UnsubscribeNotConfigured(
                f"connection {CONN_ID!r} has no host: set it to the public URL of the unsubscribe endpoint, "
                "e.g. https://campaigns.example.com"
            )
        return f"{self.base_url}{URL_PREFIX}/unsubscribe/{token}"


def load_settings(conn_id: str = CONN_ID) -> UnsubscribeSettings:
    """Read ``conn_id``: password = secret, host/schema/port = public base URL; extra
    ``previous_secrets`` (list), ``mailto``, ``validity_days``.

    Raises :class:`UnsubscribeNotConfigured` naming the connection when it is absent.
    """
    conn = signing.read_connection(
        conn_id, UnsubscribeNotConfigured, "marketing emails need it for their List-Unsubscribe link"
    )
    return UnsubscribeSettings(
        secrets=conn.secrets,
        base_url=conn.base_url,
        mailto=conn.extra.get("mailto") or None,
        validity_days=int(conn.extra.get("validity_days") or DEFAULT_VALIDITY_DAYS),
    )


class CachedSettings(signing.CachedSettings[UnsubscribeSettings]):
    """:func:`load_settings` at most once per ``ttl`` seconds: the endpoint does not look the
    connection up on every click, and a rotated secret is picked up within ``ttl``."""

    def __init__(
        self, loader: Callable[[], UnsubscribeSettings] = load_settings, ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(loader, ttl, clock)


def unsubscribe_url(settings: UnsubscribeSettings, payload: TokenPayload) -> str:
    """The signed one-click URL for ``payload``."""
    return settings.url(settings.token(payload))


def unsubscribe_headers(settings: UnsubscribeSettings, url: str, token: str | None = None) -> dict[str, str]:
    """RFC 8058 headers for a message whose one-click link is ``url``.

    ``List-Unsubscribe`` carries the HTTPS link first and, when the connection names a
    ``mailto`` address, a mailto alternative whose subject holds ``token``.
    """
    value = f"<{url}>"
    if settings.mailto:
        subject = quote(f"unsubscribe {token}" if token else "unsubscribe", safe="")
        value += f", <mailto:{quote(settings.mailto, safe='@')}?subject={subject}>"
    return {"List-Unsubscribe": value, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def email_link(
    settings: UnsubscribeSettings, profile_id: int, campaign_id: str, message_ref: str, expires: int
) -> tuple[str, dict[str, str]]:
    """The ``unsubscribe_url`` of one email and its two headers."""
    # settings.token() without a TokenPayload per message.
    token = _sign(settings.secrets[0], profile_id, "email", campaign_id, message_ref, expires)
    url = settings.url(token)
    return url, unsubscribe_headers(settings, url, token)


def expiry(settings: UnsubscribeSettings, now: float | None = None) -> int:
    return int(time.time() if now is None else now) + settings.validity_days * 86_400


__all__ = [
    "CONN_ID",
    "URL_PREFIX",
    "CachedSettings",
    "ExpiredToken",
    "ForgedToken",
    "MalformedToken",
    "TokenError",
    "TokenPayload",
    "UnsubscribeNotConfigured",
    "UnsubscribeSettings",
    "email_link",
    "expiry",
    "load_settings",
    "sign",
    "unsubscribe_headers",
    "unsubscribe_url",
    "verify",
]
