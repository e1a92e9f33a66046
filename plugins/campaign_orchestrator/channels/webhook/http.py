"""POST webhook messages over one HTTP session per batch, signed, with an exact outcome each.

Every request carries:

- ``Content-Type: application/json``: the body is compact UTF-8 JSON, and exactly those
  bytes are signed;
- ``Idempotency-Key``: the message id (stable across retries and runs of the same message);
  in ``per_batch`` mode a key derived from the set of message ids, and every item of the
  body carries its own ``idempotency_key``. A receiver that stores the keys it processed
  makes every resend harmless, including ``on_uncertain: resend``;
- ``X-Campaign-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``, keyed
  with the password of the Airflow connection (the shared secret; it is never sent). A
  receiver checks it with :func:`verify_signature`;
- ``X-Campaign-Id``: the campaign.

The connection is an ordinary ``http`` connection: host, port and schema make the base URL
the step's ``endpoint`` is appended to; extra keys become request headers (put an
``Authorization`` header there if the receiver also wants one); the extra ``timeout`` (a
number or ``[connect, read]``) replaces the default of 5 s to connect and 30 s to read. The
login is ignored: the password is only ever a signing key, never Basic auth.

Outcomes, per request:

- 2xx: ``sent``; a JSON response with an ``id`` gives the provider message id;
- 408, 429, 5xx, a redirect, 401/403, or a connection that could not be made (refused,
  DNS, connect timeout, TLS handshake): ``retry``, nothing was accepted. After 429, 503,
  401/403, a redirect or a failed connection the call stops and its remaining messages are
  ``retry`` too: the receiver asked us to wait (``Retry-After`` is reported in the error
  and the task's retry delay does the waiting) or is misconfigured, and failing every
  message of the list for a wrong secret or URL would burn the whole audience;
- any other 4xx: ``failed`` (``rejected``), the receiver refused that message;
- a read timeout or a connection broken after the request left: ``uncertain``, the receiver
  may have processed it.

Requests are never retried in place (no urllib3 retries, no redirects followed: a 302
would silently turn the POST into a GET that "succeeds").
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from airflow.providers.http.hooks.http import HttpHook
from requests import exceptions as rex
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from campaign_orchestrator.channels.base import Outcome, Sender
from campaign_orchestrator.channels.messages import MESSAGE_ID_NAMESPACE

if TYPE_CHECKING:
    from collections.abc import Sequence

    import requests

    from campaign_orchestrator.channels.base import Outbound

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Campaign-Signature"
DEFAULT_TIMEOUT = (5.0, 30.0)
USER_AGENT = "campaign-orchestrator-webhook/1"
STOP_REASONS = frozenset({"throttled", "unavailable", "unauthorized", "redirected", "connection_failed", "config"})
"""Outcomes after which the rest of the call is not attempted (see the module docstring)."""


class WebhookConfigError(ValueError):
    """The webhook connection cannot be used (no signing secret): nothing was sent."""


# ---------------------------------------------------------------------------------------
# Signatures
# ---------------------------------------------------------------------------------------


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def _digest(secret: str | bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(_as_bytes(secret), b"%d." % timestamp + body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-Campaign-Signature`` value of ``body``: ``t=<ts>,v1=<hex hmac>``."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={ts},v1={_digest(secret, ts, body)}"


def verify_signature(
    secret: str | bytes, header: str | None, body: str | bytes, tolerance_s: float = 300, now: float | None = None
) -> bool:
    """For receivers: is ``header`` (the ``X-Campaign-Signature`` value) a valid signature
    of ``body``, made with ``secret`` less than ``tolerance_s`` seconds from ``now``?

    ``body`` must be the raw request body, byte for byte, not a re-serialization of the
    parsed JSON. The timestamp bounds replays of a captured request; the message's
    ``Idempotency-Key`` makes a replay within the window harmless to a receiver that keeps
    its keys. Several ``v1=`` entries are accepted (one per secret during a rotation). The
    comparison is constant-time; any malformed header is simply ``False``.
    """
    if not header:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            return False
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = _digest(secret, timestamp, _as_bytes(body))
    valid = False
    for candidate in candidates:
        # No early exit: every candidate is compared.
        valid |= hmac.compare_digest(expected, candidate.strip().lower())
    return valid


def encode_body(payload: Any) -> bytes:
    """Compact UTF-8 JSON: the exact bytes that are signed and sent."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def batch_key(message_ids: Sequence[str]) -> str:
    """Idempotency key of a per_batch request: the same set of messages, the same key."""
    return str(uuid.uuid5(MESSAGE_ID_NAMESPACE, "batch:" + "\n".join(sorted(message_ids))))


