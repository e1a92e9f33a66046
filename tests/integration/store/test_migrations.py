"""Migrations: applied once each, in order; an edited migration is refused, never re-applied."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from campaign_orchestrator.store.migrations import MigrationError, migrate

pytestmark = pytest.mark.integration


@pytest.fixture
def scratch(store_dsn: str):
    with psycopg.connect(store_dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS scratch_migrations CASCADE")
        saved = conn.execute("SELECT version, name, checksum FROM public.campaign_schema_migration").fetchall()
        conn.execute("DELETE FROM public.campaign_schema_migration")  # this folder's versions start afresh
        try:
            yield conn
        finally:
            conn.execute("DROP SCHEMA IF EXISTS scratch_migrations CASCADE")
            conn.execute("DELETE FROM public.campaign_schema_migration")
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO public.campaign_schema_migration (version, name, checksum) VALUES (%s, %s, %s)", saved
                )


def test_each_migration_applies_once_and_an_edited_one_is_refused(scratch, tmp_path: Path) -> None:
    first = tmp_path / "0001_scratch.sql"
    first.write_text("CREATE SCHEMA scratch_migrations; CREATE TABLE scratch_migrations.t (a int);")
    assert [m.name for m in migrate(scratch, tmp_path)] == ["scratch"]
    assert migrate(scratch, tmp_path) == []  # already applied: nothing again
    (tmp_path / "0002_more.sql").write_text("ALTER TABLE scratch_migrations.t ADD COLUMN b int;")
    assert [m.name for m in migrate(scratch, tmp_path)] == ["more"]

    first.write_text("CREATE SCHEMA scratch_migrations; CREATE TABLE scratch_migrations.t (a bigint);")
    with pytest.raises(MigrationError, match=r"0001_scratch\.sql was changed after it was applied; add a new migration"):
        migrate(scratch, tmp_path)
    columns = scratch.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'scratch_migrations' "
        "ORDER BY ordinal_position"
    ).fetchall()
    assert columns == [("a", "integer"), ("b", "integer")]  # the edit was not applied
