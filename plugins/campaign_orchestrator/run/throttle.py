"""One send rate per provider connection, shared by every worker and every campaign.

Users set exactly one number, in messages per second, per provider connection; no
concurrency × rate arithmetic. The rate is enforced by a token bucket that all senders draw
from, wherever they run:

* :class:`StoreRateLimiter` keeps the bucket in the campaign store (``campaign.rate_bucket``),
  so it needs no other service. Each take is one ``UPDATE ... RETURNING`` that refills the
  bucket from the database server's clock and hands out what is available, possibly fewer
  tokens than asked; the caller then sleeps for the deficit and takes again. A take is one
  round trip, committed without waiting for a WAL flush.
* :class:`RedisRateLimiter` does the same in one Lua script, when
  ``CAMPAIGNS_RATE_LIMITER=redis://host:6379/0`` names a Redis server.
* :class:`NoLimit` when nothing limits the connection (SMTP and webhooks by default).

Where a rate comes from, highest precedence first (see :func:`provider_rate`):

1. the environment variable ``CAMPAIGNS_RATE_<CHANNEL>_<CONN_ID>``, upper-cased, every
   character other than a letter or digit replaced by ``_``: ``CAMPAIGNS_RATE_EMAIL_SES_DEFAULT=50``;
2. ``dags/campaigns/_rate_limits.yaml``, mapping ``"channel:conn_id"`` to a rate;
3. the provider's default quota, :data:`DEFAULT_RATES`.

A value of ``unlimited`` (or ``null`` in the YAML file) removes the limit. A step's
``rate_per_second`` adds a second bucket, ``step:<campaign>:<step>``, shared by the runs of
that step only; the provider's bucket still applies (:func:`build_limiter`).

A bucket of rate ``r`` and burst ``b`` grants at most ``b + r·t`` tokens in any interval of
``t`` seconds, whatever the number of workers. The burst defaults to one second's worth.
"""

from __future__ import annotations

import logging
import math
import os
import random
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable

    import psycopg

    from campaign_orchestrator.paths import ProjectPaths

log = logging.getLogger(__name__)

RATE_LIMITS_FILE = "_rate_limits.yaml"
LIMITER_ENV = "CAMPAIGNS_RATE_LIMITER"
UNLIMITED = "unlimited"

# Default rates in messages per second, by (channel, provider). Sources, checked 2026:
# - SES: 1/s in the sandbox; out of it, AWS now says the rate "varies based on your specific
#   use case" (docs.aws.amazon.com/ses/latest/dg/quotas.html). 14/s was the long-standing
#   starting production quota (the one listmonk users overran, listmonk #913). Set your
#   account's real MaxSendRate (SES console, GetSendQuota) if it differs.
# - SNS SMS: 20 messages/s per account, SNS's historical default. Actual SMS throughput is
#   per origination identity, in message parts per second (e.g. US toll-free 3 MPS, US short
#   code 100 MPS: docs.aws.amazon.com/sms-voice/latest/userguide/sms-limitations-mps.html).
# - SNS mobile push: Publish is throttled per account and region (30,000/s in us-east-1 and
#   far less in most regions) and shared with every other Publish of the account; 1,000/s
#   leaves headroom everywhere and still sends a million notifications in 17 minutes.
# - SMTP and webhooks: the server is yours; no limit unless configured.
DEFAULT_RATES: dict[tuple[str, str], float | None] = {
    ("email", "ses"): 14.0,
    ("email", "smtp"): None,
    ("sms", "sns"): 20.0,
    ("push", "sns"): 1_000.0,
    ("webhook", "http"): None,
}
DEFAULT_PROVIDER = {"email": "smtp", "sms": "sns", "push": "sns", "webhook": "http"}

_MIN_SLEEP = 0.001
# A waiting sender looks again at least this often, so a raised rate is seen quickly.
_MAX_SLEEP = 2.0


