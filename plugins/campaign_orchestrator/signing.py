"""What every signed link shares (the unsubscribe link, the tracking pixel and click links):
URL-safe base64 without padding, HMAC-SHA256 under a per-purpose domain prefix, verification
against the current and previous secrets in constant time, and the Airflow connection the
secrets and the public base URL come from.

A MAC is ``HMAC-SHA256(secret, domain + message)``: each kind of token signs under its own
``domain`` (``b"unsubscribe.v1."``, ``b"track.v1."``), so a MAC made for one purpose never
verifies for another, even where two purposes share a secret.

Rotation: tokens are signed with ``secrets[0]`` and verified against every secret of the
connection (password first, then extra ``previous_secrets``), so links already in mailboxes
keep working while a new secret rolls out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

MIN_SECRET = 16
"""Characters a signing secret needs at least."""

_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_SHA256_BLOCK = 64
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))
_URLSAFE = bytes.maketrans(b"+/", b"-_")

T = TypeVar("T")


class TokenError(ValueError):
    """A signed token that cannot be honoured."""


class MalformedToken(TokenError):
    """Not a token at all: wrong shape, bad base64, bad payload."""


class ForgedToken(TokenError):
    """Well-formed, but no current or previous secret signed it."""


class ExpiredToken(TokenError):
    """Genuine but past its expiry; carries what the token says."""

    def __init__(self, message: str, payload: Any) -> None:
        super().__init__(message)
        self.payload = payload


class SigningNotConfigured(RuntimeError):
    """The connection holding a signing secret is missing or unusable."""


def b64encode(raw: bytes) -> str:
    """Unpadded base64url, without ``base64.urlsafe_b64encode``'s two Python-level calls."""
    return binascii.b2a_base64(raw, newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")


def b64decode(text: str) -> bytes:
    """The bytes of unpadded, canonical base64url ``text``; raises :class:`MalformedToken`.

    One encoding per value: a token cannot be altered into another string that still verifies.
    """
    if not _B64URL.fullmatch(text):
        raise MalformedToken("token part is not unpadded base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise MalformedToken(f"token part is not base64url: {exc}") from None
    if b64encode(raw) != text:
        raise MalformedToken("token part is not canonical base64url")
    return raw


def mac(secret: str, domain: bytes, message: bytes) -> bytes:
    """``HMAC-SHA256(secret, domain + message)``, all 32 bytes."""
    return hmac.digest(secret.encode("utf-8"), domain + message, "sha256")


class Mac:
    """:func:`mac` under one secret and domain, for signing many tokens: HMAC-SHA256 (RFC 2104)
    with the key's inner and outer pads, and the domain, absorbed once, so a MAC costs two
    hash-state copies instead of a key setup (a third of ``hmac.digest``'s time)."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, secret: str, domain: bytes) -> None:
        key = secret.encode("utf-8")
        if len(key) > _SHA256_BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_SHA256_BLOCK, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._inner.update(domain)
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def __call__(self, message: bytes) -> bytes:
        """``mac(secret, domain, message)``."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def check_mac(secrets: Sequence[str], domain: bytes, message: bytes, given: bytes, what: str = "token") -> None:
    """Raise :class:`ForgedToken` unless one of ``secrets`` made ``given`` (a MAC, possibly
    truncated to its first bytes, 12 at least) over ``message``.

    Every secret is tried and compared in constant time, so the time taken does not say
    which one (if any) matched.
    """
    size = len(given)
    if size < 12:
        raise MalformedToken(f"the {what}'s signature is too short")
    genuine = False
    for secret in secrets:
        genuine |= hmac.compare_digest(mac(secret, domain, message)[:size], given)
    if not genuine:
        raise ForgedToken(f"the {what}'s signature does not match")


@dataclass(frozen=True)
class SigningConnection:
    """What a signing connection holds: secrets (current first), public base URL, extras."""

    conn_id: str
    secrets: tuple[str, ...]
    base_url: str
    extra: dict[str, Any] = field(default_factory=dict)


def check_secrets(secrets: Sequence[str], conn_id: str, error: type[SigningNotConfigured]) -> None:
    """Raise ``error`` naming ``conn_id`` unless there is a secret and each is long enough."""
    if not secrets or any(len(s) < MIN_SECRET for s in secrets):
        raise error(
            f"connection {conn_id!r}: the password (and each of previous_secrets) must be a secret "
            f"of at least {MIN_SECRET} characters"
        )


def base_url(host: str | None, schema: str | None, port: int | None, conn_id: str,
             error: type[SigningNotConfigured]) -> str:
    """The public base URL a connection's host, schema (URL scheme) and port name; "" without a host."""
    host = (host or "").strip().rstrip("/")
    if not host:
        return ""
    if "://" in host:
        return host
    scheme = (schema or "https").strip().lower()
    if scheme not in ("http", "https"):
        raise error(
            f"connection {conn_id!r}: schema {schema!r} is not a URL scheme; use https (or put the full URL in host)"
        )
    return f"{scheme}://{host}" + (f":{port}" if port else "")


@overload
def read_connection(
    conn_id: str, error: type[SigningNotConfigured], needed_for: str, *, optional: Literal[False] = False
) -> SigningConnection: ...
@overload
def read_connection(
    conn_id: str, error: type[SigningNotConfigured], needed_for: str, *, optional: Literal[True]
) -> SigningConnection | None: ...


def read_connection(
    conn_id: str, error: type[SigningNotConfigured], needed_for: str, *, optional: bool = False
) -> SigningConnection | None:
    """Read the Airflow connection ``conn_id``: password = secret, extra ``previous_secrets``
    (a list, or one string), host/schema/port = public base URL.

    Raises ``error`` naming the connection when it has no password, and when it is absent
    (``needed_for`` says in that message what needs it) unless ``optional``: then None.
    """
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        if optional:
            return None
        raise error(
            f"Airflow connection {conn_id!r} is not defined: {needed_for} "
            "(password = signing secret, host = public URL of the endpoint)"
        ) from None
    extra = conn.extra_dejson or {}
    previous = extra.get("previous_secrets") or []
    if isinstance(previous, str):
        previous = [previous]
    if not conn.password:
        raise error(f"connection {conn_id!r} has no password (the signing secret)")
    return SigningConnection(
        conn_id=conn_id,
        secrets=(conn.password, *(str(s) for s in previous)),
        base_url=base_url(conn.host, conn.schema, conn.port, conn_id, error),
        extra=dict(extra),
    )


class CachedSettings(Generic[T]):
    """``loader()`` at most once per ``ttl`` seconds: an endpoint does not look its
    connection up on every request, and a rotated secret is picked up within ``ttl``."""

    def __init__(
        self, loader: Callable[[], T], ttl: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._loader, self._ttl, self._clock = loader, ttl, clock
        self._value: T | None = None
        self._loaded_at = 0.0

    def __call__(self) -> T:
        now = self._clock()
        if self._value is None or now - self._loaded_at >= self._ttl:
            self._value = self._loader()
            self._loaded_at = now
        return self._value


__all__ = [
    "MIN_SECRET",
    "CachedSettings",
    "ExpiredToken",
    "Mac",
    "ForgedToken",
    "MalformedToken",
    "SigningConnection",
    "SigningNotConfigured",
    "TokenError",
    "b64decode",
    "b64encode",
    "base_url",
    "check_mac",
    "check_secrets",
    "mac",
    "read_connection",
]
