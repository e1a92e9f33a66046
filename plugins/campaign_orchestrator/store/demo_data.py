"""Fill the campaign store with deterministic demo data, at any scale.

The data is generated inside PostgreSQL by ``include/sql/demo/generate.sql``: set-based
``INSERT … SELECT`` statements whose every choice is a hash of the row key under a seed, so
the same ``profiles``, ``seed`` and ``anchor`` always give the same rows. The file is split on
its ``-- step: <name>`` lines and the steps run in order in one transaction: the crm tables
and the campaign run tables are emptied first, and a failed run leaves the previous data.

For speed the load follows the PostgreSQL manual's advice for populating a database: the
foreign keys and secondary indexes of the filled tables are dropped for the load and
re-created from their saved definitions at the end, in the same transaction. The tables are
locked (ACCESS EXCLUSIVE) throughout and their contents replaced: this is for demo, test and
benchmark stores, never for a store holding real customers.
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, time as dt_time
from typing import TYPE_CHECKING

from psycopg import sql

from campaign_orchestrator.paths import ProjectPaths

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import date
    from pathlib import Path

    import psycopg

log = logging.getLogger(__name__)

TABLES = ("profile", "consent", "consent_history", "suppression", "plan", "product", "inventory", "subscription", "booking")
"""The crm tables the generator fills, in insert order; the keys of the returned counts."""

_STEP = re.compile(r"^-- step: ([a-z_]+)\s*$", re.MULTILINE)
MAX_SEED = 2**31

BASE_BOOKINGS_PER_PROFILE = 1.565
"""Mean of the generator's bookings-per-profile mix (0 to 8 per profile, see generate.sql)."""
BASE_MAX_BOOKINGS = 8
MAX_BOOKINGS_PER_PROFILE = 100.0


@dataclass(frozen=True)
class Step:
    name: str
    sql: str

    @property
    def has_params(self) -> bool:
        return "%(" in self.sql


def demo_sql_file(paths: ProjectPaths | None = None) -> Path:
    return (paths or ProjectPaths.discover()).sql / "demo" / "generate.sql"


def load_steps(path: Path) -> list[Step]:
    """The named steps of the generator file, in file order (the header is not a step)."""
    text = path.read_text(encoding="utf-8")
    parts = _STEP.split(text)
    # parts = [header, name1, body1, name2, body2, ...]
    steps = [Step(name, body.strip()) for name, body in zip(parts[1::2], parts[2::2], strict=True)]
    if not steps:
        raise ValueError(f"{path}: no '-- step: <name>' sections found")
    return steps


def generate_demo_data(
    conn: psycopg.Connection,
    profiles: int,
    seed: int = 42,
    *,
    anchor: date | None = None,
    on_step: Callable[[str, int, float], None] | None = None,
    paths: ProjectPaths | None = None,
    bookings_per_profile: float | None = None,
) -> dict[str, int]:
    """Replace the store's crm data with ``profiles`` generated profiles and what links to them.

    :param conn: an autocommit psycopg connection to a migrated store.
    :param profiles: number of profiles; products are ``max(50, profiles // 1000)``.
    :param seed: in ``[0, 2**31)``; another seed gives other, equally deterministic data.
    :param anchor: the day the data is "as of" (bookings start from 60 days before it to 120
        days after, nothing is created after it); defaults to the database's current date.
    :param on_step: called after each step with its name, its row count (-1 if none) and
        its duration in seconds, e.g. for a benchmark.
    :param bookings_per_profile: mean bookings per profile (e.g. 5 for 5M bookings on 1M
        profiles, to measure audiences at scale); each profile's number of bookings is
        scaled, so profiles without bookings keep none. ``None`` (the default) keeps the
        usual mix of about 1.6, row for row.
    :returns: rows inserted per crm table, keyed as in :data:`TABLES`.
    """
    if profiles < 1:
        raise ValueError(f"profiles must be at least 1, got {profiles}")
    if not 0 <= seed < MAX_SEED:
        raise ValueError(f"seed must be in [0, {MAX_SEED}), got {seed}")
    booking_scale, booking_id_stride = _booking_scale(bookings_per_profile)
    if anchor is None:
        row = conn.execute("SELECT CURRENT_DATE").fetchone()
        assert row is not None
        anchor = row[0]
    assert anchor is not None
    params = {
        "profiles": profiles,
        "products": max(50, profiles // 1000),
        "seed": seed,
        "anchor": anchor,
        "anchor_ts": datetime.combine(anchor, dt_time(0), tzinfo=UTC),
        "booking_scale": booking_scale,
        "booking_id_stride": booking_id_stride,
    }
    steps = load_steps(demo_sql_file(paths))
    counts: dict[str, int] = {}
    log.info("Generating demo data: %s profiles, seed %s, anchor %s", f"{profiles:,}", seed, anchor)
    started = time.perf_counter()
    with conn.transaction():
        for step in steps:
            step_started = time.perf_counter()
            statement = sql.SQL(step.sql)  # type: ignore[arg-type]  # a trusted file of this project
            cur = conn.execute(statement, params if step.has_params else None)
            elapsed = time.perf_counter() - step_started
            if step.name in TABLES:
                counts[step.name] = cur.rowcount
            if on_step is not None:
                on_step(step.name, cur.rowcount, elapsed)
            log.debug("demo data step %s: %s rows in %.2fs", step.name, cur.rowcount, elapsed)
    # The statement trigger on crm.consent writes one history row per inserted consent row.
    counts["consent_history"] = counts["consent"]
    log.info("Demo data generated in %.1fs: %s", time.perf_counter() - started, counts)
    return {table: counts[table] for table in TABLES}


def _booking_scale(bookings_per_profile: float | None) -> tuple[float | None, int]:
    """The factor on each profile's bookings and the id stride that keeps booking ids unique."""
    if bookings_per_profile is None:
        return None, 10
    if not 0 < bookings_per_profile <= MAX_BOOKINGS_PER_PROFILE:
        raise ValueError(
            f"bookings_per_profile must be in (0, {MAX_BOOKINGS_PER_PROFILE:g}], got {bookings_per_profile}"
        )
    scale = bookings_per_profile / BASE_BOOKINGS_PER_PROFILE
    # floor(8 * scale + draw) with draw < 1: at most this many bookings for one profile.
    most = math.floor(BASE_MAX_BOOKINGS * scale) + 1
    return scale, 10 ** len(str(most))
