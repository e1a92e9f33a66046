"""Which delivered columns load into which target columns, and what drift upstream does."""

from __future__ import annotations

import textwrap
from datetime import timedelta

import pytest
import yaml

from campaign_orchestrator.config.ingestion import IngestionConfig
from campaign_orchestrator.ingestion.freshness import format_span
from campaign_orchestrator.ingestion.schema import (
    Column,
    DriftError,
    SchemaError,
    TableShape,
    canonical_type,
    plan_columns,
)

PROFILE = TableShape("crm.profile", {
    name: Column(name, kind, not_null, has_default, False, kind == "text")
    for name, kind, not_null, has_default in [
        ("profile_id", "bigint", True, False), ("email", "text", False, False), ("first_name", "text", False, False),
        ("locale", "text", True, True), ("updated_at", "timestamp with time zone", True, True),
    ]
}, (frozenset({"profile_id"}),))


def config(extra: str = "") -> IngestionConfig:
    text = textwrap.dedent("""
        id: profiles
        schedule: manual
        source: {kind: csv, path: include/data/p.csv}
        target: {table: crm.profile, key: profile_id, version: updated_at, rename: {Mail: email}}
    """) + textwrap.dedent(extra)
    return IngestionConfig.model_validate(yaml.safe_load(text))


def test_columns_load_by_name_or_rename_and_the_rest_is_staged_unused() -> None:
    plan = plan_columns(config("target: {table: crm.profile, key: profile_id, version: updated_at, rename: "
                               "{Mail: email}, ignore_columns: [note]}\n"),
                        PROFILE, ["profile_id", "Mail", "note", "updated_at"], None)
    assert plan.loads == {"profile_id": "profile_id", "email": "Mail", "updated_at": "updated_at"}
    assert plan.used == ["profile_id", "Mail", "updated_at"] and plan.staged == ["profile_id", "Mail", "note",
                                                                                  "updated_at"]
    assert str(plan.staged_for("email").as_string(None)) == '"c_2"'
    assert plan.warnings == []


def test_a_new_column_fails_or_warns_by_policy() -> None:
    delivered = ["profile_id", "first_nme", "updated_at"]
    with pytest.raises(DriftError, match=r"new column\(s\) upstream: 'first_nme' not in crm.profile \(did you mean "
                                         r"'first_name'\?\)"):
        plan_columns(config(), PROFILE, delivered, None)
    plan = plan_columns(config("on_drift: warn\n"), PROFILE, delivered, None)
    assert plan.loads == {"profile_id": "profile_id", "updated_at": "updated_at"}
    assert plan.warnings == ["new column(s) upstream: 'first_nme' not in crm.profile (did you mean 'first_name'?); "
                             "not loaded (on_drift.new_columns: warn)"]


def test_a_column_the_last_load_had_is_missing() -> None:
    with pytest.raises(DriftError, match=r"removed upstream: 'Mail' \(delivered by the last load\)"):
        plan_columns(config(), PROFILE, ["profile_id", "updated_at"], ["profile_id", "Mail", "updated_at"])
    plan = plan_columns(config("on_drift: {missing_columns: warn}\n"), PROFILE, ["profile_id", "updated_at"],
                        ["profile_id", "Mail", "updated_at"])
    assert "email" not in plan.loads and "keeps their values" in plan.warnings[0]


def test_the_key_the_version_and_required_columns_must_be_delivered() -> None:
    with pytest.raises(SchemaError, match="the source has no column 'updated_at' for crm.profile.updated_at"):
        plan_columns(config(), PROFILE, ["profile_id", "Mail"], None)
    required = TableShape("crm.profile", {**PROFILE.columns, "email": Column("email", "text", True, False, False,
                                                                              True)}, PROFILE.unique_keys)
    with pytest.raises(SchemaError, match=r"crm.profile.email is required \(NOT NULL, no default\)"):
        plan_columns(config(), required, ["profile_id", "updated_at"], None)
    plan = plan_columns(config("target: {table: crm.profile, key: profile_id, version: updated_at, "
                               "set: {email: nobody@example.com}}\n"), required, ["profile_id", "updated_at"], None)
    assert plan.constants == {"email": "nobody@example.com"}


def test_json_lines_load_only_the_keys_some_record_had() -> None:
    plan = plan_columns(config(), PROFILE, ["profile_id", "Mail", "first_name", "updated_at"], None,
                        seen={"profile_id", "updated_at", "first_name"})
    assert set(plan.loads) == {"profile_id", "first_name", "updated_at"}


def test_declared_types_as_the_store_writes_them_and_spans() -> None:
    assert [canonical_type(t) for t in ("timestamptz", "varchar(12)", "char(2)", "numeric(10, 2)", "bigint")] == [
        "timestamp with time zone", "character varying(12)", "character(2)", "numeric(10,2)", "bigint"]
    assert [format_span(timedelta(seconds=s)) for s in (0, 42, 95, 3600 * 5 + 62, 86400 * 2 + 7200 + 5)] == [
        "0s", "42s", "1m 35s", "5h 1m", "2d 2h"]
