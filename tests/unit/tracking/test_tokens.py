from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaign_orchestrator.signing import ExpiredToken, ForgedToken, MalformedToken
from campaign_orchestrator.tracking import tokens
from campaign_orchestrator.tracking.tokens import MessageKey, TrackingToken, expires_hour, sign, verify

SECRET = "tracking-secret-0123456789abcdef"
OLD = "previous-tracking-secret-0123456"
NOW = 1_800_000_000
EXPIRES = expires_hour(365, NOW)
KEY = MessageKey(run_key=12_345, step_id="offer_email", profile_id=4_321_987, entity_key="")
URL = "https://wanderly.example/sale?utm_source=email&utm_campaign=winter"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_open_token_round_trip_is_compact_and_one_path_segment() -> None:
    token = sign(SECRET, KEY, expires=EXPIRES)
    assert verify(token, [SECRET], now=NOW) == TrackingToken(KEY, "open", None, EXPIRES * 3600)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    # header 1 + expiry 3 + run 2 + step 12 + profile 4 + entity 1 + MAC 12 bytes
    assert len(unb64(token)) == 35
    assert len(token) == 47


def test_click_token_round_trip_with_its_url() -> None:
    token = sign(SECRET, KEY, expires=EXPIRES, link=3, url=URL)
    assert verify(token, [SECRET], url=URL, now=NOW) == TrackingToken(KEY, "click", 3, EXPIRES * 3600)
    assert len(token) == 48  # one more byte: the link index


def test_expiry_is_validity_days_rounded_up_to_the_hour() -> None:
    assert EXPIRES * 3600 >= NOW + 365 * 86_400 > (EXPIRES - 1) * 3600
    token = sign(SECRET, KEY, expires=EXPIRES)
    verify(token, [SECRET], now=EXPIRES * 3600 - 1)
    with pytest.raises(ExpiredToken) as info:
        verify(token, [SECRET], now=EXPIRES * 3600)
    assert info.value.payload.key == KEY


def test_click_to_another_url_is_forged() -> None:
    token = sign(SECRET, KEY, expires=EXPIRES, link=0, url=URL)
    for tampered in (URL + "x", "https://evil.example/", URL.replace("https", "http"), URL.upper()):
        with pytest.raises(ForgedToken):
            verify(token, [SECRET], url=tampered, now=NOW)


def test_click_without_its_url_is_malformed() -> None:
    with pytest.raises(MalformedToken):
        verify(sign(SECRET, KEY, expires=EXPIRES, link=0, url=URL), [SECRET], now=NOW)


def test_other_secret_is_forged() -> None:
    with pytest.raises(ForgedToken):
        verify(sign("an-attackers-secret-0123456789", KEY, expires=EXPIRES), [SECRET], now=NOW)


def test_every_flipped_bit_is_refused() -> None:
    raw = unb64(sign(SECRET, KEY, expires=EXPIRES))
    for position in range(len(raw)):
        for bit in range(8):
            changed = bytearray(raw)
            changed[position] ^= 1 << bit
            with pytest.raises((ForgedToken, MalformedToken)):
                verify(b64(bytes(changed)), [SECRET], now=NOW)


def test_swapping_kinds_is_refused() -> None:
    """An open token made into a click (same body, header changed) keeps a MAC that does not match."""
    raw = bytearray(unb64(sign(SECRET, KEY, expires=EXPIRES)))
    raw[0] = tokens.CLICK_HEADER[0]
    with pytest.raises((ForgedToken, MalformedToken)):
        verify(b64(bytes(raw)), [SECRET], url=URL, now=NOW)


def test_rotation_accepts_previous_secrets_until_they_are_removed() -> None:
    old = sign(OLD, KEY, expires=EXPIRES, link=1, url=URL)
    assert verify(old, [SECRET, OLD], url=URL, now=NOW).link == 1
    with pytest.raises(ForgedToken):
        verify(old, [SECRET], url=URL, now=NOW)


