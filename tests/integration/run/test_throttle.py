"""The shared send rate against a real PostgreSQL store (and the local Redis, when it runs).

Timing assertions are strict where the token bucket guarantees them (a bucket of rate r and
burst b grants at most b + r·t tokens in t seconds, so a sender can never be faster than
that) and generous where only the machine's speed matters (how much slower it may be).
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
import time
from functools import partial
from pathlib import Path

import psycopg
import pytest

from campaign_orchestrator.paths import ProjectPaths
from campaign_orchestrator.run.throttle import (
    DEFAULT_RATES,
    LimiterChain,
    NoLimit,
    RateConfigError,
    RedisRateLimiter,
    StoreRateLimiter,
    build_limiter,
    provider_rate,
    rate_env_var,
)

pytestmark = pytest.mark.integration

REDIS_URL = os.environ.get("CAMPAIGNS_TEST_REDIS", "redis://127.0.0.1:6379/0")


def make_limiter(backend: str, target: str, name: str, rate: float, burst: float | None = None):
    """A limiter of ``backend`` ("store": target is a DSN; "redis": a URL); importable by spawned processes."""
    if backend == "store":
        return StoreRateLimiter(partial(psycopg.connect, target, autocommit=True), name, rate, burst)
    return RedisRateLimiter(target, name, rate, burst)


@pytest.fixture(params=["store", "redis"])
def backend(request: pytest.FixtureRequest):
    """(backend, DSN or URL); the Redis variant is skipped where no Redis answers."""
    if request.param == "store":
        request.getfixturevalue("store")
        yield "store", request.getfixturevalue("store_dsn")
        return
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError:
        pytest.fail(f"no Redis at {REDIS_URL}: start it (see .ci/run)")
    yield "redis", REDIS_URL
    for key in client.scan_iter("campaigns:rate:test:*"):
        client.delete(key)
    client.close()


@pytest.fixture
def name() -> str:
    return f"test:{secrets.token_hex(4)}"


def test_one_sender_gets_the_rate_after_the_burst(backend: tuple[str, str], name: str) -> None:
    rate, total = 50, 200
    limiter = make_limiter(*backend, name, rate)  # burst: one second's worth, 50
    started = time.monotonic()
    limiter.acquire(total)  # one call: granted progressively, as the bucket refills
    elapsed = time.monotonic() - started
    limiter.close()

    theory = total / rate - limiter.burst / rate  # 3 s
    assert limiter.burst == 50
    assert elapsed >= theory - 0.01  # the bucket cannot grant faster
    assert elapsed < 3 * theory


def _send_in_chunks(
    backend: str, target: str, name: str, rate: float, total: int, chunk: int, barrier, results
) -> None:
    """One sender process: takes tokens for ``total`` messages, ``chunk`` at a time."""
    limiter = make_limiter(backend, target, name, rate)
    limiter.configure()  # connected and the bucket created before the start line
    barrier.wait()
    started = time.time()
    grants: list[float] = []
    for _ in range(total // chunk):
        limiter.acquire(chunk)
        grants.append(time.time())
    limiter.close()
    results.put((os.getpid(), started, grants))


def test_two_processes_share_one_rate(backend: tuple[str, str], name: str) -> None:
    rate, burst, per_process, chunk = 100, 100, 150, 10
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    processes = [
        context.Process(target=_send_in_chunks, args=(*backend, name, rate, per_process, chunk, barrier, results))
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    try:
        outcomes = [results.get(timeout=60) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=10)
    assert all(process.exitcode == 0 for process in processes)

    grants = sorted(t for _, _, times in outcomes for t in times)
    total = chunk * len(grants)
    assert total == 2 * per_process
    assert all(len(times) == per_process // chunk for _, _, times in outcomes)

    # Over any one-second window, at most rate + burst. A grant is timed when acquire returns:
    # up to one chunk's wait (partial takes) plus scheduling delay after the bucket granted it,
    # hence a tolerance of two chunks.
    busiest = max(chunk * sum(1 for u in grants if t <= u < t + 1.0) for t in grants)
    assert busiest <= rate + burst + 2 * chunk, f"{busiest} messages in one second"

    # Every start is timed before its first take, every grant after its take: no slack needed.
    elapsed = grants[-1] - min(started for _, started, _ in outcomes)
    theory = (total - burst) / rate  # 2 s
    assert elapsed >= theory - 0.01
    assert elapsed < 3 * theory


def test_a_changed_rate_applies_from_the_next_acquire(
    backend: tuple[str, str], name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    paths = ProjectPaths(tmp_path)  # no _rate_limits.yaml: the environment decides
    env = rate_env_var("email", "smtp_test")

    def configured_limiter(rate: str):
        monkeypatch.setenv(env, rate)
        return make_limiter(*backend, name, provider_rate("email", "smtp_test", "smtp", paths))

    fast = configured_limiter("100")
    fast.acquire(100)  # the whole burst: the bucket is empty

    # A new task starts with a lowered rate. What accrued at the old rate until then is kept,
    # but the new burst caps it at 4 tokens however long the task took to start: 9 tokens
    # need at least (9 - 4)/4 s at 4/s, against 0.05 s at the old 100/s.
    slow = configured_limiter("4")
    slow.configure()
    started = time.monotonic()
    slow.acquire(9)
    assert time.monotonic() - started >= 1.2

    # A sender configured earlier follows the bucket's latest rate, not its own. The last take
    # left about a token over (more only if that sleep overshot by half a second), so 5 tokens
    # need over 0.5 s at 4/s; at 100/s they would take 0.05 s.
    started = time.monotonic()
    fast.acquire(5)
    assert time.monotonic() - started >= 0.5

    raised = configured_limiter("1000")
    started = time.monotonic()
    raised.acquire(200)
    assert time.monotonic() - started < 1.5  # 0.2 s at 1000/s; 50 s at the old 4/s
    for limiter in (fast, slow, raised):
        limiter.close()


def test_the_bucket_row_follows_the_latest_configuration(store: psycopg.Connection, store_dsn: str, name: str) -> None:
    first = make_limiter("store", store_dsn, name, 10)
    first.acquire(10)
    assert store.execute("SELECT rate, burst FROM campaign.rate_bucket WHERE name = %s", (name,)).fetchone() == (10, 10)
    second = make_limiter("store", store_dsn, name, 25, burst=5)
    second.acquire(1)
    rate, burst, tokens = store.execute(
        "SELECT rate, burst, tokens FROM campaign.rate_bucket WHERE name = %s", (name,)
    ).fetchone()
    assert (rate, burst) == (25, 5)
    assert 0 <= tokens <= 5

    # A deleted bucket (say, by hand to reset it) is recreated, full, by the next take.
    store.execute("DELETE FROM campaign.rate_bucket WHERE name = %s", (name,))
    started = time.monotonic()
    first.acquire(10)
    assert time.monotonic() - started < 1.0
    assert store.execute("SELECT rate FROM campaign.rate_bucket WHERE name = %s", (name,)).fetchone() == (10,)
    first.close()
    second.close()


def test_tokens_are_never_taken_inside_a_transaction(store: psycopg.Connection, name: str) -> None:
    limiter = StoreRateLimiter(lambda: store, name, 10)
    limiter.acquire(1)
    with store.transaction(), pytest.raises(RuntimeError, match="outside any transaction"):
        limiter.acquire(1)


def test_a_connection_in_transaction_mode_is_refused(store_dsn: str, name: str) -> None:
    limiter = StoreRateLimiter(partial(psycopg.connect, store_dsn), name, 10)
    with pytest.raises(ValueError, match="autocommit"):
        limiter.acquire(1)


# ---------------------------------------------------------------------------------------
# Where rates come from
# ---------------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ProjectPaths:
    monkeypatch.delenv("CAMPAIGNS_CONFIG_DIR", raising=False)
    for var in [v for v in os.environ if v.startswith("CAMPAIGNS_RATE_")]:
        monkeypatch.delenv(var)
    paths = ProjectPaths(tmp_path)
    paths.campaigns.mkdir(parents=True)
    return paths


def test_provider_defaults(project: ProjectPaths) -> None:
    assert provider_rate("email", "aws_default", "ses", project) == 14
    assert provider_rate("email", "smtp_default", paths=project) is None  # smtp is email's default provider
    assert provider_rate("sms", "aws_default", paths=project) == 20
    assert provider_rate("push", "aws_default", paths=project) == DEFAULT_RATES[("push", "sns")]
    assert provider_rate("webhook", "http_default", paths=project) is None


def test_environment_wins_over_the_file_which_wins_over_the_default(
    project: ProjectPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project.campaigns / "_rate_limits.yaml").write_text(
        "email:aws_default: 40\nemail:smtp_default: 5\nsms:aws_default: unlimited\npush:aws_default: null\n"
    )
    assert provider_rate("email", "aws_default", "ses", project) == 40
    assert provider_rate("email", "smtp_default", "smtp", project) == 5
    assert provider_rate("sms", "aws_default", "sns", project) is None
    assert provider_rate("push", "aws_default", "sns", project) is None
    assert provider_rate("email", "other", "ses", project) == 14

    assert rate_env_var("email", "aws-prod.eu") == "CAMPAIGNS_RATE_EMAIL_AWS_PROD_EU"
    monkeypatch.setenv("CAMPAIGNS_RATE_EMAIL_AWS_DEFAULT", "2.5")
    monkeypatch.setenv("CAMPAIGNS_RATE_EMAIL_SMTP_DEFAULT", "unlimited")
    assert provider_rate("email", "aws_default", "ses", project) == 2.5
    assert provider_rate("email", "smtp_default", "smtp", project) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("email:aws_default: fast\n", "is not a rate"),
        ("email:aws_default: 0\n", "is not a rate"),
        ("aws_default: 14\n", "must be channel:connection_id"),
        ("mail:aws_default: 14\n", "must be channel:connection_id"),
        ("- 14\n", "expected a mapping"),
        ("email:aws_default: [1\n", "not valid YAML"),
    ],
)
def test_a_bad_rate_file_fails_loudly(project: ProjectPaths, text: str, message: str) -> None:
    path = project.campaigns / "_rate_limits.yaml"
    path.write_text(text)
    with pytest.raises(RateConfigError, match=message) as excinfo:
        provider_rate("email", "aws_default", "ses", project)
    assert str(path) in str(excinfo.value)


def test_a_bad_rate_in_the_environment_fails_loudly(project: ProjectPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGNS_RATE_SMS_AWS_DEFAULT", "-3")
    with pytest.raises(RateConfigError, match="CAMPAIGNS_RATE_SMS_AWS_DEFAULT"):
        provider_rate("sms", "aws_default", paths=project)


def test_build_limiter_puts_the_step_bucket_before_the_provider_bucket(
    project: ProjectPaths, store_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CAMPAIGNS_RATE_LIMITER", raising=False)
    connect = partial(psycopg.connect, store_dsn, autocommit=True)
    common = {"campaign_id": "winter_sale", "step_id": "mail", "paths": project}

    assert isinstance(build_limiter(connect, channel="email", conn_id="smtp_default", **common), NoLimit)

    ses = build_limiter(connect, channel="email", conn_id="aws_default", provider="ses", **common)
    assert isinstance(ses, StoreRateLimiter)
    assert (ses.name, ses.rate, ses.burst) == ("email:aws_default", 14, 14)

    both = build_limiter(
        connect, channel="email", conn_id="aws_default", provider="ses", step_rate=5, **common
    )
    assert isinstance(both, LimiterChain)
    assert [(lim.name, lim.rate) for lim in both.limiters] == [("step:winter_sale:mail", 5), ("email:aws_default", 14)]
    assert both.burst == 5
    both.acquire(3)
    assert both.limiters[0].conn is both.limiters[1].conn  # one connection for both buckets
    both.close()

    monkeypatch.setenv("CAMPAIGNS_RATE_LIMITER", REDIS_URL)
    on_redis = build_limiter(connect, channel="sms", conn_id="aws_default", **common)
    assert isinstance(on_redis, RedisRateLimiter)
    assert on_redis.key == "campaigns:rate:sms:aws_default"

    monkeypatch.setenv("CAMPAIGNS_RATE_LIMITER", "memcached://x")
    with pytest.raises(RateConfigError, match="CAMPAIGNS_RATE_LIMITER"):
        build_limiter(connect, channel="sms", conn_id="aws_default", **common)
