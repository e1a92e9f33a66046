from __future__ import annotations

import base64
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaign_orchestrator.unsubscribe import tokens
from campaign_orchestrator.unsubscribe.tokens import (
    CONN_ID,
    CachedSettings,
    ExpiredToken,
    ForgedToken,
    MalformedToken,
    TokenPayload,
    UnsubscribeNotConfigured,
    UnsubscribeSettings,
    email_link,
    load_settings,
    sign,
    unsubscribe_headers,
    unsubscribe_url,
    verify,
)

SECRET = "current-secret-0123456789abcdef"
OLD = "previous-secret-0123456789abcdef"
NOW = 1_800_000_000
PAYLOAD = TokenPayload(42, "email", "winter_sale", "7:offer_email:booking-9", NOW + 3600)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_round_trip_is_compact_and_url_safe() -> None:
    token = sign(PAYLOAD, SECRET)
    assert verify(token, [SECRET], now=NOW) == PAYLOAD
    assert len(token) < 200
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert token.count(".") == 1


def test_non_ascii_campaign_and_entity_round_trip() -> None:
    payload = TokenPayload(1, "sms", "soldes_été", "1:s:clé", NOW + 1)
    assert verify(sign(payload, SECRET), [SECRET], now=NOW) == payload


def test_expired_token_raises_with_its_payload() -> None:
    token = sign(PAYLOAD, SECRET)
    with pytest.raises(ExpiredToken) as info:
        verify(token, [SECRET], now=PAYLOAD.expires)
    assert info.value.payload == PAYLOAD


def test_other_secret_is_forged() -> None:
    with pytest.raises(ForgedToken):
        verify(sign(PAYLOAD, "someone-elses-secret-0123456789"), [SECRET], now=NOW)


def test_altered_payload_is_forged() -> None:
    encoded, signature = sign(PAYLOAD, SECRET).split(".")
    other = b64(json.dumps([1, 43, "email", "winter_sale", "7:offer_email:booking-9", NOW + 3600]).encode())
    with pytest.raises(ForgedToken):
        verify(f"{other}.{signature}", [SECRET], now=NOW)


def test_signature_is_checked_before_expiry() -> None:
    expired = TokenPayload(42, "email", "c", "r", NOW - 10)
    with pytest.raises(ForgedToken):
        verify(sign(expired, "someone-elses-secret-0123456789"), [SECRET], now=NOW)


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b.c", "!!!.abc", "abc.", ".abc", "x" * 2000, "YWJj.YWJj", "YWJj.a+b/", "é.é"],
)
def test_malformed_tokens(token: str) -> None:
    with pytest.raises(MalformedToken):
        verify(token, [SECRET], now=NOW)


def test_genuine_signature_over_a_bad_payload_is_malformed() -> None:
    from campaign_orchestrator.unsubscribe import tokens

    encoded = b64(b'{"not": "a list"}')
    token = f"{encoded}.{b64(tokens._mac(SECRET, encoded))}"
    with pytest.raises(MalformedToken):
        verify(token, [SECRET], now=NOW)


def test_non_canonical_base64_is_malformed() -> None:
    encoded, signature = sign(PAYLOAD, SECRET).split(".")
    # The last character of a 43-character signature carries 2 unused bits.
    last = signature[-1]
    twin = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    altered = twin[twin.index(last) ^ 1]
    with pytest.raises(MalformedToken):
        verify(f"{encoded}.{signature[:-1]}{altered}", [SECRET], now=NOW)


def test_rotation_accepts_previous_secrets_and_signs_with_the_current_one() -> None:
    old_token = sign(PAYLOAD, OLD)
    rotated = UnsubscribeSettings(secrets=(SECRET, OLD), base_url="https://c.example")
    assert rotated.verify(old_token, now=NOW) == PAYLOAD
    assert rotated.token(PAYLOAD) == sign(PAYLOAD, SECRET)
    retired = UnsubscribeSettings(secrets=(SECRET,), base_url="https://c.example")
    with pytest.raises(ForgedToken):
        retired.verify(old_token, now=NOW)


