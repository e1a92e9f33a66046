"""Apply an unsubscribe: the consent of a token's profile and channel becomes ``opted_out``.

The change is immediate (the next audience filtering already excludes the profile) and
idempotent: a second click, a retried request or a profile already opted out by another
source changes nothing and is still a success. ``crm.consent``'s triggers write the history
row; nothing here writes it twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from campaign_orchestrator.sqlfiles import query

if TYPE_CHECKING:
    from collections.abc import Sequence

    import psycopg

    from campaign_orchestrator.unsubscribe.tokens import TokenPayload


@dataclass(frozen=True, slots=True)
class UnsubscribeResult:
    """:param changed: pairs whose consent this call changed. :param unchanged: pairs already
    opted out. :param unknown: pairs whose profile no longer exists."""

    changed: int
    unchanged: int
    unknown: int

    @property
    def ok(self) -> bool:
        return True


def unsubscribe_many(
    conn: psycopg.Connection, payloads: Sequence[TokenPayload], source: str = "one_click"
) -> UnsubscribeResult:
    """Opt out every ``(profile_id, channel)`` of ``payloads`` in one statement."""
    if not source:
        raise ValueError("an unsubscribe needs a source for the consent history")
    pairs = {(p.profile_id, p.channel) for p in payloads}
    if not pairs:
        return UnsubscribeResult(0, 0, 0)
    profile_ids = [pid for pid, _ in pairs]
    channels = [channel for _, channel in pairs]
    with conn.transaction():
        rows = conn.execute(
            query("unsubscribe_opt_out"), {"profile_ids": profile_ids, "channels": channels, "source": source}
        ).fetchall()
    changed = sum(1 for row in rows if row[2])
    return UnsubscribeResult(changed=changed, unchanged=len(rows) - changed, unknown=len(pairs) - len(rows))


def unsubscribe(conn: psycopg.Connection, token_payload: TokenPayload, source: str = "one_click") -> UnsubscribeResult:
    """Opt the token's profile out of the token's channel now; see :func:`unsubscribe_many`."""
    return unsubscribe_many(conn, [token_payload], source)
