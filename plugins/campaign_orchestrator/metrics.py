"""Message counts per campaign, step and channel, as Airflow metrics.

Everything goes through the Task SDK's metrics facade (``airflow.sdk.observability.stats``),
so Airflow's ``[metrics]`` configuration picks the backend: StatsD (``statsd_on``), DogStatsD
(``statsd_datadog_enabled``), OpenTelemetry (``otel_on``) or nothing; Airflow's prefix
(``statsd_prefix`` / ``otel_prefix``, ``airflow`` by default) and allow/block lists apply.

Names (see docs/metrics.md):

- ``campaigns.messages.{sent,failed,uncertain,pending,held_out}`` and ``campaigns.messages.excluded``,
  tagged ``campaign``, ``step``, ``channel`` (and ``reason`` for ``excluded``): a run's totals,
  counted from the ledger, once per run by the ``finalize_report`` task.
- ``campaigns.batch.sent`` (counter) and ``campaigns.batch.duration`` (timer), same tags: live
  throughput, per send-task attempt.

Plain StatsD has no tags: there the tagged names arrive as totals over all campaigns, and each
count is also sent under a name that carries the tags,
``campaigns.<campaign>.<step>.<channel>.sent`` (``….excluded.<reason>``,
``….batch.sent``, ``….batch.duration``). Backends with tags (DogStatsD, StatsD with
``statsd_influxdb_enabled``, OpenTelemetry) get only the tagged names.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from campaign_orchestrator.channels.base import BatchStats
    from campaign_orchestrator.run.report import StepReport

log = logging.getLogger(__name__)

PREFIX = "campaigns"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
F = TypeVar("F", bound=Callable[..., None])


def _never_fails(fn: F) -> F:
    # Metrics are an observer: a misconfigured backend must not fail a send or a report.
    @functools.wraps(fn)
    def wrapper(*args, **kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any backend error, logged and dropped
            log.warning("Campaign metrics not emitted (%s): %s", fn.__name__, exc)

    return wrapper  # type: ignore[return-value]


@_never_fails
def emit_counts(
    campaign_id: str,
    step_id: str,
    channel: str,
    *,
    sent: int = 0,
    failed: int = 0,
    uncertain: int = 0,
    pending: int = 0,
    held_out: int = 0,
    excluded: Mapping[str, int] | None = None,
) -> None:
    """Add one run's (or any slice's) message counts to the ``campaigns.messages.*`` counters."""
    stats = _facade()
    tags = {"campaign": campaign_id, "step": step_id, "channel": channel}
    encode = not _backend_has_tags()
    outcomes = {"sent": sent, "failed": failed, "uncertain": uncertain, "pending": pending, "held_out": held_out}
    for outcome, count in outcomes.items():
        stats.incr(f"{PREFIX}.messages.{outcome}", count, tags=tags)
        if encode:
            stats.incr(_encoded(tags, outcome), count)
    for reason, count in sorted((excluded or {}).items()):
        stats.incr(f"{PREFIX}.messages.excluded", count, tags={**tags, "reason": reason})
        if encode:
            stats.incr(_encoded(tags, "excluded", reason), count)


@_never_fails
def emit_report(campaign_id: str, reports: Iterable[StepReport]) -> None:
    """The run report's counts, step by step: call once per run, after the report is stored."""
    for report in reports:
        emit_counts(
            campaign_id,
            report.step_id,
            report.channel,
            sent=report.sent,
            failed=report.failed,
            uncertain=report.uncertain,
            pending=report.pending,
            held_out=report.held_out,
            excluded=report.excluded,
        )


@_never_fails
def emit_batch(campaign_id: str, step_id: str, channel: str, stats: BatchStats, seconds: float) -> None:
    """Live throughput of one send-task attempt: messages it sent and how long it took."""
    facade = _facade()
    tags = {"campaign": campaign_id, "step": step_id, "channel": channel}
    facade.incr(f"{PREFIX}.batch.sent", stats.sent, tags=tags)
    facade.timing(f"{PREFIX}.batch.duration", seconds * 1000.0, tags=tags)
    if not _backend_has_tags():
        facade.incr(_encoded(tags, "batch", "sent"), stats.sent)
        facade.timing(_encoded(tags, "batch", "duration"), seconds * 1000.0)


def _encoded(tags: Mapping[str, str], *leaf: str) -> str:
    # A dot inside an id would shift every level after it, as in Airflow's own legacy names.
    parts = [tags["campaign"], tags["step"], tags["channel"], *leaf]
    return ".".join([PREFIX, *(_UNSAFE.sub("_", p.replace(".", "__")) for p in parts)])


def _backend_has_tags() -> bool:
    """Whether the backend Airflow's config selects keeps tags (its own order of precedence)."""
    from airflow.sdk.configuration import conf

    if conf.getboolean("metrics", "statsd_datadog_enabled", fallback=False):
        return True
    if conf.getboolean("metrics", "statsd_on", fallback=False):
        return conf.getboolean("metrics", "statsd_influxdb_enabled", fallback=False)
    return conf.getboolean("metrics", "otel_on", fallback=False)


def _facade():
    from airflow.sdk._shared.observability.metrics import stats as state
    from airflow.sdk.observability import stats

    # A task process has it set up by the task runner; elsewhere (`airflow dags test`, a
    # script) it may not be yet, and an uninitialised facade drops every metric.
    if getattr(state, "_factory", None) is None:
        from airflow.sdk.configuration import conf
        from airflow.sdk.observability.metrics.stats_utils import get_stats_factory

        stats.initialize(
            factory=get_stats_factory(),
            export_legacy_names=conf.getboolean("metrics", "legacy_names_on", fallback=True),
        )
    return stats


__all__ = ["emit_batch", "emit_counts", "emit_report"]