class RateConfigError(ValueError):
    """A rate in the environment or in _rate_limits.yaml that is not a positive number."""


class RateLimiter(Protocol):
    burst: float
    """The most tokens granted at once: a sender should send chunks no larger than this."""
    waited: float
    """Seconds spent waiting for tokens so far."""

    def acquire(self, n: int) -> None:
        """Block until ``n`` tokens were granted."""

    def close(self) -> None: ...


class NoLimit:
    """A limiter that never waits."""

    burst = math.inf
    waited = 0.0

    def acquire(self, n: int) -> None:
        return None

    def close(self) -> None:
        return None

    def __enter__(self) -> NoLimit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Bucket:
    """The waiting loop shared by the store and Redis buckets; subclasses implement ``_take``."""

    def __init__(self, name: str, rate: float, burst: float | None = None) -> None:
        if not rate > 0:
            raise ValueError(f"rate of {name!r} must be a positive number of messages per second, not {rate!r}")
        self.name = name
        self.rate = float(rate)
        self.burst = float(burst) if burst is not None else max(1.0, self.rate)
        if self.burst < 1:
            raise ValueError(f"burst of {name!r} must be at least 1, not {burst!r}")
        self.waited = 0.0
        """Seconds spent sleeping for tokens, for progress logs."""
        self._configured = False

    def acquire(self, n: int) -> None:
        """Take ``n`` tokens, as many as are available at each try, sleeping for the rest."""
        remaining = n
        while remaining > 0:
            granted, left, rate, burst = self._take(remaining)
            remaining -= granted
            if remaining <= 0:
                return
            # Sleep until what is still needed (at most a full bucket) should be there, minus a
            # random part: senders that would wake in lockstep take turns instead of one
            # of them always arriving first.
            deficit = min(remaining, burst) - left
            pause = min(_MAX_SLEEP, max(_MIN_SLEEP, deficit / rate * random.uniform(0.5, 1.0)))
            self.waited += pause
            time.sleep(pause)

    def configure(self) -> None:
        """Write this limiter's rate and burst to the bucket (the first acquire does it too)."""
        self._configure()
        self._configured = True

    def _take(self, want: int) -> tuple[int, float, float, float]:
        """Take up to ``want`` tokens: (granted, tokens left, bucket's rate, bucket's burst)."""
        raise NotImplementedError

    def _configure(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        return None

    def __enter__(self) -> _Bucket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, rate={self.rate:g}/s, burst={self.burst:g})"


# Settle what accrued at the bucket's old rate, then switch to this configuration. A rate and
# burst that did not change write nothing. The clock is read once, into excluded.refilled_at.
_CONFIGURE_SQL = """
INSERT INTO campaign.rate_bucket AS b (name, rate, burst, tokens, refilled_at)
VALUES (%(name)s, %(rate)s, %(burst)s, %(burst)s, clock_timestamp())
ON CONFLICT (name) DO UPDATE SET
    tokens = least(excluded.burst, b.burst,
                   b.tokens + b.rate * greatest(0, extract(epoch FROM excluded.refilled_at - b.refilled_at)::float8)),
    refilled_at = greatest(b.refilled_at, excluded.refilled_at),
    rate = excluded.rate,
    burst = excluded.burst
WHERE (b.rate, b.burst) IS DISTINCT FROM (excluded.rate, excluded.burst)
"""

# One statement: refill from the server's clock, grant what is there (up to want), keep the
# fraction. The sub-select reads the row being updated, so after waiting for a concurrent
# take's row lock it is evaluated again on that take's result; greatest() keeps refilled_at
# from going back when this statement read the clock before that take committed.
_TAKE_SQL = """
UPDATE campaign.rate_bucket AS b
SET (tokens, last_grant, refilled_at) = (
    SELECT s.available - g.granted, g.granted, s.at
    FROM (SELECT least(b.burst, b.tokens + b.rate * greatest(0, extract(epoch FROM c.ts - b.refilled_at)::float8))
                     AS available,
                 greatest(b.refilled_at, c.ts) AS at
          FROM (SELECT clock_timestamp() AS ts) c) s
    CROSS JOIN LATERAL (SELECT least(%(want)s::float8, floor(s.available)) AS granted) g
)
WHERE b.name = %(name)s
RETURNING b.last_grant, b.tokens, b.rate, b.burst
"""