# ---------------------------------------------------------------------------------------
# Hook
# ---------------------------------------------------------------------------------------


class WebhookHook(HttpHook):
    """The http provider's hook for a signed JSON POST endpoint.

    :param http_conn_id: an ``http`` connection: host/port/schema for the base URL, the
        password as the signing secret, extra keys as headers, extra ``timeout``.
    """

    default_conn_name = "webhook_default"
    hook_name = "Campaign webhook"

    def __init__(self, http_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(method="POST", http_conn_id=http_conn_id, **kwargs)

    def open_session(self) -> requests.Session:
        session = self.get_conn()
        # HttpHook sends login/password as Basic auth; here the password is a signing key.
        session.auth = None
        return session

    def signing_secret(self) -> bytes:
        conn = self.get_connection(self.http_conn_id)
        if not conn.password:
            raise WebhookConfigError(
                f"the Airflow connection {self.http_conn_id!r} has no password; a webhook step signs "
                "every request with it (HMAC-SHA256), so set the shared secret as the connection's password"
            )
        return conn.password.encode("utf-8")

    def timeout(self, default: float | tuple[float, float] = DEFAULT_TIMEOUT) -> float | tuple[float, float]:
        """The connection's extra ``timeout`` if set (after :meth:`open_session`), else ``default``."""
        value = self.merged_extra.get("timeout")
        if value is None:
            return default
        if isinstance(value, (list, tuple)):
            return (float(value[0]), float(value[1]))
        return float(value)


# ---------------------------------------------------------------------------------------
# Sender
# ---------------------------------------------------------------------------------------


class WebhookSender(Sender):
    """One HTTP session per batch; one POST per message or one per call (``per_batch``).

    :param http_conn_id: Airflow ``http`` connection of the receiver (see the module docstring).
    :param endpoint: path appended to the connection's base URL.
    :param campaign_id: sent as ``X-Campaign-Id``.
    :param mode: ``per_message`` or ``per_batch``.
    :param timeout: seconds, or (connect, read); the connection's extra ``timeout`` wins.
    """

    def __init__(
        self,
        http_conn_id: str = WebhookHook.default_conn_name,
        endpoint: str = "",
        campaign_id: str = "",
        mode: str = "per_message",
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        if mode not in ("per_message", "per_batch"):
            raise ValueError(f"unknown webhook mode {mode!r}; use 'per_message' or 'per_batch'")
        self.hook = WebhookHook(http_conn_id=http_conn_id)
        self.endpoint = endpoint
        self.campaign_id = campaign_id
        self.mode = mode
        self._default_timeout = timeout
        self._session: requests.Session | None = None

    def open(self) -> None:
        secret = self.hook.signing_secret()  # first: a missing secret fails before any request
        self._session = self.hook.open_session()
        self._secret = secret
        self._url = self.hook.url_from_endpoint(self.endpoint)
        self._timeout = self.hook.timeout(self._default_timeout)

    def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def send(self, messages: Sequence[Outbound]) -> list[Outcome]:
        if not messages:
            return []
        if self._session is None:
            self.open()
        if self.mode == "per_batch":
            items = [{"idempotency_key": m.message_id, "payload": m.payload} for m in messages]
            outcome = self._post(encode_body({"messages": items}), batch_key([m.message_id for m in messages]))
            return [outcome] * len(messages)
        outcomes: list[Outcome] = []
        stopped: Outcome | None = None
        for message in messages:
            if stopped is not None:
                outcomes.append(Outcome("retry", reason=stopped.reason, error=f"not attempted after: {stopped.error}"))
                continue
            outcome = self._post(encode_body(message.payload), message.message_id)
            if outcome.status == "retry" and outcome.reason in STOP_REASONS:
                stopped = outcome
            outcomes.append(outcome)
        return outcomes

    def _post(self, body: bytes, idempotency_key: str) -> Outcome:
        assert self._session is not None
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Idempotency-Key": idempotency_key,
            SIGNATURE_HEADER: sign(self._secret, body),
            "X-Campaign-Id": self.campaign_id,
        }
        try:
            response = self._session.post(
                self._url, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
            )
        except Exception as exc:  # mapped to an outcome; never raised for one message
            return exception_outcome(exc)
        return response_outcome(response)


def response_outcome(response: requests.Response) -> Outcome:
    code = response.status_code
    detail = f"HTTP {code} {response.reason or ''}".rstrip()
    if 200 <= code < 300:
        return Outcome("sent", provider_message_id=_response_id(response))
    text = (response.text or "").strip()[:300]
    error = f"{detail}: {text}" if text else detail
    if code in (429, 503):
        wait = retry_after(response)
        if wait is not None:
            error += f" (Retry-After {wait:.0f}s)"
        return Outcome("retry", reason="throttled" if code == 429 else "unavailable", error=error)
    if code == 408 or code >= 500:
        return Outcome("retry", reason="server_error" if code >= 500 else "timeout", error=error)
    if 300 <= code < 400:
        location = response.headers.get("Location", "?")
        return Outcome("retry", reason="redirected", error=f"{error}; redirected to {location}: fix the endpoint")
    if code in (401, 403):
        return Outcome("retry", reason="unauthorized", error=f"{error}; check the connection's secret and headers")
    if 400 <= code < 500:
        return Outcome("failed", reason="rejected", error=error)
    return Outcome("uncertain", reason="unexpected_reply", error=error)


def exception_outcome(exc: BaseException) -> Outcome:
    error = f"{type(exc).__name__}: {exc}"[:1000]
    if isinstance(exc, (rex.ConnectTimeout, rex.SSLError, rex.ProxyError)):
        return Outcome("retry", reason="connection_failed", error=error)
    if isinstance(exc, rex.ReadTimeout):
        return Outcome("uncertain", reason="timeout_after_send", error=error)
    if isinstance(exc, rex.ConnectionError):
        if _never_connected(exc):
            return Outcome("retry", reason="connection_failed", error=error)
        return Outcome("uncertain", reason="connection_lost_after_send", error=error)
    if isinstance(exc, (rex.InvalidURL, rex.MissingSchema, rex.InvalidSchema, rex.InvalidHeader, rex.URLRequired)):
        return Outcome("retry", reason="config", error=error)
    # Anything else (a broken response body, an unexpected error) came after the request
    # may have left: we cannot tell whether the receiver has it.
    return Outcome("uncertain", reason="unexpected_error", error=error)


def _never_connected(exc: rex.ConnectionError) -> bool:
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, (NewConnectionError, ConnectTimeoutError))


def retry_after(response: requests.Response) -> float | None:
    """Seconds the receiver asked us to wait (``Retry-After``: seconds or an HTTP date)."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


def _response_id(response: requests.Response) -> str | None:
    if "json" not in response.headers.get("Content-Type", ""):
        return None
    try:
        data = response.json()
    except ValueError:
        return None
    value = data.get("id") if isinstance(data, dict) else None
    return str(value)[:200] if isinstance(value, (str, int)) and value != "" else None
