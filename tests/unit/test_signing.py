"""The signing shared by the unsubscribe and tracking tokens."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaign_orchestrator.signing import ForgedToken, Mac, MalformedToken, b64decode, b64encode, check_mac, mac


@settings(max_examples=200, deadline=None)
@given(secret=st.text(min_size=1, max_size=200), domain=st.binary(max_size=20), message=st.binary(max_size=300))
def test_precomputed_mac_is_hmac_sha256(secret: str, domain: bytes, message: bytes) -> None:
    try:
        key = secret.encode("utf-8")
    except UnicodeEncodeError:
        return
    expected = hmac.new(key, domain + message, hashlib.sha256).digest()
    assert mac(secret, domain, message) == expected
    assert Mac(secret, domain)(message) == expected


def test_check_mac_tries_every_secret_and_refuses_short_or_wrong_macs() -> None:
    good = mac("old-secret-0123456789", b"d.", b"body")[:12]
    check_mac(["new-secret-0123456789", "old-secret-0123456789"], b"d.", b"body", good)
    with pytest.raises(ForgedToken):
        check_mac(["new-secret-0123456789"], b"d.", b"body", good)
    with pytest.raises(ForgedToken):
        check_mac(["old-secret-0123456789"], b"other.", b"body", good)
    for short in (b"", good[:11]):
        with pytest.raises(MalformedToken):
            check_mac(["old-secret-0123456789"], b"d.", b"body", short)


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=100))
def test_base64url_round_trip(raw: bytes) -> None:
    text = b64encode(raw)
    assert "=" not in text and "+" not in text and "/" not in text
    if raw:
        assert b64decode(text) == raw
