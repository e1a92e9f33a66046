"""An ingestion source: a YAML file under ``dags/ingestion/`` becomes one Airflow DAG that loads
files (CSV, Parquet, JSON lines) or a SQL query's rows into one table of the campaign store.

Every source is validated against :class:`IngestionConfig` before its DAG is built; the
loader (``config/ingestion_loader.py``) reports errors as ``file:line: field: message`` like
campaign files.
"""

from __future__ import annotations

import codecs
import difflib
import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from campaign_orchestrator.config.base import IDENTIFIER, Duration, ListOf, StrictModel, parse_duration
from campaign_orchestrator.config.schedule import SCHEDULE_PRESETS, check_cron

TABLE = r"^[a-z_][a-z0-9_]{0,62}\.[a-z_][a-z0-9_]{0,62}$"
COLUMN = r"^[a-z_][a-z0-9_]{0,62}$"
_COLUMN = re.compile(COLUMN)
_TYPE = re.compile(
    r"^(text|bigint|integer|smallint|boolean|date|timestamptz|timestamp|double precision|real|uuid|jsonb"
    r"|numeric(\(\d{1,3}(,\s*\d{1,3})?\))?|varchar\(\d{1,5}\)|char\(\d{1,5}\))$"
)
COLUMN_TYPES = (
    "text", "bigint", "integer", "smallint", "boolean", "date", "timestamptz", "timestamp",
    "double precision", "real", "uuid", "jsonb", "numeric", "numeric(p,s)", "varchar(n)", "char(n)",
)
RESERVED_SCHEMAS = ("campaign", "ingest", "public", "information_schema")
"""Schemas a source may not load into: the orchestrator's own and PostgreSQL's."""

PRESETS: dict[str, dict[str, Any]] = {
    # Consent: one row per profile and channel; the record's own time decides which state is
    # newer, so an opt-out recorded by the unsubscribe endpoint survives an older export.
    "crm.consent": {"key": ["profile_id", "channel"], "version": "updated_at"},
    "crm.suppression": {"key": ["channel", "address"]},
}
"""Business keys (and versions) of the store's own tables, used when a source gives none."""


