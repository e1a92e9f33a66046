"""Compact signed tokens of the open pixel and the click links: the only authentication of
the tracking endpoint.

A token is unpadded base64url of ``body + MAC``, one path segment. The body is binary, so a
token is about 50 characters (the unsubscribe link's JSON token is over 120):

=========  ===============================================================================
header     one byte: version (1) in the high nibble, kind in the low one (0 open, 1 click)
expires    varint: hours since the epoch after which the token is refused
run_key    varint
step_id    varint length + UTF-8
profile_id varint of its zigzag encoding (a bigint may be negative)
entity_key varint length + UTF-8
link       click only: varint, the link's position among the message's tracked links
=========  ===============================================================================

``MAC = HMAC-SHA256(secret, "track.v1." + body)`` truncated to 12 bytes (96 bits: an online
forgery needs ~2^95 requests), and for a click ``HMAC-SHA256(secret, "track.v1." + body +
NUL + url)``: the destination travels in the clear beside the token (``/c/<token>?u=<url>``)
and the endpoint redirects only to the URL the token was signed for. Keeping the URL out of
the token keeps tokens short whatever the URL's length, and the link readable in a status
bar. The body is parsed only after its MAC verified and must be consumed exactly, so
``body + NUL + url`` cannot be split another way into a valid token.

The ``track.v1.`` domain keeps these MACs apart from the unsubscribe tokens' even when both
are signed with one secret (the fallback to the ``campaign_unsubscribe`` connection; see
:mod:`.settings`). Verification tries the current and every previous secret in constant time
(:func:`campaign_orchestrator.signing.check_mac`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from campaign_orchestrator.signing import ExpiredToken, Mac, MalformedToken, b64decode, b64encode, check_mac

if TYPE_CHECKING:
    from collections.abc import Sequence

VERSION = 1
OPEN = 0
CLICK = 1
MAC_BYTES = 12
DOMAIN = b"track.v1."
OPEN_HEADER = bytes([VERSION << 4 | OPEN])
CLICK_HEADER = bytes([VERSION << 4 | CLICK])
MAX_TOKEN = 400
"""Characters: a step id and an entity key of 100 characters each still fit."""

_SMALL = [bytes([n]) for n in range(128)]


def varint(value: int) -> bytes:
    """``value`` (>= 0) as an unsigned LEB128 varint: 7 bits a byte, low bits first."""
    if value < 128:
        return _SMALL[value]
    out = bytearray()
    while value >= 128:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def zigzag(value: int) -> int:
    """A signed integer as an unsigned one, small magnitudes small: 0, -1, 1, -2 -> 0, 1, 2, 3."""
    return value * 2 if value >= 0 else -value * 2 - 1


def text_field(value: str) -> bytes:
    raw = value.encode("utf-8")
    return varint(len(raw)) + raw


def expires_hour(validity_days: int, now: float | None = None) -> int:
    """The first hour since the epoch at which a token issued ``now`` is refused."""
    return -(-(int(time.time() if now is None else now) + validity_days * 86_400) // 3600)


@dataclass(frozen=True, slots=True)
class MessageKey:
    """The ledger key of one message: ``campaign.message``'s primary key."""

    run_key: int
    step_id: str
    profile_id: int
    entity_key: str = ""


@dataclass(frozen=True, slots=True)
class TrackingToken:
    """What a genuine token says.

    :param key: the message.
    :param kind: ``open`` (the pixel) or ``click``.
    :param link: for a click, the link's position among the message's tracked links (from 0).
    :param expires: seconds since the epoch from which the token is refused.
    """

    key: MessageKey
    kind: Literal["open", "click"]
    link: int | None
    expires: int


def message_body(expires: int, key: MessageKey) -> bytes:
    """The body of ``key``'s tokens after the header byte, without the click's link index.

    ``expires`` is in hours since the epoch (:func:`expires_hour`).
    """
    return (
        varint(expires) + varint(key.run_key) + text_field(key.step_id)
        + varint(zigzag(key.profile_id)) + text_field(key.entity_key)
    )


def signer(secret: str) -> Mac:
    """The MAC of tokens signed with ``secret`` (:func:`sign_open`, :func:`sign_click`)."""
    return Mac(secret, DOMAIN)


