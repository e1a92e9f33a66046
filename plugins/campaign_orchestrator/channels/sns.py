"""Amazon SNS ``Publish`` for the SMS and push channels: one client per batch, a small thread
pool, and a retry policy that never publishes the same message twice.

As for SES (:mod:`campaign_orchestrator.channels.email.ses`), botocore's own retries are off:
botocore retries a read timeout, i.e. a ``Publish`` SNS may already have accepted, and a
phone would get the SMS twice. :class:`CampaignSnsHook` retries only what SNS cannot have
accepted (throttling, service unavailable or internal error, no connection made), and
:class:`SnsPublishSender` turns the rest into outcomes:

- what the channel recognises as a refusal of this one message: ``failed``;
- throttling, unavailability, connection errors before the request left, any other service
  error (credentials, permissions, a disabled platform application: nothing was sent):
  ``retry``;
- a read timeout or a connection closed after the request was sent: ``uncertain``.
"""

from __future__ import annotations

import logging
import re
from abc import abstractmethod
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.hooks.sns import SnsHook
from botocore.exceptions import (
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
)

from campaign_orchestrator.channels.aws import (
    NOT_SENT,
    THROTTLED,
    UNAVAILABLE,
    backoff_sleep,
    batch_client,
    call_unsent_retries,
    error_code,
)
from campaign_orchestrator.channels.base import Outcome, Sender

if TYPE_CHECKING:
    from collections.abc import Sequence

    from campaign_orchestrator.channels.base import Outbound

log = logging.getLogger(__name__)

INVALID = frozenset({"InvalidParameter", "ParameterValueInvalid", "InvalidParameterValue", "ValidationException"})
_PHONE_SEPARATORS = re.compile(r"[\s().-]")


def normalize_phone(number: str) -> str:
    """A phone number as the sms channel compares them: spaces, parentheses, dots and dashes
    dropped (``+33 6 12-34-56-78`` is ``+33612345678``), like the registry's SQL."""
    return _PHONE_SEPARATORS.sub("", number)


def _retryable(exc: ClientError) -> bool:
    return error_code(exc) in THROTTLED | UNAVAILABLE


class CampaignSnsHook(SnsHook):
    """SNS with a client tuned for concurrent publishes and a retry policy that never
    repeats a request SNS may have accepted.

    :param aws_conn_id: Airflow AWS connection (``endpoint_url``, ``region_name``,
        ``config_kwargs`` in its extra are honoured; ``retries`` is overridden).
    :param attempts: tries per request for throttling and unreachable-service errors.
    :param backoff: first wait in seconds; doubles each try, with jitter.
    """

    def __init__(
        self, aws_conn_id: str | None = SnsHook.default_conn_name, attempts: int = 5, backoff: float = 0.25, **kwargs
    ) -> None:
        super().__init__(aws_conn_id=aws_conn_id, **kwargs)
        self.attempts = max(1, attempts)
        self.backoff = backoff

    def batch_client(self, max_pool_connections: int) -> Any:
        """A new SNS client with ``max_pool_connections`` HTTP connections and no botocore retries."""
        return batch_client(self, max_pool_connections)

    def publish(self, client: Any, **params: Any) -> str:
        """``Publish`` once; return the SNS MessageId. Raises the last error when retries are
        exhausted or the error is not safe to retry."""
        return call_unsent_retries(
            lambda: client.publish(**params)["MessageId"], self.attempts, self.backoff, _retryable
        )

    def opted_out_numbers(self, client: Any) -> set[str]:
        return opted_out_numbers(client, self.attempts, self.backoff)


def opted_out_numbers(client: Any, attempts: int = 5, backoff: float = 0.25) -> set[str]:
    """The account's SMS opt-out list (``ListPhoneNumbersOptedOut``, every page), normalized.

    A read: unlike a publish, a lost response is retried too, whatever the client's own
    retry settings."""
    numbers: set[str] = set()
    token: str | None = None
    while True:
        kwargs = {"nextToken": token} if token else {}
        for attempt in range(max(1, attempts)):
            try:
                page = client.list_phone_numbers_opted_out(**kwargs)
                break
            except ClientError as exc:
                if not _retryable(exc) or attempt + 1 >= attempts:
                    raise
            except (ParamValidationError, NoCredentialsError, PartialCredentialsError, NoRegionError):
                raise
            except Exception:  # no connection, read timeout: safe to ask again
                if attempt + 1 >= attempts:
                    raise
            backoff_sleep(backoff, attempt)
        for number in page.get("phoneNumbers", []):
            number = normalize_phone(number)
            # SNS lists E.164 numbers; tolerate one listed without its "+".
            numbers.add(f"+{number}" if number.isdigit() else number)
        token = page.get("nextToken")
        if not token:
            return numbers


class SnsPublishSender(Sender):
    """Concurrent ``Publish`` calls for one batch over one client; outcomes in input order.

    Subclasses say what to publish for a message (:meth:`publish_params`) and what a
    refusal of it means (:meth:`refused`).

    :param aws_conn_id: Airflow AWS connection.
    :param max_workers: concurrent requests, and HTTP connections in the client's pool.
    :param attempts: tries per message for errors SNS cannot have accepted.
    :param backoff: first wait between those tries, in seconds.
    """

    thread_name_prefix = "sns-publish"

    def __init__(
        self,
        aws_conn_id: str | None = SnsHook.default_conn_name,
        max_workers: int = 8,
        attempts: int = 5,
        backoff: float = 0.25,
    ) -> None:
        self.max_workers = max(1, max_workers)
        self.hook = CampaignSnsHook(aws_conn_id=aws_conn_id, attempts=attempts, backoff=backoff)
        self._client: Any = None
        self._pool: ThreadPoolExecutor | None = None

    def open(self) -> None:
        self._client = self.hook.batch_client(self.max_workers)
        self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix=self.thread_name_prefix)

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

    @abstractmethod
    def publish_params(self, message: Outbound) -> dict[str, Any] | Outcome:
        """``Publish`` arguments for ``message``, or the outcome when it must not be published."""

    @abstractmethod
    def refused(self, code: str, exc: ClientError, message: Outbound) -> Outcome | None:
        """The outcome of an SNS error that refuses this message for good, else None (retry)."""

    def _send_one(self, message: Outbound) -> Outcome:
        params = self.publish_params(message)
        if isinstance(params, Outcome):
            return params
        try:
            message_id = self.hook.publish(self._client, **params)
        except ClientError as exc:
            code = error_code(exc)
            outcome = self.refused(code, exc, message)
            if outcome is not None:
                return outcome
            reason = "throttled" if code in THROTTLED else "unavailable" if code in UNAVAILABLE else "provider_error"
            return Outcome("retry", reason=reason, error=str(exc)[:1000])
        except NOT_SENT as exc:
            return Outcome("retry", reason="connection_error", error=str(exc)[:1000])
        except ParamValidationError as exc:
            return Outcome("failed", reason="invalid_request", error=str(exc)[:1000])
        except Exception as exc:  # read timeout, connection closed mid-response, anything unknown
            log.warning("SNS publish for profile %s has an unknown outcome: %s", message.recipient.profile_id, exc)
            return Outcome("uncertain", reason="response_lost", error=f"{type(exc).__name__}: {exc}"[:1000])
        return Outcome("sent", provider_message_id=message_id)