class StoreRateLimiter(_Bucket):
    """A token bucket in ``campaign.rate_bucket``, shared by every process that uses its name.

    :param connect: returns an autocommit connection to the campaign store; called once, on
        the first acquire. Takes must not run inside a transaction: the bucket's row would
        stay locked, and every other sender wait, until it commits.
    :param name: the bucket, e.g. ``email:smtp_default`` (see :func:`bucket_name`).
    :param rate: messages per second. Written to the bucket on first use: the latest
        configuration wins, for every sender of the bucket, from its next take.
    :param burst: the most tokens the bucket holds; default one second's worth, ``max(1, rate)``.

    One limiter serves one thread; several limiters may share a connection (:func:`build_limiter`).
    """

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection],
        name: str,
        rate: float,
        burst: float | None = None,
    ) -> None:
        super().__init__(name, rate, burst)
        self._connect = connect
        self._conn: psycopg.Connection | None = None

    @property
    def conn(self) -> psycopg.Connection:
        if self._conn is None:
            conn = self._connect()
            if not conn.autocommit:
                raise ValueError("StoreRateLimiter needs an autocommit connection")
            self._conn = conn
        return self._conn

    def _configure(self) -> None:
        self.conn.execute(_CONFIGURE_SQL, {"name": self.name, "rate": self.rate, "burst": self.burst})

    def _take(self, want: int) -> tuple[int, float, float, float]:
        from psycopg import pq

        if not self._configured:
            self.configure()
        if self.conn.info.transaction_status != pq.TransactionStatus.IDLE:
            raise RuntimeError(f"{self!r}: tokens are taken outside any transaction, to hold the bucket's lock briefly")
        row = self._execute_take(want)
        if row is None:  # the row was deleted since it was configured: recreate it
            self.configure()
            row = self._execute_take(want)
            assert row is not None
        return int(row[0]), row[1], row[2], row[3]

    def _execute_take(self, want: int) -> tuple[float, float, float, float] | None:
        import psycopg

        conn, params = self.conn, {"name": self.name, "want": want}
        if not psycopg.Pipeline.is_supported():
            return conn.execute(_TAKE_SQL, params).fetchone()
        # Still one round trip. A take is not worth waiting for a WAL flush (it cut the cost of
        # a take 5-10x here): a server crash could lose the last fraction of a second of takes,
        # re-granting as many tokens once. SET LOCAL leaves the session, maybe shared with the
        # ledger's writes, as it was.
        with conn.pipeline(), conn.transaction():
            conn.execute("SET LOCAL synchronous_commit = off")
            cursor = conn.execute(_TAKE_SQL, params)
        return cursor.fetchone()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# KEYS[1]: the bucket's hash; ARGV: want, rate, burst, configure (1/0), ttl in ms. Same
# arithmetic as the store's; TIME is the Redis server's clock, kept to the microsecond (%.6f:
# tostring keeps 14 digits only). Floats go back as strings: Lua numbers returned to Redis
# are truncated to integers.
_REDIS_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local row = redis.call('HMGET', KEYS[1], 'rate', 'burst', 'tokens', 'at')
local rate, burst, tokens, at = tonumber(row[1]), tonumber(row[2]), tonumber(row[3]), tonumber(row[4])
if not rate then
  rate, burst = tonumber(ARGV[2]), tonumber(ARGV[3])
  tokens, at = burst, now