class FileLanded(StrictModel):
    """Start a load when a new file lands: a deferred sensor lists the path every ``poll``."""

    poll: Duration = Field(default=timedelta(seconds=30), description="How often the storage is listed, e.g. '30s'")

    @field_validator("poll", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        value = parse_duration(value)
        if value < timedelta(seconds=1):
            raise ValueError("poll must be at least 1s")
        return value


class IngestionSchedule(StrictModel):
    """When the load runs: a cron expression or preset, ``manual``, Airflow Assets, or when a
    file lands (``on_file``)."""

    cron: str | None = None
    manual: bool = False
    assets: list[str] = Field(default_factory=list, description="Run when these Airflow Assets (URIs) are updated")
    on_file: FileLanded | None = Field(default=None, description="Run when a new file lands under the source path")

    @model_validator(mode="before")
    @classmethod
    def _from_shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            word = value.strip()
            if word == "manual":
                return {"manual": True}
            if word == "on_file":
                return {"on_file": {}}
            return {"cron": value}
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> IngestionSchedule:
        chosen = [n for n, v in (("cron", self.cron), ("assets", self.assets), ("on_file", self.on_file)) if v]
        if self.manual:
            chosen.append("manual")
        if len(chosen) != 1:
            raise ValueError(
                "give exactly one of: a cron expression ('0 * * * *'), a preset "
                f"({', '.join(SCHEDULE_PRESETS)}), 'manual', {{assets: [uri, ...]}} or "
                "'on_file' / {on_file: {poll: 30s}} (when a new file lands)"
            )
        return self

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return None if value is None else check_cron(value)

    @field_validator("assets")
    @classmethod
    def _asset_uris(cls, value: list[str]) -> list[str]:
        for uri in value:
            if not re.match(r"^\S+$", uri) or uri.startswith("airflow://"):
                raise ValueError(f"{uri!r} is not an Asset URI (no spaces; the airflow:// scheme is Airflow's own), "
                                 "e.g. s3://landing/bookings/ or campaign-store://crm/booking")
        return value


class _FileSource(StrictModel):
    path: str = Field(
        description="Where the files land: s3://bucket/prefix/*.csv (aws connection), file:///abs/*.csv, or a "
        "path relative to the project, e.g. include/data/bookings*.csv; * and ? match within a name"
    )
    conn_id: str | None = Field(default=None, description="Airflow connection for s3:// (default aws_default)")
    compression: Literal["infer", "gzip", "none"] = Field(
        default="infer", description="infer: gzip when the name ends in .gz"
    )

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        value = value.strip()
        scheme = value.split("://", 1)[0] if "://" in value else None
        if scheme not in (None, "s3", "file"):
            raise ValueError(f"{value!r}: only s3://, file:// and local paths are supported")
        name = value.rstrip("/").rsplit("/", 1)[-1]
        if not name or name in (".", ".."):
            raise ValueError(f"{value!r} must end in a file name or pattern, e.g. .../bookings_*.csv")
        if any(ch in value.rsplit("/", 1)[0] for ch in "*?["):
            raise ValueError(f"{value!r}: patterns (* ? [) are allowed in the file name only")
        return value

    @property
    def is_s3(self) -> bool:
        return self.path.startswith("s3://")


def _encoding(value: str) -> str:
    try:
        codecs.lookup(value)
    except LookupError:
        raise ValueError(f"unknown encoding {value!r}; e.g. utf-8, latin-1, cp1252") from None
    return value


class CsvSource(_FileSource):
    """Delimited text files."""

    kind: Literal["csv"]
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    quote: str = Field(default='"', min_length=1, max_length=1)
    header: bool = Field(default=True, description="The first line names the columns")
    columns: list[str] = Field(default_factory=list, description="Column names when the file has no header")
    encoding: str = "utf-8"
    null: str = Field(default="", description="The text of a missing value (unquoted)")

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        return _encoding(value)

    @model_validator(mode="after")
    def _columns(self) -> CsvSource:
        if not self.header and not self.columns:
            raise ValueError("columns: a file without a header needs its column names: columns: [id, name, ...]")
        if self.delimiter == self.quote:
            raise ValueError("delimiter: the delimiter and the quote must differ")
        return self


class JsonLinesSource(_FileSource):
    """One JSON object per line (``.jsonl`` / ``.ndjson``)."""

    kind: Literal["jsonl"]
    encoding: str = "utf-8"

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        return _encoding(value)


class ParquetSource(_FileSource):
    """Parquet files, read in record batches."""

    kind: Literal["parquet"]
    batch_rows: int = Field(default=65_536, ge=1_000, le=1_000_000, description="Rows per record batch read")


class Watermark(StrictModel):
    """Incremental SQL loads: the largest ``column`` value loaded is kept per source and bound as
    ``%(watermark)s`` in the next run's query."""

    column: str = Field(pattern=COLUMN)
    initial: str = Field(description="The watermark of the first run, e.g. '1970-01-01'")

    @field_validator("initial", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return value.isoformat() if hasattr(value, "isoformat") else str(value) if isinstance(value, int) else value


class SqlSource(StrictModel):
    """The rows of a query on another database, read with a server-side cursor."""

    kind: Literal["sql"]
    conn_id: str = Field(description="Airflow connection of the source database (postgres, or any DB-API hook)")
    query: str = Field(pattern=r"^[A-Za-z0-9_./-]+\.sql$", description="SQL file relative to include/sql/")
    watermark: Watermark | None = None
    fetch_rows: int = Field(default=10_000, ge=100, le=1_000_000, description="Rows fetched per round trip")


def _source_kind(value: Any) -> str | None:
    return value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)


Source = Annotated[
    Annotated[CsvSource, Tag("csv")]
    | Annotated[JsonLinesSource, Tag("jsonl")]
    | Annotated[ParquetSource, Tag("parquet")]
    | Annotated[SqlSource, Tag("sql")],
    Discriminator(_source_kind),
]
SOURCE_KINDS = {"csv": CsvSource, "jsonl": JsonLinesSource, "parquet": ParquetSource, "sql": SqlSource}


class EntityDeclaration(StrictModel):
    """Make the target table an entity of the catalog, for audience blocks."""

    name: str = Field(pattern=COLUMN, description="The entity name audience blocks use (from: <name>)")
    key: str | None = Field(default=None, pattern=COLUMN, description="default: the single business key")
    links: dict[str, str] = Field(default_factory=dict, description="other entity -> column of this table")


class Target(StrictModel):
    """The store table a source loads, its business key and version."""

    table: str = Field(pattern=TABLE, description="schema.table, e.g. crm.booking")
    key: Annotated[list[str], ListOf] = Field(default_factory=list, description="Business key column(s)")
    version: str | None = Field(
        default=None, pattern=COLUMN,
        description="Column ordering versions of a record (a number or a time, e.g. updated_at): an older "
        "record never overwrites a newer one; without it the latest load wins",
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Column types (text, bigint, numeric(10,2), timestamptz, ...): the definition of a table "
        "the source creates, or the columns expected of an existing one",
    )
    create: bool = Field(default=False, description="Create the table (and add declared columns) when missing")
    rename: dict[str, str] = Field(default_factory=dict, description="source column -> target column")
    ignore_columns: list[str] = Field(default_factory=list, description="Source columns never loaded (no drift)")
    set: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Values for target columns the source does not have, e.g. {source: crm}"
    )
    entity: EntityDeclaration | None = None

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, value: Any) -> Any:
        if isinstance(value, dict) and value.get("table") in PRESETS:
            preset = PRESETS[value["table"]]
            value = {**{k: v for k, v in preset.items() if k not in value}, **value}
        return value

    @field_validator("table")
    @classmethod
    def _schema(cls, value: str) -> str:
        schema = value.split(".", 1)[0]
        if schema in RESERVED_SCHEMAS or schema.startswith("pg_"):
            raise ValueError(f"{value!r}: schema {schema!r} belongs to the orchestrator or PostgreSQL; load into crm.* "
                             "or a schema of your own")
        return value

    @field_validator("columns")
    @classmethod
    def _types(cls, value: dict[str, str]) -> dict[str, str]:
        out = {}
        for column, type_name in value.items():
            if not _COLUMN.match(column):
                raise ValueError(f"{column!r} is not a column name (lower-case letters, digits and _)")
            normal = re.sub(r"\s+", " ", str(type_name).strip().lower())
            if not _TYPE.match(normal):
                hint = difflib.get_close_matches(normal, COLUMN_TYPES, n=1)
                raise ValueError(f"{column}: unknown type {type_name!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
                                 + f" Valid: {', '.join(COLUMN_TYPES)}")
            out[column] = normal
        return out

    @field_validator("key", "ignore_columns")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for column in value:
            if not _COLUMN.match(column):
                raise ValueError(f"{column!r} is not a column name (lower-case letters, digits and _)")
        if len(set(value)) != len(value):
            raise ValueError("a column is listed twice")
        return value

    @field_validator("rename")
    @classmethod
    def _renames(cls, value: dict[str, str]) -> dict[str, str]:
        for source, target in value.items():
            if not _COLUMN.match(target):
                raise ValueError(f"{source}: {target!r} is not a column name (lower-case letters, digits and _)")
        if len(set(value.values())) != len(value):
            raise ValueError("two source columns are renamed to the same target column")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Target:
        if not self.key:
            raise ValueError("key: give the business key column(s), e.g. key: booking_id or key: [profile_id, channel]")
        if self.table == "crm.consent" and self.version != "updated_at":
            raise ValueError("version: consent loads compare each record's updated_at with crm.consent.updated_at; "
                             "write version: updated_at")
        if self.create and not self.columns:
            raise ValueError("columns: a table the source creates needs its columns and types")
        if self.columns:
            missing = [c for c in [*self.key, *([self.version] if self.version else [])] if c not in self.columns]
            if missing:
                raise ValueError(f"columns: the key/version column {missing[0]!r} is not declared")
        if self.entity is not None and self.entity.key is None and len(self.key) != 1:
            raise ValueError("entity.key: the table has a composite key; name the entity's single key column")
        return self

    @property
    def schema(self) -> str:
        return self.table.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.table.split(".", 1)[1]


