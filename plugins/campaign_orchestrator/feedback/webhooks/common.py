"""What every provider module shares: refusals, malformed payloads, times and event ids."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any


class Refused(Exception):
    """The request is not authenticated: nothing is stored. ``status`` is 401 (no
    credentials or signature) or 403 (wrong ones, stale, replayed, address not allowed)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Malformed(ValueError):
    """An authenticated payload that is not what the provider sends: 400, nothing stored."""


def epoch_time(value: Any, what: str) -> datetime:
    """A Unix timestamp (int, float or their text) as an aware UTC datetime."""
    try:
        return datetime.fromtimestamp(float(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise Malformed(f"{what} {value!r} is not a Unix timestamp") from None


def iso_time(value: Any, what: str) -> datetime:
    if not isinstance(value, str) or not value:
        raise Malformed(f"{what} is missing")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Malformed(f"{what} {value!r} is not a timestamp") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def content_id(*parts: Any) -> str:
    """A stable id from an event's own content, for providers whose events carry none."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def load_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Malformed(f"the body is not JSON: {exc}") from None


def message_reference(custom: Any, fallback: str | None) -> str | None:
    """Our Message-ID from the provider's custom data (channels/email/relay.py), else
    ``fallback`` (the provider's own id or the Message-ID it saw)."""
    from campaign_orchestrator.channels.email.relay import REFERENCE_KEY

    if isinstance(custom, dict) and isinstance(custom.get(REFERENCE_KEY), str) and custom[REFERENCE_KEY]:
        return custom[REFERENCE_KEY]
    return fallback


def keep(detail: dict[str, Any]) -> dict[str, Any]:
    """``detail`` without empty values, strings cut to a sane length."""
    return {k: (v[:1000] if isinstance(v, str) else v) for k, v in detail.items() if v not in (None, "", [], {})}