def test_short_secrets_are_refused() -> None:
    with pytest.raises(UnsubscribeNotConfigured, match=CONN_ID):
        UnsubscribeSettings(secrets=("short",))


def test_url_and_headers() -> None:
    settings = UnsubscribeSettings(secrets=(SECRET,), base_url="https://campaigns.example.com")
    url = unsubscribe_url(settings, PAYLOAD)
    prefix = "https://campaigns.example.com/campaigns-unsubscribe/unsubscribe/"
    assert url.startswith(prefix)
    assert settings.verify(url.removeprefix(prefix), now=NOW) == PAYLOAD
    assert unsubscribe_headers(settings, url) == {
        "List-Unsubscribe": f"<{url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    with_mailto = UnsubscribeSettings(secrets=(SECRET,), base_url="https://c.example", mailto="unsub@acme.example")
    value = unsubscribe_headers(with_mailto, url, "TOK")["List-Unsubscribe"]
    assert value == f"<{url}>, <mailto:unsub@acme.example?subject=unsubscribe%20TOK>"


def test_no_base_url_is_an_error_naming_the_connection() -> None:
    with pytest.raises(UnsubscribeNotConfigured, match=CONN_ID):
        UnsubscribeSettings(secrets=(SECRET,)).url("t")


def conn_json(**fields) -> str:
    return json.dumps({"conn_type": "generic", **fields})


def test_settings_from_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CAMPAIGN_UNSUBSCRIBE",
        conn_json(host="campaigns.example.com", schema="https", password=SECRET,
                  extra={"previous_secrets": [OLD], "mailto": "u@acme.example", "validity_days": 30}),
    )
    settings = load_settings()
    assert settings.secrets == (SECRET, OLD)
    assert settings.base_url == "https://campaigns.example.com"
    assert settings.mailto == "u@acme.example"
    assert settings.validity_days == 30


def test_settings_from_a_full_url_in_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CAMPAIGN_UNSUBSCRIBE", conn_json(host="https://x.example/airflow/", password=SECRET))
    settings = load_settings()
    assert settings.base_url == "https://x.example/airflow"
    assert settings.validity_days == 60


def test_missing_connection_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_CAMPAIGN_UNSUBSCRIBE", raising=False)
    with pytest.raises(UnsubscribeNotConfigured, match="'campaign_unsubscribe' is not defined"):
        load_settings()


def test_connection_without_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CAMPAIGN_UNSUBSCRIBE", conn_json(host="x.example"))
    with pytest.raises(UnsubscribeNotConfigured, match="no password"):
        load_settings()


