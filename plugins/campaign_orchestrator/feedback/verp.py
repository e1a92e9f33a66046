"""VERP: a per-message return path, so an asynchronous bounce names the message it is about.

Each SMTP message is sent with the envelope sender (``MAIL FROM``, which the receiving side
keeps as ``Return-Path`` and bounces to) ``<local>+<token>@<domain>``, e.g.
``bounces+2f5e…q7@bounces.wanderly.example``. The token is 30 bytes in lower-case base32
(48 characters; the whole local part stays within RFC 5321's 64 octets):

- the message's Message-ID uuid (16 bytes), as the ledger holds it in
  ``campaign.message.provider_message_id`` (``<uuid@sender-domain>``);
- the profile id (8 bytes) XOR-ed with a key stream, so a recipient's mail server does not
  learn our customer ids: the store finds the message through the profile's history index
  (a profile has a few hundred messages at most) rather than by scanning the ledger for
  the uuid;
- a MAC (6 bytes): the first 14 bytes of ``HMAC-SHA256(secret, "campaign-verp.v1." + uuid)``
  give the key stream (8) and the MAC (6). A forged or altered uuid fails the MAC; an
  altered profile id decodes to a profile whose history has no message with that uuid
  (the uuid is derived from the ledger key, which includes the profile).

Lower-case base32 survives MTAs that fold the local part's case. The secret rotates like
the unsubscribe secret: tokens are made with the current one and read with every one.

Configured by the Airflow connection ``campaign_bounces`` (the bounce mailbox, read over
IMAP by :mod:`.mailbox`): extras ``verp_domain`` (on), ``verp_local`` (default
``bounces``), ``secret`` and ``previous_secrets``. Without ``verp_domain`` (or without the
connection) messages keep the step's sender as their envelope sender.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Iterable

CONN_ID = "campaign_bounces"
DEFAULT_LOCAL = "bounces"
TOKEN_LENGTH = 48
"""Characters of a token: base32 of 30 bytes, no padding."""
_DOMAIN = b"campaign-verp.v1."
_MIN_SECRET = 16
_MAX_LOCAL_PART = 64  # RFC 5321 4.5.3.1.1
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_LOCAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_HOSTNAME = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")
_MASK64 = (1 << 64) - 1
# Lower-case base32 (RFC 4648 alphabet) of 30 bytes, ten bits at a time: two characters per
# lookup, a third of base64.b32encode's time, which is written in Python.
_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
_PAIRS = tuple(a + b for a in _ALPHABET for b in _ALPHABET)
_SHIFTS = tuple(range(230, -1, -10))


class VerpNotConfigured(RuntimeError):
    """The ``campaign_bounces`` connection asks for VERP but cannot provide it."""


class VerpReference(NamedTuple):
    """What a genuine token says: the message's uuid and its profile."""

    message_uuid: str
    profile_id: int


