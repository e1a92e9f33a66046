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
while the new secret rolls out.

:func:`verify` checks the signature before it looks at the payload (a forged token tells
the caller nothing), compares in constant time, and raises :class:`MalformedToken`,
:class:`ForgedToken` or :class:`ExpiredToken`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING
from urllib.parse import quote

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
_MIN_SECRET = 16
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_URLSAFE = bytes.maketrans(b"+/", b"-_")


class TokenError(ValueError):
    """An unsubscribe token that cannot be honoured."""


class MalformedToken(TokenError):
    """Not a token at all: wrong shape, bad base64, bad payload."""


class ForgedToken(TokenError):
    """Well-formed, but no current or previous secret signed it."""


class ExpiredToken(TokenError):
    """Genuine but past its expiry; carries the payload so a page can say which campaign."""

    def __init__(self, payload: TokenPayload) -> None:
        super().__init__(f"the unsubscribe link expired at {payload.expires} (epoch seconds)")
        self.payload = payload


class UnsubscribeNotConfigured(RuntimeError):
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


def _b64encode(raw: bytes) -> str:
    # base64.urlsafe_b64encode, without its two Python-level calls.
    return binascii.b2a_base64(raw, newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not _B64URL.fullmatch(text):
        raise MalformedToken("token part is not unpadded base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise MalformedToken(f"token part is not base64url: {exc}") from None
    # One encoding per value: a token cannot be altered into another string that still verifies.
    if _b64encode(raw) != text:
        raise MalformedToken("token part is not canonical base64url")
    return raw


def _mac(secret: str, encoded_payload: str) -> bytes:
    return hmac.digest(secret.encode("utf-8"), _DOMAIN + encoded_payload.encode("ascii"), "sha256")


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
    encoded = _b64encode(_payload_json(profile_id, channel, campaign_id, message_ref, expires).encode("ascii"))
    return f"{encoded}.{_b64encode(_mac(secret, encoded))}"


def sign(payload: TokenPayload, secret: str) -> str:
    """The token for ``payload``, signed with ``secret``."""
    return _sign(secret, payload.profile_id, payload.channel, payload.campaign_id, payload.message_ref, payload.expires)


def _decode(encoded: str) -> TokenPayload:
    try:
        data = json.loads(_b64decode(encoded))
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
    given = _b64decode(signature)
    _b64decode(encoded)  # a malformed payload is malformed whoever signed it
    if len(given) != hashlib.sha256().digest_size:
        raise MalformedToken("token signature has the wrong length")
    # Every secret is tried, so the time taken does not say which one (if any) matched.
    genuine = False
    for secret in secrets:
        genuine |= hmac.compare_digest(_mac(secret, encoded), given)
    if not genuine:
        raise ForgedToken("the unsubscribe token's signature does not match")
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
        if not self.secrets or any(len(s) < _MIN_SECRET for s in self.secrets):
            raise UnsubscribeNotConfigured(
                f"connection {CONN_ID!r}: the password (and each of previous_secrets) must be a secret "
                f"of at least {_MIN_SECRET} characters"
            )
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


def _base_url(host: str | None, schema: str | None, port: int | None) -> str:
    host = (host or "").strip().rstrip("/")
    if not host:
        return ""
    if "://" in host:
        return host
    scheme = (schema or "https").strip().lower()
    if scheme not in ("http", "https"):
        raise UnsubscribeNotConfigured(
            f"connection {CONN_ID!r}: schema {schema!r} is not a URL scheme; use https (or put the full URL in host)"
        )
    return f"{scheme}://{host}" + (f":{port}" if port else "")


def load_settings(conn_id: str = CONN_ID) -> UnsubscribeSettings:
    """Read ``conn_id``: password = secret, host/schema/port = public base URL; extra
    ``previous_secrets`` (list), ``mailto``, ``validity_days``.

    Raises :class:`UnsubscribeNotConfigured` naming the connection when it is absent.
    """
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise UnsubscribeNotConfigured(
            f"Airflow connection {conn_id!r} is not defined: marketing emails need it for their "
            "List-Unsubscribe link (password = signing secret, host = public URL of the endpoint)"
        ) from None
    extra = conn.extra_dejson or {}
    previous = extra.get("previous_secrets") or []
    if isinstance(previous, str):
        previous = [previous]
    if not conn.password:
        raise UnsubscribeNotConfigured(f"connection {conn_id!r} has no password (the signing secret)")
    return UnsubscribeSettings(
        secrets=(conn.password, *(str(s) for s in previous)),
        base_url=_base_url(conn.host, conn.schema, conn.port),
        mailto=extra.get("mailto") or None,
        validity_days=int(extra.get("validity_days") or DEFAULT_VALIDITY_DAYS),
    )


class CachedSettings:
    """:func:`load_settings` at most once per ``ttl`` seconds: the endpoint does not look the
    connection up on every click, and a rotated secret is picked up within ``ttl``."""

    def __init__(
        self, loader: Callable[[], UnsubscribeSettings] = load_settings, ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._loader, self._ttl, self._clock = loader, ttl, clock
        self._value: UnsubscribeSettings | None = None
        self._loaded_at = 0.0

    def __call__(self) -> UnsubscribeSettings:
        now = self._clock()
        if self._value is None or now - self._loaded_at >= self._ttl:
            self._value = self._loader()
            self._loaded_at = now
        return self._value


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