class Deletes(StrictModel):
    """How keys leave the target: a tombstone column, or a full snapshot."""

    tombstone: str | None = Field(
        default=None, pattern=COLUMN, description="Source column whose true value (true/t/1/yes/y) deletes the key"
    )
    snapshot: bool = Field(default=False, description="Each file is the whole table: keys absent from it are deleted")
    max_delete_share: float = Field(
        default=0.1, gt=0, le=1, description="A snapshot deleting more than this share of the table fails the load"
    )

    @model_validator(mode="after")
    def _one(self) -> Deletes:
        if (self.tombstone is None) == (not self.snapshot):
            raise ValueError("deletes: give either tombstone: <column> or snapshot: true")
        return self


class DriftPolicy(StrictModel):
    """What a load does when the source's columns change upstream."""

    new_columns: Literal["fail", "warn"] = Field(
        default="fail", description="A source column the target lacks: fail, or load the known columns and warn"
    )
    missing_columns: Literal["fail", "warn"] = Field(
        default="fail",
        description="An expected column absent from the source: fail, or load the others (that column keeps its "
        "value) and warn",
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"new_columns": value, "missing_columns": value} if isinstance(value, str) else value


class IngestionConfig(StrictModel):
    """One source: a YAML file under ``dags/ingestion/`` becomes the Airflow DAG ``ingest_<id>``."""

    id: str = Field(pattern=IDENTIFIER, description="Source id; the DAG is ingest_<id>")
    description: str = ""
    owner: str = "ingestion"
    tags: list[str] = Field(default_factory=list)
    schedule: IngestionSchedule
    source: Source
    target: Target
    deletes: Deletes | None = None
    on_drift: DriftPolicy = DriftPolicy()
    max_reject_share: float = Field(
        default=0.01, ge=0, le=1, description="A load rejecting more than this share of its rows fails, loading nothing"
    )
    data_as_of: str | None = Field(
        default=None, pattern=COLUMN,
        description="Column with the time each record is as of; the load is as of its latest value (default: "
        "when the file landed, or when the query ran)",
    )
    retries: int = Field(default=2, ge=0, le=20)
    retry_delay: Duration = timedelta(minutes=5)

    @field_validator("retry_delay", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)

    @model_validator(mode="after")
    def _consistent(self) -> IngestionConfig:
        if self.schedule.on_file is not None and isinstance(self.source, SqlSource):
            raise ValueError("schedule.on_file: a SQL source has no files; schedule it with cron or assets")
        if self.deletes is not None and self.target.table == "crm.consent":
            raise ValueError("deletes: consent is never deleted by a load; send status opted_out or unknown instead")
        if self.deletes is not None and self.deletes.snapshot and isinstance(self.source, SqlSource) \
                and self.source.watermark is not None:
            raise ValueError("deletes.snapshot: an incremental (watermark) query is not a snapshot of the table")
        return self

    @property
    def dag_id(self) -> str:
        return dag_id_of(self.id)

    @property
    def is_files(self) -> bool:
        return not isinstance(self.source, SqlSource)


def dag_id_of(source_id: str) -> str:
    """The DAG of a source: ``ingest_<id>``, so a source never takes a campaign's DAG id."""
    return f"ingest_{source_id}"


__all__ = [
    "CsvSource", "Deletes", "DriftPolicy", "EntityDeclaration", "IngestionConfig", "IngestionSchedule",
    "JsonLinesSource", "ParquetSource", "SqlSource", "Target", "Watermark", "dag_id_of",
]