def sign_open(mac: Mac, body: bytes) -> str:
    """The open token of the message whose :func:`message_body` is ``body``."""
    signed = OPEN_HEADER + body
    return b64encode(signed + mac(signed)[:MAC_BYTES])


def sign_click(mac: Mac, body: bytes, link: int, url: bytes) -> str:
    """The click token of link ``link`` (position) to ``url`` (UTF-8) of that message."""
    signed = CLICK_HEADER + body + (_SMALL[link] if link < 128 else varint(link))
    return b64encode(signed + mac(signed + b"\0" + url)[:MAC_BYTES])


def sign(secret: str, key: MessageKey, *, expires: int, link: int | None = None, url: str | None = None) -> str:
    """A token for ``key``: an open token, or with ``link`` and ``url`` a click token.

    ``expires`` is in hours since the epoch (:func:`expires_hour`).
    """
    body = message_body(expires, key)
    if link is None:
        return sign_open(signer(secret), body)
    if url is None:
        raise ValueError("a click token signs its destination URL")
    return sign_click(signer(secret), body, link, url.encode("utf-8"))


class _Reader:
    __slots__ = ("data", "at")

    def __init__(self, data: bytes, at: int) -> None:
        self.data, self.at = data, at

    def varint(self) -> int:
        value, shift = 0, 0
        while True:
            if self.at >= len(self.data) or shift > 63:
                raise MalformedToken("token body ends inside a number")
            byte = self.data[self.at]
            self.at += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    def text(self) -> str:
        size = self.varint()
        end = self.at + size
        if end > len(self.data):
            raise MalformedToken("token body ends inside a text field")
        try:
            value = self.data[self.at : end].decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedToken("token text field is not UTF-8") from None
        self.at = end
        return value


def _parse(body: bytes) -> TrackingToken:
    kind = body[0] & 0x0F
    reader = _Reader(body, 1)
    expires = reader.varint()
    run_key = reader.varint()
    step_id = reader.text()
    encoded = reader.varint()
    profile_id = encoded >> 1 if not encoded & 1 else -(encoded >> 1) - 1
    entity_key = reader.text()
    link = reader.varint() if kind == CLICK else None
    if reader.at != len(body):
        raise MalformedToken("token body has trailing bytes")
    return TrackingToken(
        MessageKey(run_key, step_id, profile_id, entity_key), "click" if kind == CLICK else "open", link,
        expires * 3600,
    )


def verify(token: str, secrets: Sequence[str], *, url: str | None = None, now: float | None = None) -> TrackingToken:
    """What a genuine, unexpired ``token`` says; ``secrets[0]`` is the current secret.

    A click token verifies only with the ``url`` it was signed for. Raises
    :class:`~campaign_orchestrator.signing.MalformedToken`,
    :class:`~campaign_orchestrator.signing.ForgedToken` or
    :class:`~campaign_orchestrator.signing.ExpiredToken` (whose ``payload`` is the token).
    """
    if not secrets:
        raise ValueError("no secret to verify tracking tokens with")
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN:
        raise MalformedToken("not a tracking token")
    raw = b64decode(token)
    if len(raw) <= MAC_BYTES + 1 or raw[0] >> 4 != VERSION or raw[0] & 0x0F not in (OPEN, CLICK):
        raise MalformedToken("not a tracking token of a known version")
    body, given = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    signed = body
    if body[0] & 0x0F == CLICK:
        if url is None:
            raise MalformedToken("a click token needs its destination URL")
        try:
            signed = body + b"\0" + url.encode("utf-8")
        except UnicodeEncodeError:
            raise MalformedToken("the destination URL is not valid text") from None
    check_mac(secrets, DOMAIN, signed, given, "tracking token")
    parsed = _parse(body)
    if (time.time() if now is None else now) >= parsed.expires:
        raise ExpiredToken(f"the tracking link expired at {parsed.expires} (epoch seconds)", parsed)
    return parsed


__all__ = [
    "CLICK",
    "MAC_BYTES",
    "OPEN",
    "MessageKey",
    "TrackingToken",
    "expires_hour",
    "message_body",
    "sign",
    "sign_click",
    "sign_open",
    "signer",
    "varint",
    "verify",
    "zigzag",
]