def test_importing_the_plugin_reads_no_connection_and_builds_no_app() -> None:
    """Airflow imports plugins in every process: no connection lookup, no FastAPI app."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from airflow.sdk import BaseHook\n"
        "def boom(*a, **k): raise AssertionError('get_connection at import')\n"
        "BaseHook.get_connection = boom\n"
        "import unsubscribe_plugin, campaign_orchestrator.channels.email.render\n"
        "assert 'campaign_orchestrator.unsubscribe.app' not in sys.modules\n"
        "assert 'fastapi' not in sys.modules, 'fastapi imported'\n"
        "print(unsubscribe_plugin.UnsubscribePlugin.fastapi_apps[0]['url_prefix'])\n"
    )
    from tests.conftest import ROOT

    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "plugins", capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "/campaigns-unsubscribe"


def test_cached_settings_reload_after_ttl() -> None:
    loads = []
    clock = [0.0]

    def loader() -> UnsubscribeSettings:
        loads.append(clock[0])
        return UnsubscribeSettings(secrets=(SECRET,))

    cached = CachedSettings(loader, ttl=60, clock=lambda: clock[0])
    cached()
    clock[0] = 59
    cached()
    clock[0] = 60
    cached()
    assert loads == [0.0, 60]


def test_default_expiry_is_sixty_days() -> None:
    from campaign_orchestrator.unsubscribe.tokens import expiry

    settings = UnsubscribeSettings(secrets=(SECRET,))
    assert expiry(settings, now=NOW) == NOW + 60 * 86_400
    assert abs(expiry(settings) - (time.time() + 60 * 86_400)) < 5


# Signed by the first implementation (json.dumps, hmac.new): links already in mailboxes.
KNOWN_TOKENS = [
    (
        TokenPayload(42, "email", "winter_sale", "7:offer_email:booking-9", 1767225600),
        "a-secret-of-32-characters-long!!",
        "WzEsNDIsImVtYWlsIiwid2ludGVyX3NhbGUiLCI3Om9mZmVyX2VtYWlsOmJvb2tpbmctOSIsMTc2NzIyNTYwMF0"
        ".UjZOO_Nw4TV0jKAHoHXOFZFbr-LWnZ8wsHUtF6XWSz4",
    ),
    (
        TokenPayload(-1, "push", 'été "quoted" \\ \u2028 🎉', "\x00\x1f\x7f", 0),
        "sécret-non-ascii-0123456789",
        "WzEsLTEsInB1c2giLCJcdTAwZTl0XHUwMGU5IFwicXVvdGVkXCIgXFwgXHUyMDI4IFx1ZDgzY1x1ZGY4OSIs"
        "Ilx1MDAwMFx1MDAxZlx1MDA3ZiIsMF0"
        ".KqdvA9pGTQ6wKAnUnn3hxar2qDDOC-TGLiSnkgHOaDA",
    ),
]


@pytest.mark.parametrize(("payload", "secret", "token"), KNOWN_TOKENS)
def test_tokens_are_the_ones_signed_before(payload: TokenPayload, secret: str, token: str) -> None:
    assert sign(payload, secret) == token
    assert verify(token, [secret], now=payload.expires - 1) == payload


def test_email_link_signs_like_sign() -> None:
    settings_ = UnsubscribeSettings(secrets=(SECRET, OLD), base_url="https://c.example")
    url, headers = email_link(settings_, 42, "winter_sale", "7:offer_email:booking-9", NOW + 3600)
    assert url == unsubscribe_url(settings_, PAYLOAD)
    assert headers == unsubscribe_headers(settings_, url, sign(PAYLOAD, SECRET))


def reference_token(payload: TokenPayload, secret: str) -> str:
    """The token as first specified: json.dumps, hmac.new, base64.urlsafe_b64encode."""
    import hashlib
    import hmac

    body = json.dumps(
        [1, payload.profile_id, payload.channel, payload.campaign_id, payload.message_ref, payload.expires],
        separators=(",", ":"),
        ensure_ascii=True,
    )
    encoded = b64(body.encode("ascii"))
    mac = hmac.new(secret.encode(), b"unsubscribe.v1." + encoded.encode(), hashlib.sha256).digest()
    return f"{encoded}.{b64(mac)}"


@settings(max_examples=500, deadline=None)
@given(
    profile_id=st.integers(),
    channel=st.sampled_from(sorted(tokens.CHANNELS)),
    campaign_id=st.text(),
    message_ref=st.text(),
    expires=st.integers(min_value=NOW + 1, max_value=2**70),
    secret=st.text(min_size=16),
)
def test_tokens_match_the_reference_and_verify(
    profile_id: int, channel: str, campaign_id: str, message_ref: str, expires: int, secret: str
) -> None:
    payload = TokenPayload(profile_id, channel, campaign_id, message_ref, expires)
    token = reference_token(payload, secret)
    assert sign(payload, secret) == token
    if len(token) <= 1024:
        assert verify(token, [secret], now=NOW) == payload


class IntSubclass(int):
    def __format__(self, spec: str) -> str:
        return "not-json"


class StrSubclass(str):
    def __format__(self, spec: str) -> str:
        return "not-json"


@pytest.mark.parametrize(
    "fields",
    [
        (True, "email", "c", "r", 5),
        (IntSubclass(3), "email", "c", "r", IntSubclass(9)),
        (1, "email", StrSubclass("c"), StrSubclass("r"), 5),
    ],
)
def test_payload_json_of_unusual_types_is_json_dumps(fields: tuple) -> None:
    assert tokens._payload_json(*fields) == json.dumps([1, *fields], separators=(",", ":"), ensure_ascii=True)
