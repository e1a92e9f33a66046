"""Apply the versioned SQL files in include/sql/migrations/ once each, in order.

Safe to call from many tasks at once: a transaction-level advisory lock serializes runners,
and each file is applied with its bookkeeping row in one transaction. A migration that was
edited after being applied is refused (its checksum changed), never applied twice.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# An arbitrary constant: the advisory-lock key that serializes migration runners.
_LOCK_KEY = 726_374_001


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


class MigrationError(RuntimeError):
    pass


def discover(folder: Path) -> list[Migration]:
    migrations = []
    for path in sorted(folder.glob("*.sql")):
        match = _FILE.match(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files are named NNNN_description.sql")
        migrations.append(Migration(int(match.group(1)), match.group(2), path))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"{folder}: two migration files share a version number")
    return migrations


def migrate(conn: psycopg.Connection, folder: Path) -> list[Migration]:
    """Apply pending migrations; return those applied by this call."""
    migrations = discover(folder)
    applied_now: list[Migration] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(
            """
            CREATE TABLE IF NOT EXISTS public.campaign_schema_migration (
                version     integer PRIMARY KEY,
                name        text NOT NULL,
                checksum    text NOT NULL,
                applied_at  timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        done = {
            version: checksum
            for version, checksum in conn.execute(
                "SELECT version, checksum FROM public.campaign_schema_migration"
            ).fetchall()
        }
        for migration in migrations:
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"{migration.path} was changed after it was applied; add a new migration instead"
                    )
                continue
            log.info("Applying migration %s", migration.path.name)
            conn.execute(migration.sql)
            conn.execute(
                "INSERT INTO public.campaign_schema_migration (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
            applied_now.append(migration)
    return applied_now
