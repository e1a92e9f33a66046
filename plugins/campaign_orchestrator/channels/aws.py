"""What the SES and SNS senders share: error classes, and a retry that never repeats a
request AWS may have accepted.

botocore's own retries are turned off for sends (they retry read timeouts, i.e. requests
that may already have been accepted, which would deliver twice). Only errors raised before
the request left, or answers saying it was not taken (throttling, service unavailable), are
tried again here, with exponential backoff and jitter.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProxyConnectionError,
    SSLError,
)

T = TypeVar("T")

THROTTLED = frozenset({"Throttling", "ThrottlingException", "Throttled", "TooManyRequestsException", "KMSThrottling"})
UNAVAILABLE = frozenset(
    {"ServiceUnavailable", "ServiceUnavailableException", "InternalError", "InternalFailure", "RequestTimeout"}
)
NOT_SENT = (
    # Raised before any byte of the request reached AWS.
    EndpointConnectionError,
    ConnectTimeoutError,
    ProxyConnectionError,
    SSLError,
    NoCredentialsError,
    PartialCredentialsError,
    NoRegionError,
)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def backoff_sleep(backoff: float, attempt: int) -> None:
    time.sleep(min(backoff * 2**attempt, 5.0) * random.uniform(0.5, 1.0))


def batch_client(hook: Any, max_pool_connections: int) -> Any:
    """A new client of ``hook``'s service with ``max_pool_connections`` HTTP connections and
    no botocore retries (the connection's own ``config_kwargs`` are kept)."""
    config = hook.config.merge(
        Config(max_pool_connections=max_pool_connections, retries={"mode": "standard", "total_max_attempts": 1})
    )
    return hook.get_client_type(region_name=hook.region_name, config=config)


def call_unsent_retries(
    call: Callable[[], T], attempts: int, backoff: float, retryable: Callable[[ClientError], bool]
) -> T:
    """``call()``, tried again only when the request cannot have been accepted; raises the
    last error when retries are exhausted or the error is not safe to retry."""
    for attempt in range(attempts):
        try:
            return call()
        except ClientError as exc:
            if not retryable(exc) or attempt + 1 == attempts:
                raise
        except NOT_SENT:
            if attempt + 1 == attempts:
                raise
        backoff_sleep(backoff, attempt)
    raise AssertionError("unreachable")
