"""Fill the campaign store with deterministic demo data, at any scale.

The data is generated inside PostgreSQL by ``include/sql/demo/generate.sql``: set-based
``INSERT … SELECT`` statements whose every choice is a hash of the row key under a seed, so
the same ``profiles``, ``seed`` and ``anchor`` always give the same rows. The file is split on
its ``-- step: <name>`` lines and the steps run in order in one transaction: the crm tables
and the campaign run tables are emptied first, and a failed run leaves the previous data.

It replaces only what it generated. Each generation leaves a stamp (``campaign.demo_data_stamp``:
when, with which parameters, how many rows per table); before emptying anything, the store
is checked (:func:`replacement_problems`): crm rows without a stamp, row counts that differ
from it, rows changed since, campaign runs older than it — anything it did not generate —
make it refuse unless forced. It never empties a table it does not own: a table of yours
that references its tables (``REFERENCES crm.profile``) makes it refuse even when forced if
that table holds rows, and where it is empty the owned tables are emptied with DELETE
instead of TRUNCATE (which PostgreSQL allows only with CASCADE).

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
from psycopg.types.json import Jsonb

from campaign_orchestrator.paths import ProjectPaths

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import date
    from pathlib import Path

    import psycopg

log = logging.getLogger(__name__)

TABLES = ("profile", "consent", "consent_history", "suppression", "plan", "product", "inventory", "subscription", "booking")
"""The crm tables the generator fills, in insert order; the keys of the returned counts."""

RUN_TABLES = (
    "campaign.step_report", "campaign.run_step", "campaign.run_wait", "campaign.message",
    "campaign.audience_member", "campaign.saved_audience_member", "campaign.saved_audience", "campaign.run",
)
"""Campaign history made on the data, emptied with it (children before parents)."""
VERSIONED = ("profile", "product", "inventory", "plan", "subscription", "booking")
"""crm tables whose rows count their updates (``version``, bumped by trigger): the stamp
keeps the sum of their versions, which any update since changes."""


class DemoDataRefused(RuntimeError):
    """The store holds data demo-data did not generate, or tables of someone else's that
    reference its tables; the message says what, and what to do."""

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
    force: bool = False,
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
    :param force: replace data demo-data did not generate too (never rows of tables it
        does not own: see the module docstring).
    :returns: rows inserted per crm table, keyed as in :data:`TABLES`.
    :raises DemoDataRefused: the store holds anything else (see :func:`replacement_problems`).
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
        # Locked first, so nothing is written between the check and the replacement.
        conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(
            sql.SQL(", ").join(_identifier(t) for t in _owned_tables())
        ))
        foreign = _foreign_references(conn)
        problems = _foreign_problems(conn, foreign)
        if not force:
            problems += replacement_problems(conn)
        if problems:
            raise DemoDataRefused(
                "campaigns store demo-data replaces only data it generated itself, and this store holds more:\n"
                + "\n".join(f"  - {p}" for p in problems)
                + "\nUse another store (the embedded one: unset AIRFLOW_CONN_CAMPAIGN_STORE), or, if nothing here "
                "matters, --force (it still never empties your own tables)."
            )
        _empty_owned_tables(conn, by_delete=bool(foreign))
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
        conn.execute("DELETE FROM campaign.demo_data_stamp")
        conn.execute(
            "INSERT INTO campaign.demo_data_stamp (profiles, seed, anchor, row_counts, version_sums) "
            "VALUES (%s, %s, %s, %s, %s)",
            (profiles, seed, anchor, Jsonb(counts), Jsonb(_version_sums(conn))),
        )
    log.info("Demo data generated in %.1fs: %s", time.perf_counter() - started, counts)
    return {table: counts[table] for table in TABLES}


def _owned_tables() -> list[str]:
    return [f"crm.{t}" for t in TABLES] + list(RUN_TABLES)


def _identifier(qualified: str) -> sql.Identifier:
    return sql.Identifier(*qualified.split("."))


def _foreign_references(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    """(table, constraint, referenced table) of foreign keys from tables demo-data does not
    own to tables it does."""
    owned = _owned_tables()
    return [
        (str(t), str(c), str(r))
        for t, c, r in conn.execute(
            """
            SELECT c.conrelid::regclass::text, c.conname::text, c.confrelid::regclass::text
            FROM pg_constraint AS c
            WHERE c.contype = 'f' AND c.confrelid = ANY(%(owned)s::regclass[])
              AND NOT c.conrelid = ANY(%(owned)s::regclass[])
            ORDER BY 1, 2
            """,
            {"owned": owned},
        )
    ]


def _foreign_problems(conn: psycopg.Connection, foreign: list[tuple[str, str, str]]) -> list[str]:
    problems = []
    for table, constraint, referenced in foreign:
        # A regclass name from the catalog, quoted as PostgreSQL prints it: safe to splice.
        rows = conn.execute(sql.SQL("SELECT count(*) FROM (SELECT FROM {} LIMIT 1000000) AS t").format(
            sql.SQL(table)  # type: ignore[arg-type]
        )).fetchone()[0]
        if rows:
            problems.append(
                f"{table} references {referenced} ({constraint}) and holds {rows:,} rows: replacing "
                f"{referenced} would delete or orphan them (demo-data never touches tables it does not own; "
                "this refusal holds even with --force)"
            )
    return problems


def replacement_problems(conn: psycopg.Connection) -> list[str]:
    """What in the store demo-data did not generate (empty when it may replace it freely)."""
    counts = {
        table: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(_identifier(f"crm.{table}"))).fetchone()[0]
        for table in TABLES
    }
    stamp = conn.execute(
        "SELECT generated_at, row_counts, version_sums FROM campaign.demo_data_stamp "
        "ORDER BY generated_at DESC LIMIT 1"
    ).fetchone()
    runs_before = conn.execute(
        "SELECT count(*) FROM campaign.run WHERE %s::timestamptz IS NULL OR started_at < %s",
        (stamp[0] if stamp else None, stamp[0] if stamp else None),
    ).fetchone()[0]
    problems: list[str] = []
    if not any(counts.values()) and not runs_before:
        return problems  # nothing to lose
    if stamp is None:
        filled = {t: n for t, n in counts.items() if n}
        if filled:
            problems.append(
                "it was not filled by demo-data: " + ", ".join(f"crm.{t} has {n:,} rows" for t, n in filled.items())
            )
        if runs_before:
            problems.append(f"campaign.run holds {runs_before:,} campaign runs (the campaign history)")
        return problems
    generated_at, generated, version_sums = stamp
    for table in TABLES:
        # Fewer rows than generated: some were deleted, and replacing them loses nothing.
        if counts[table] > generated.get(table, 0):
            problems.append(
                f"crm.{table} has {counts[table]:,} rows; demo-data generated {generated.get(table, 0):,} "
                f"at {generated_at:%Y-%m-%d %H:%M}"
            )
    for table, total in _version_sums(conn).items():
        if counts[table] == generated.get(table, 0) and total != version_sums.get(table):
            problems.append(f"rows of crm.{table} were changed since demo-data generated them")
    consent_changes = conn.execute(
        "SELECT count(*) FROM crm.consent WHERE updated_at > %s", (generated_at,)
    ).fetchone()[0]
    if consent_changes:
        problems.append(f"{consent_changes:,} consent rows changed since demo-data generated them (opt-outs?)")
    if runs_before:
        problems.append(f"campaign.run holds {runs_before:,} runs older than the demo data")
    return problems


def stamp_as_generated(conn: psycopg.Connection) -> None:
    """Record the store's crm data as what the demo made: for the demo's own steps after the
    generator (``make demo`` loading its shipped ingestion sources), so a later demo-data
    run may replace them. Only on a store demo-data stamped."""
    counts = {
        table: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(_identifier(f"crm.{table}"))).fetchone()[0]
        for table in TABLES
    }
    conn.execute(
        "UPDATE campaign.demo_data_stamp SET row_counts = %s, version_sums = %s",
        (Jsonb(counts), Jsonb(_version_sums(conn))),
    )


def _version_sums(conn: psycopg.Connection) -> dict[str, int]:
    return {
        table: int(conn.execute(
            sql.SQL("SELECT coalesce(sum(version), 0) FROM {}").format(_identifier(f"crm.{table}"))
        ).fetchone()[0])
        for table in VERSIONED
    }


def _empty_owned_tables(conn: psycopg.Connection, by_delete: bool) -> None:
    """Empty the tables demo-data owns, and only those. consent_history ids and run keys
    start again from 1, so two runs with the same parameters leave the same rows."""
    owned = [_identifier(t) for t in [*RUN_TABLES, *(f"crm.{t}" for t in reversed(TABLES))]]
    if not by_delete:
        conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY").format(sql.SQL(", ").join(owned)))
        return
    # TRUNCATE of a referenced table needs CASCADE, even when the referencing tables are
    # empty (checked): DELETE, children first, then restart the two sequences.
    conn.execute("SET CONSTRAINTS ALL DEFERRED")
    for table in owned:
        conn.execute(sql.SQL("DELETE FROM {}").format(table))
    for table, column in (("crm.consent_history", "history_id"), ("campaign.run", "run_key")):
        conn.execute("SELECT setval(pg_get_serial_sequence(%s, %s), 1, false)", (table, column))


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