def test_macs_are_domain_separated_from_unsubscribe_tokens() -> None:
    """The same secret signing the same bytes under the unsubscribe domain gives no valid token."""
    body = tokens.OPEN_HEADER + tokens.message_body(EXPIRES, KEY)
    for domain in (b"unsubscribe.v1.", b""):
        mac = hmac.digest(SECRET.encode(), domain + body, hashlib.sha256)[: tokens.MAC_BYTES]
        with pytest.raises(ForgedToken):
            verify(b64(body + mac), [SECRET], now=NOW)
    mac = hmac.digest(SECRET.encode(), b"track.v1." + body, hashlib.sha256)[: tokens.MAC_BYTES]
    assert verify(b64(body + mac), [SECRET], now=NOW).key == KEY


def test_mac_is_96_bits_of_hmac_sha256() -> None:
    raw = unb64(sign(SECRET, KEY, expires=EXPIRES, link=2, url=URL))
    body, mac = raw[:-12], raw[-12:]
    assert mac == hmac.digest(SECRET.encode(), b"track.v1." + body + b"\0" + URL.encode(), hashlib.sha256)[:12]


def test_genuine_body_with_trailing_bytes_is_malformed() -> None:
    body = tokens.OPEN_HEADER + tokens.message_body(EXPIRES, KEY) + b"\x00"
    mac = hmac.digest(SECRET.encode(), b"track.v1." + body, hashlib.sha256)[:12]
    with pytest.raises(MalformedToken):
        verify(b64(body + mac), [SECRET], now=NOW)


@pytest.mark.parametrize(
    "bad",
    ["", "not a token", "a.b", "YWJj", "YWJj=", "!" * 40, "A" * 401, b64(b"\x20" + b"\0" * 20), b64(b"\x12" + b"\0" * 20)],
)
def test_malformed_tokens(bad: str) -> None:
    with pytest.raises(MalformedToken):
        verify(bad, [SECRET], url=URL, now=NOW)


def test_non_canonical_base64_is_malformed() -> None:
    token = sign(SECRET, KEY, expires=EXPIRES)
    last = token[-1]
    # The last character of a 35-byte token carries 2 padding bits: another letter with the
    # same 4 data bits decodes to the same bytes, and is refused.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = alphabet[alphabet.index(last) ^ 1]
    assert unb64(token[:-1] + twin) == unb64(token)
    with pytest.raises(MalformedToken):
        verify(token[:-1] + twin, [SECRET], now=NOW)


def test_varint_and_zigzag_against_their_definitions() -> None:
    for value in (0, 1, 127, 128, 300, 2**21, 2**63 - 1):
        encoded = tokens.varint(value)
        assert sum((b & 0x7F) << (7 * i) for i, b in enumerate(encoded)) == value
        assert all(b & 0x80 for b in encoded[:-1]) and not encoded[-1] & 0x80
    assert [tokens.zigzag(v) for v in (0, -1, 1, -2, 2)] == [0, 1, 2, 3, 4]


@settings(max_examples=200, deadline=None)
@given(
    run_key=st.integers(0, 2**63 - 1),
    step_id=st.from_regex(r"[a-z][a-z0-9_]{0,62}", fullmatch=True),
    profile_id=st.integers(-(2**63), 2**63 - 1),
    entity_key=st.text(max_size=40),
    link=st.none() | st.integers(0, 10_000),
    url=st.text(min_size=1, max_size=200).map(lambda path: "https://x.example/" + path),
)
def test_any_key_round_trips(run_key: int, step_id: str, profile_id: int, entity_key: str, link: int | None,
                             url: str) -> None:
    key = MessageKey(run_key, step_id, profile_id, entity_key)
    try:
        url.encode("utf-8")
        entity_key.encode("utf-8")
    except UnicodeEncodeError:
        return  # a lone surrogate cannot be in a rendered link or a ledger key
    token = sign(SECRET, key, expires=EXPIRES, link=link, url=url if link is not None else None)
    found = verify(token, [SECRET], url=url if link is not None else None, now=NOW)
    assert (found.key, found.link, found.kind) == (key, link, "open" if link is None else "click")