else
  tokens = math.min(burst, tokens + rate * math.max(0, now - at))
  at = math.max(at, now)
  if ARGV[4] == '1' then
    rate, burst = tonumber(ARGV[2]), tonumber(ARGV[3])
    tokens = math.min(tokens, burst)
  end
end
local granted = math.min(tonumber(ARGV[1]), math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'rate', tostring(rate), 'burst', tostring(burst), 'tokens', tostring(tokens),
           'at', string.format('%.6f', at))
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {granted, tostring(tokens), tostring(rate), tostring(burst)}
"""


class RedisRateLimiter(_Bucket):
    """The same bucket in Redis (hash ``campaigns:rate:<name>``), taken by one Lua script.

    :param url: ``redis://host:6379/0`` (or ``rediss://``).
    :param name, rate, burst: as for :class:`StoreRateLimiter`.
    :param ttl: seconds an unused bucket (and its configured rate) is kept.
    """

    def __init__(self, url: str, name: str, rate: float, burst: float | None = None, ttl: float = 7 * 86_400) -> None:
        super().__init__(name, rate, burst)
        self.url = url
        self.key = f"campaigns:rate:{name}"
        self.ttl_ms = int(ttl * 1000)
        self._client = None
        self._script = None

    def _run(self, want: int, configure: bool) -> tuple[int, float, float, float]:
        if self._script is None:
            import redis

            self._client = redis.Redis.from_url(self.url)
            self._script = self._client.register_script(_REDIS_TAKE)
        granted, left, rate, burst = self._script(
            keys=[self.key], args=[want, repr(self.rate), repr(self.burst), 1 if configure else 0, self.ttl_ms]
        )
        return int(granted), float(left), float(rate), float(burst)

    def _configure(self) -> None:
        self._run(0, configure=True)

    def _take(self, want: int) -> tuple[int, float, float, float]:
        if not self._configured:
            self._configured = True
            return self._run(want, configure=True)
        return self._run(want, configure=False)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = self._script = None


class LimiterChain:
    """Several buckets that must all grant: each is acquired in turn, in the order given.

    Put the provider's shared bucket last, so that its grant is followed by the send at once.
    """

    def __init__(self, *limiters: RateLimiter) -> None:
        self.limiters = limiters
        self.burst = min(lim.burst for lim in limiters)

    @property
    def waited(self) -> float:
        return sum(getattr(lim, "waited", 0.0) for lim in self.limiters)

    def acquire(self, n: int) -> None:
        for limiter in self.limiters:
            limiter.acquire(n)

    def close(self) -> None:
        for limiter in self.limiters:
            limiter.close()

    def __enter__(self) -> LimiterChain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LimiterChain{self.limiters!r}"


def bucket_name(channel: str, conn_id: str) -> str:
    return f"{channel}:{conn_id}"


def step_bucket_name(campaign_id: str, step_id: str) -> str:
    return f"step:{campaign_id}:{step_id}"


def rate_env_var(channel: str, conn_id: str) -> str:
    return "CAMPAIGNS_RATE_" + re.sub(r"[^A-Z0-9]", "_", f"{channel}_{conn_id}".upper())


def provider_rate(
    channel: str, conn_id: str, provider: str | None = None, paths: ProjectPaths | None = None
) -> float | None:
    """The rate in messages per second of ``conn_id`` on ``channel``; None: no limit.

    The environment variable wins over ``_rate_limits.yaml`` in the campaigns folder, which
    wins over the default of ``provider`` (default: the channel's usual one, e.g. smtp for
    email), see the module's documentation.
    """
    env = rate_env_var(channel, conn_id)
    if env in os.environ:
        return _parse_rate(os.environ[env], env)
    configured = read_rate_limits(paths)
    key = bucket_name(channel, conn_id)
    if key in configured:
        return configured[key]
    return DEFAULT_RATES.get((channel, provider or DEFAULT_PROVIDER.get(channel, "")))


def read_rate_limits(paths: ProjectPaths | None = None) -> dict[str, float | None]:
    """The ``"channel:conn_id" -> rate`` mapping of ``_rate_limits.yaml``, empty without the file."""
    from campaign_orchestrator.paths import ProjectPaths

    return read_rate_limits_file(Path((paths or ProjectPaths.discover()).campaigns) / RATE_LIMITS_FILE)


def read_rate_limits_file(path: Path) -> dict[str, float | None]:
    """``read_rate_limits`` of one file; :class:`RateConfigError` names the file and key."""
    import yaml

    if not path.is_file():
        return {}
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RateConfigError(f"{path}: not valid YAML: {exc}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RateConfigError(f'{path}: expected a mapping like "email:ses_default: 14", got {type(raw).__name__}')
    rates: dict[str, float | None] = {}
    for key, value in raw.items():
        channel, sep, conn_id = str(key).partition(":")
        if not sep or not conn_id or channel not in DEFAULT_PROVIDER:
            raise RateConfigError(
                f"{path}: key {key!r} must be channel:connection_id with a channel among "
                f"{', '.join(DEFAULT_PROVIDER)}, e.g. email:ses_default"
            )
        rates[str(key)] = _parse_rate(value, f"{path}: {key}")
    return rates


def _parse_rate(value: object, where: str) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() == UNLIMITED):
        return None
    try:
        rate = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        rate = math.nan
    if not (rate > 0 and math.isfinite(rate)):
        raise RateConfigError(f"{where}: {value!r} is not a rate; give messages per second (> 0) or {UNLIMITED!r}")
    return rate


def build_limiter(
    connect: Callable[[], psycopg.Connection],
    *,
    channel: str,
    conn_id: str,
    provider: str | None = None,
    campaign_id: str | None = None,
    step_id: str | None = None,
    step_rate: float | None = None,
    paths: ProjectPaths | None = None,
) -> RateLimiter:
    """The limiter of one step's sends: its own bucket if it sets ``rate_per_second``, then
    its provider connection's bucket if that has a rate; :class:`NoLimit` if neither.

    Buckets live in the store, or in Redis when ``CAMPAIGNS_RATE_LIMITER`` is a redis:// URL.
    Store buckets share one connection from ``connect``, opened on the first acquire.
    """
    backend = os.environ.get(LIMITER_ENV, "").strip()
    if backend and not backend.startswith(("redis://", "rediss://", "unix://")) and backend != "store":
        raise RateConfigError(f"{LIMITER_ENV}={backend!r}: use 'store' (the default) or a redis:// URL")
    use_redis = backend.startswith(("redis://", "rediss://", "unix://"))
    shared = _OneConnection(connect)

    def bucket(name: str, rate: float) -> RateLimiter:
        return RedisRateLimiter(backend, name, rate) if use_redis else StoreRateLimiter(shared, name, rate)

    limiters: list[RateLimiter] = []
    if step_rate is not None and campaign_id and step_id:
        limiters.append(bucket(step_bucket_name(campaign_id, step_id), step_rate))
    rate = provider_rate(channel, conn_id, provider, paths)
    if rate is not None:
        limiters.append(bucket(bucket_name(channel, conn_id), rate))
    log.info(
        "Send rate for %s:%s: %s%s",
        channel,
        conn_id,
        f"{rate:g}/s shared by every sender" if rate is not None else "unlimited",
        f", and {step_rate:g}/s for step {campaign_id}.{step_id}" if step_rate is not None else "",
    )
    if not limiters:
        return NoLimit()
    return limiters[0] if len(limiters) == 1 else LimiterChain(*limiters)


class _OneConnection:
    """A connection factory that opens one connection and returns it every time."""

    def __init__(self, connect: Callable[[], psycopg.Connection]) -> None:
        self._connect = connect
        self._conn: psycopg.Connection | None = None

    def __call__(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        return self._conn
