"""Send email through Amazon SES, one ``SendRawEmail`` call per message, several at a time.

Why not ``SendBulkEmail`` (SES v2) or ``SendBulkTemplatedEmail``: bulk sending only fills
templates stored in SES with flat string replacements. Our messages are rendered here, with
Jinja (conditions, loops, filters, escaping) from templates versioned with the campaign, and
assembled into MIME by :mod:`.mime`; sending the finished bytes is what ``SendRawEmail`` is
for. Per-message calls also give a per-message outcome and SES ``MessageId``, which is what
the ledger records. Throughput comes from a small thread pool sharing one boto3 client
(clients are thread-safe) with as many pooled HTTP connections as threads.

Exactly-once is why botocore's own retries are switched off: botocore retries a read
timeout, i.e. a request SES may already have accepted, which would send the message twice.
:class:`CampaignSesHook` retries only what cannot have been accepted (throttling, service
unavailable, no connection made), and :class:`SesSender` maps the rest:

- ``MessageRejected``, ``MailFromDomainNotVerifiedException``, ``InvalidParameterValue``:
  ``failed`` (``rejected``);
- throttling, ``ServiceUnavailable``, connection errors before the request left, any other
  service error (credentials, permissions, paused account: nothing was sent): ``retry``;
- a read timeout or a connection closed after the request was sent: ``uncertain``.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.hooks.ses import SesHook
from botocore.exceptions import (
    ClientError,
    ParamValidationError,
)

from campaign_orchestrator.channels.aws import (
    NOT_SENT,
    THROTTLED,
    UNAVAILABLE,
    batch_client,
    call_unsent_retries,
    error_code,
)
from campaign_orchestrator.channels.base import Outcome, Sender
from campaign_orchestrator.channels.email.mime import envelope_address

if TYPE_CHECKING:
    from collections.abc import Sequence

    from campaign_orchestrator.channels.base import Outbound

log = logging.getLogger(__name__)

REJECTED = frozenset({"MessageRejected", "MailFromDomainNotVerifiedException", "InvalidParameterValue"})
class CampaignSesHook(SesHook):
    """SES with a client tuned for concurrent raw sends and a retry policy that never
    repeats a request SES may have accepted.

    :param aws_conn_id: Airflow AWS connection (``endpoint_url``, ``region_name``,
        ``config_kwargs`` in its extra are honoured; ``retries`` is overridden).
    :param attempts: tries per message for throttling and unreachable-service errors.
    :param backoff: first wait in seconds; doubles each try, with jitter.
    """

    def __init__(
        self, aws_conn_id: str | None = SesHook.default_conn_name, attempts: int = 5, backoff: float = 0.25, **kwargs
    ) -> None:
        super().__init__(aws_conn_id=aws_conn_id, **kwargs)
        self.attempts = max(1, attempts)
        self.backoff = backoff

    def batch_client(self, max_pool_connections: int) -> Any:
        """A new SES client with ``max_pool_connections`` HTTP connections and no botocore retries."""
        return batch_client(self, max_pool_connections)

    def send_raw(self, client: Any, source: str, destination: str, data: bytes) -> str:
        """Send one message; return its SES MessageId. Raises the last error when retries
        are exhausted or the error is not safe to retry."""
        return call_unsent_retries(
            lambda: client.send_raw_email(Source=source, Destinations=[destination], RawMessage={"Data": data})[
                "MessageId"
            ],
            self.attempts,
            self.backoff,
            _retryable,
        )


def _retryable(exc: ClientError) -> bool:
    code = error_code(exc)
    if code in THROTTLED:
        # The daily quota does not come back within seconds: report it, do not wait.
        return "daily" not in str(exc).lower()
    return code in UNAVAILABLE


class SesSender(Sender):
    """Concurrent ``SendRawEmail`` calls for one batch; outcomes in input order.

    :param envelope_from: the ``Source`` (the step's sender, bare address).
    :param aws_conn_id: Airflow AWS connection.
    :param max_workers: concurrent requests, and HTTP connections in the client's pool.
    """

    def __init__(
        self,
        envelope_from: str,
        aws_conn_id: str | None = SesHook.default_conn_name,
        max_workers: int = 8,
        attempts: int = 5,
        backoff: float = 0.25,
    ) -> None:
        self.envelope_from = envelope_address(envelope_from)
        self.max_workers = max(1, max_workers)
        self.hook = CampaignSesHook(aws_conn_id=aws_conn_id, attempts=attempts, backoff=backoff)
        self._client: Any = None
        self._pool: ThreadPoolExecutor | None = None

    def open(self) -> None:
        self._client = self.hook.batch_client(self.max_workers)
        self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="ses-send")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def send(self, messages: Sequence[Outbound]) -> list[Outcome]:
        if self._pool is None:
            self.open()
        assert self._pool is not None
        return list(self._pool.map(self._send_one, messages))

    def _send_one(self, message: Outbound) -> Outcome:
        try:
            to = envelope_address(message.recipient.address)
        except ValueError as exc:
            return Outcome("failed", reason="invalid_address", error=str(exc))
        try:
            message_id = self.hook.send_raw(self._client, self.envelope_from, to, message.payload)
        except ClientError as exc:
            code = error_code(exc)
            if code in REJECTED:
                return Outcome("failed", reason="rejected", error=str(exc)[:1000])
            reason = "throttled" if code in THROTTLED else "unavailable" if code in UNAVAILABLE else "provider_error"
            return Outcome("retry", reason=reason, error=str(exc)[:1000])
        except NOT_SENT as exc:
            return Outcome("retry", reason="connection_error", error=str(exc)[:1000])
        except ParamValidationError as exc:
            return Outcome("failed", reason="invalid_request", error=str(exc)[:1000])
        except Exception as exc:  # read timeout, connection closed mid-response, anything unknown
            log.warning("SES send to %s has an unknown outcome: %s", to, exc)
            return Outcome("uncertain", reason="response_lost", error=f"{type(exc).__name__}: {exc}"[:1000])
        return Outcome("sent", provider_message_id=message_id)