@dataclass(frozen=True)
class VerpSettings:
    """Return-path signing for one send (or one mailbox read).

    :param secrets: the current secret first, then previous ones still accepted.
    :param domain: the bounce domain, whose MX delivers ``<local>+anything`` to the bounce
        mailbox (Postfix ``recipient_delimiter = +``).
    :param local: the bounce mailbox's local part.
    """

    secrets: tuple[str, ...]
    domain: str
    local: str = DEFAULT_LOCAL
    _keys: tuple[bytes, ...] = field(init=False, repr=False, compare=False)
    _signer: hmac.HMAC = field(init=False, repr=False, compare=False)
    _address: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.secrets or any(len(s) < _MIN_SECRET for s in self.secrets):
            raise VerpNotConfigured(
                f"connection {CONN_ID!r}: the extra 'secret' (and each of 'previous_secrets') must be a secret "
                f"of at least {_MIN_SECRET} characters"
            )
        if not _HOSTNAME.fullmatch(self.domain):
            raise VerpNotConfigured(f"connection {CONN_ID!r}: verp_domain {self.domain!r} is not a domain name")
        if not _LOCAL.fullmatch(self.local) or len(self.local) + 1 + TOKEN_LENGTH > _MAX_LOCAL_PART:
            raise VerpNotConfigured(
                f"connection {CONN_ID!r}: verp_local {self.local!r} must be letters, digits, '.', '_' or '-' and at "
                f"most {_MAX_LOCAL_PART - 1 - TOKEN_LENGTH} characters (the token takes the rest of the 64)"
            )
        object.__setattr__(self, "_keys", tuple(s.encode("utf-8") for s in self.secrets))
        # The keyed state after the domain prefix, copied per message instead of rebuilt.
        object.__setattr__(self, "_signer", hmac.new(self._keys[0], _DOMAIN, hashlib.sha256))
        pattern = (
            rf"(?<![\w.+-]){re.escape(self.local)}\+([a-z2-7]{{{TOKEN_LENGTH}}})@{re.escape(self.domain)}(?![\w.-])"
        )
        object.__setattr__(self, "_address", re.compile(pattern, re.IGNORECASE))

    def return_path(self, message_id: str, profile_id: int) -> str | None:
        """The envelope sender for the message whose Message-ID is ``message_id``
        (``<uuid@domain>``, :func:`~campaign_orchestrator.channels.email.render.message_id`);
        None when the id is not of that form (the caller keeps its plain sender)."""
        uuid_text = message_id[1:37]
        if message_id[37:38] != "@" or not _UUID.fullmatch(uuid_text):
            return None
        return f"{self.local}+{self.token(uuid_text, profile_id)}@{self.domain}"

    def token(self, message_uuid: str, profile_id: int) -> str:
        raw_uuid = bytes.fromhex(message_uuid.replace("-", ""))
        signer = self._signer.copy()
        signer.update(raw_uuid)
        digest = signer.digest()
        hidden = (profile_id & _MASK64) ^ int.from_bytes(digest[:8], "big")
        number = (int.from_bytes(raw_uuid, "big") << 112) | (hidden << 48) | int.from_bytes(digest[8:14], "big")
        return "".join([_PAIRS[(number >> shift) & 1023] for shift in _SHIFTS])

    def read_token(self, token: str) -> VerpReference | None:
        """The reference a genuine token carries; None for a malformed or forged one."""
        if len(token) != TOKEN_LENGTH:
            return None
        try:
            raw = base64.b32decode(token.upper())
        except (binascii.Error, ValueError):
            return None
        raw_uuid, hidden, mac = raw[:16], int.from_bytes(raw[16:24], "big"), raw[24:30]
        genuine: bytes | None = None
        # Every secret is tried: the time taken does not say which one matched.
        for key in self._keys:
            digest = hmac.digest(key, _DOMAIN + raw_uuid, "sha256")
            if hmac.compare_digest(digest[8:14], mac) and genuine is None:
                genuine = digest
        if genuine is None:
            return None
        profile = hidden ^ int.from_bytes(genuine[:8], "big")
        if profile >= 1 << 63:  # the id was a negative bigint
            profile -= 1 << 64
        text = raw_uuid.hex()
        return VerpReference(f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}", profile)

    def read(self, addresses: Iterable[str]) -> VerpReference | None:
        """The first genuine reference among ``addresses`` (bare or in angle brackets, any
        case); None when none is a return path of ours with a valid token."""
        for address in addresses:
            match = self._address.search(address.strip())
            if match:
                reference = self.read_token(match.group(1))
                if reference is not None:
                    return reference
        return None

    def looks_like_ours(self, addresses: Iterable[str]) -> bool:
        """Whether any of ``addresses`` has the shape of our return path, genuine or not."""
        return any(self._address.search(a) for a in addresses)


def load_settings(conn_id: str = CONN_ID) -> VerpSettings | None:
    """The return-path settings of ``conn_id``; None when it does not exist or has no
    ``verp_domain`` extra (VERP off). Raises :class:`VerpNotConfigured` for a connection that
    names a domain but no usable secret."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None
    return settings_from_extras(conn.extra_dejson or {})


def settings_from_extras(extra: dict) -> VerpSettings | None:
    domain = str(extra.get("verp_domain") or "").strip().lower()
    if not domain:
        return None
    previous = extra.get("previous_secrets") or []
    if isinstance(previous, str):
        previous = [previous]
    secret = extra.get("secret")
    if not secret:
        raise VerpNotConfigured(
            f"connection {CONN_ID!r} sets verp_domain but no extra 'secret' to sign return paths with"
        )
    return VerpSettings(
        secrets=(str(secret), *(str(s) for s in previous)),
        domain=domain,
        local=str(extra.get("verp_local") or DEFAULT_LOCAL),
    )
