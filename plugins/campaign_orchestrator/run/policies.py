"""Rules across all campaigns: frequency caps and quiet hours, from dags/campaigns/_policies.yaml.

```yaml
frequency_caps:
  - {channel: email, purpose: marketing, max: 3, per: 7d}   # at most 3 marketing emails a week
  - {channel: sms, max: 1, per: 1d}                          # and 1 SMS a day, of any purpose
quiet_hours:                      # default when absent: SMS and push deferred 21:00-08:00
  - {channels: [sms, push], start: "21:00", end: "08:00", fallback: defer}
soft_bounces: {suppress_after: 3, within: 30d}   # the default: see feedback/classify.py
```

A cap is evaluated when a message is claimed for sending, against the communication history
of every campaign (messages sent, or being sent right now). Profiles are locked in a fixed
order while their history is counted, so two campaigns sending at once cannot both take the
last place under a cap. A capped message is excluded with reason ``frequency_capped`` and
counted in the run report, never silently dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from campaign_orchestrator.config.policies import (  # noqa: F401  (the rules' models, where callers expect them)
    DEFAULT_QUIET_HOURS,
    POLICIES_FILE,
    FrequencyCap,
    Policies,
    QuietHours,
    load_policies,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    import psycopg

    from campaign_orchestrator.channels.base import Recipient

_LOCK_NAMESPACE = 726_374_002  # advisory-lock class of the per-profile cap locks


def apply_frequency_caps(
    conn: psycopg.Connection,
    caps: Sequence[FrequencyCap],
    run_key: int,
    step_id: str,
    channel: str,
    recipients: list[Recipient],
) -> tuple[list[Recipient], list[Recipient]]:
    """Split a just-claimed chunk (rows in ``sending``, same transaction) into allowed and
    capped recipients. Must run inside the claim's transaction: the advisory locks taken
    here are held until it commits, together with the chunk's ``sending`` rows."""
    if not caps or not recipients:
        return recipients, []
    profiles = sorted({r.profile_id for r in recipients})
    # A fixed order: two campaigns locking overlapping profiles can never deadlock.
    conn.execute(
        "SELECT pg_advisory_xact_lock(%s, hashint8(p)) FROM unnest(%s::bigint[]) AS p ORDER BY p",
        (_LOCK_NAMESPACE, profiles),
    )
    remaining: dict[int, int] = {p: 1 << 30 for p in profiles}
    for cap in caps:
        used = dict(
            conn.execute(
                """
                -- Two halves, each on its own partial index: the history of sent messages
                -- (message_history_idx) and what is in flight now (message_in_flight_idx).
                SELECT profile_id, count(*) FROM (
                    SELECT m.profile_id FROM campaign.message m
                    WHERE m.status = 'sent' AND m.profile_id = ANY(%(profiles)s) AND m.channel = %(channel)s
                      AND (%(purpose)s::text IS NULL OR m.purpose = %(purpose)s)
                      AND m.sent_at >= now() - %(per)s::interval
                    UNION ALL
                    SELECT m.profile_id FROM campaign.message m
                    WHERE m.status = 'sending' AND m.profile_id = ANY(%(profiles)s) AND m.channel = %(channel)s
                      AND (%(purpose)s::text IS NULL OR m.purpose = %(purpose)s)
                      AND m.claimed_at >= now() - %(per)s::interval
                      -- The chunk being checked does not count against itself.
                      AND NOT (m.run_key = %(run_key)s AND m.step_id = %(step_id)s
                               AND (m.profile_id, m.entity_key) IN (
                                   SELECT * FROM unnest(%(chunk_profiles)s::bigint[], %(chunk_entities)s::text[])))
                ) AS used
                GROUP BY profile_id
                """,
                {
                    "profiles": profiles,
                    "channel": channel,
                    "purpose": cap.purpose,
                    "per": cap.per,
                    "run_key": run_key,
                    "step_id": step_id,
                    "chunk_profiles": [r.profile_id for r in recipients],
                    "chunk_entities": [r.entity_key for r in recipients],
                },
            ).fetchall()
        )
        for profile in profiles:
            remaining[profile] = min(remaining[profile], cap.max - int(used.get(profile, 0)))
    allowed, capped = [], []
    for recipient in recipients:  # in seq order: a profile's first messages take its places
        if remaining[recipient.profile_id] > 0:
            remaining[recipient.profile_id] -= 1
            allowed.append(recipient)
        else:
            capped.append(recipient)
    if capped:
        conn.execute(
            """
            UPDATE campaign.message SET status = 'excluded', reason = 'frequency_capped', updated_at = now()
            WHERE run_key = %s AND step_id = %s AND status = 'sending'
              AND (profile_id, entity_key) IN (SELECT * FROM unnest(%s::bigint[], %s::text[]))
            """,
            (run_key, step_id, [r.profile_id for r in capped], [r.entity_key for r in capped]),
        )
    return allowed, capped


def quiet_hours_sql(rules: Sequence[QuietHours]):
    """A boolean SQL expression over the profile ``p`` and ``%(now)s``: inside a quiet window.

    Local time comes from the profile's IANA time zone (UTC when unknown or invalid), so
    daylight saving changes move the window with the recipient's clock.
    """
    from psycopg import sql

    if not rules:
        return sql.SQL("false")
    local = sql.SQL(
        "((%(now)s::timestamptz) AT TIME ZONE coalesce("
        "(SELECT tz.name FROM pg_timezone_names tz WHERE tz.name = p.time_zone), 'UTC'))::time"
    )
    windows = []
    for rule in rules:
        start, end = sql.Literal(rule.start + ":00"), sql.Literal(rule.end + ":00")
        if rule.start > rule.end:  # crosses midnight
            windows.append(sql.SQL("({l} >= {s}::time OR {l} < {e}::time)").format(l=local, s=start, e=end))
        else:
            windows.append(sql.SQL("({l} >= {s}::time AND {l} < {e}::time)").format(l=local, s=start, e=end))
    return sql.SQL("(") + sql.SQL(" OR ").join(windows) + sql.SQL(")")
