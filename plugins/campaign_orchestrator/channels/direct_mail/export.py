"""Direct mail: one extract of a step's postal addresses per run, with a manifest.

A direct-mail step sends nothing itself: it hands a printer or mail house one file per
format (CSV, Parquet) of the step's sendable ledger rows, joined to their current postal
address and personalization fields, plus ``<step>.manifest.json`` naming the files, their
row count, sizes and SHA-256 checksums. Everything goes under::

    <destination>/<campaign id>/<dag run id, made path-safe>/<step id>.<csv|parquet|manifest.json>

Memory stays flat whatever the audience: rows come from a server-side cursor
:data:`BATCH_ROWS` at a time and are written to every format as they arrive (CSV with the
:mod:`csv` module, Parquet as one record batch per chunk); checksums are computed on the
way out, never by reading a file back.

Idempotent and safe to retry:

- file names are deterministic, so a retried or cleared task overwrites the same objects;
  rows already marked ``sent`` by an earlier attempt are exported again, in the same order,
  so the files of a re-export are byte-identical;
- a reader never sees half a file. On a local or mounted path each file is written under a
  temporary name in the same folder and renamed (atomic on POSIX). On S3 an object only
  becomes visible when its upload completes (one ``PutObject``, or the
  ``CompleteMultipartUpload`` of a large file), so it is written in place; a failed upload
  is aborted, never completed with what was written so far;
- the manifest is written last: its presence means the files next to it are complete;
- only then are the exported rows marked ``sent`` (``provider_message_id`` = the manifest
  URL), in the transaction that read them, under a transaction-level advisory lock that
  keeps a zombie attempt from exporting at the same time. A crash before that commit
  leaves the rows ``pending`` and the next attempt exports them again.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
import logging
import re
import secrets
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from psycopg import sql

from campaign_orchestrator.channels.registry import CHANNELS
from campaign_orchestrator.run.targeting import channel_params

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import psycopg
    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath

    from campaign_orchestrator.config.channels import DirectMailStep

log = logging.getLogger(__name__)

BATCH_ROWS = 5000
KEY_COLUMNS = ("profile_id", "entity_key")
POSTAL_COLUMNS = ("address_line1", "address_line2", "postal_code", "city", "region", "country_code")
EXTENSIONS = {"csv": "csv", "parquet": "parquet"}
MANIFEST_VERSION = 1
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

# A marketing step re-checks consent and suppression right before the export, with the
# conditions include/sql/orchestrator/claim_messages.sql applies at send time; rows already
# exported ('sent') are left alone.
EXCLUDE_WITHDRAWN = """
UPDATE campaign.message m
SET status = 'excluded', reason = late.reason, updated_at = now()
FROM (
    SELECT m.profile_id, m.entity_key,
           CASE
               WHEN %(needs_consent)s AND c.status = 'opted_out' THEN 'consent_withdrawn'
               WHEN %(needs_opt_in)s AND c.status IS DISTINCT FROM 'opted_in' THEN 'consent_withdrawn'
               WHEN EXISTS (
                   SELECT 1 FROM crm.suppression s
                   WHERE s.channel = %(suppression_channel)s AND s.address = {normalized}
                     AND (%(needs_consent)s OR s.reason IN ('hard_bounce', 'complaint', 'invalid'))
               ) THEN 'suppressed_during_run'
           END AS reason
    FROM campaign.message m
    JOIN crm.profile p ON p.profile_id = m.profile_id
    LEFT JOIN crm.consent c ON c.profile_id = m.profile_id AND c.channel = %(consent_channel)s
    WHERE m.run_key = %(run_key)s AND m.step_id = %(step_id)s AND m.status = 'pending'
) AS late
WHERE m.run_key = %(run_key)s AND m.step_id = %(step_id)s AND m.status = 'pending'
  AND m.profile_id = late.profile_id AND m.entity_key = late.entity_key AND late.reason IS NOT NULL
RETURNING m.reason
"""

EXPORT_ROWS = """
SELECT {columns}
FROM campaign.message m
JOIN crm.profile p ON p.profile_id = m.profile_id
WHERE m.run_key = %(run_key)s AND m.step_id = %(step_id)s
  AND m.status IN ('pending', 'sent') AND m.seq IS NOT NULL
ORDER BY m.seq
"""

MARK_SENT = """
UPDATE campaign.message
SET status = 'sent', reason = NULL, error = NULL, provider_message_id = %(manifest)s,
    attempts = attempts + 1, sent_at = now(), updated_at = now()
WHERE run_key = %(run_key)s AND step_id = %(step_id)s AND status = 'pending' AND seq IS NOT NULL
"""


class ExportConfigError(ValueError):
    """The step asks for something the store cannot give (a field crm.profile lacks)."""


def safe(value: str) -> str:
    """``value`` as one path segment: ``[A-Za-z0-9._-]`` only. When characters had to be
    replaced, a short hash of the original keeps two run ids from sharing a folder."""
    cleaned = _UNSAFE.sub("_", value).strip(".") or "_"
    if cleaned == value:
        return value
    return f"{cleaned}-{hashlib.sha256(value.encode()).hexdigest()[:8]}"


def extract_columns(step: DirectMailStep) -> list[str]:
    """Key, postal and personalization columns of the extract, in order, each once."""
    columns = [*KEY_COLUMNS, *POSTAL_COLUMNS]
    columns += [name for name in dict.fromkeys(step.fields) if name not in columns]
    return columns


def output_path(step: DirectMailStep, campaign_id: str, dag_run_id: str, suffix: str) -> ObjectStoragePath:
    """Where the extract's ``<step id>.<suffix>`` goes; s3 through the step's aws connection."""
    from airflow.sdk import ObjectStoragePath

    url = f"{step.destination}/{safe(campaign_id)}/{safe(dag_run_id)}/{step.id}.{suffix}"
    conn_id = (step.connection_id or "aws_default") if url.startswith("s3://") else None
    return ObjectStoragePath(url, conn_id=conn_id)


def url_of(path: ObjectStoragePath) -> str:
    """The path as a plain URL, without the connection id ObjectStoragePath puts in str()."""
    return f"{path.protocol}://{path.path}"


def check_fields(conn: psycopg.Connection, fields: list[str]) -> None:
    """Raise :class:`ExportConfigError` naming any ``fields`` that crm.profile lacks."""
    columns = {
        row[0]
        for row in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'crm' AND table_name = 'profile'"
        )
    }
    unknown = [name for name in fields if name not in columns]
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(columns), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ExportConfigError(
            f"fields {', '.join(unknown)} are not columns of crm.profile{hint}; columns: {', '.join(sorted(columns))}"
        )


def exclude_withdrawn(conn: psycopg.Connection, run_key: int, step: DirectMailStep) -> dict[str, int]:
    """Exclude pending rows whose consent was withdrawn, or whose address was suppressed,
    since targeting; return the count per reason."""
    statement = sql.SQL(EXCLUDE_WITHDRAWN).format(  # type: ignore[arg-type]  # this module's own SQL
        normalized=sql.SQL(CHANNELS[step.channel].normalized_sql)  # type: ignore[arg-type]
    )
    with conn.transaction():
        rows = conn.execute(statement, {"run_key": run_key, "step_id": step.id, **channel_params(step)}).fetchall()
    counts: dict[str, int] = {}
    for (reason,) in rows:
        counts[reason] = counts.get(reason, 0) + 1
    return counts


def export_lock_key(run_key: int, step_id: str) -> int:
    digest = hashlib.blake2b(f"{run_key}:{step_id}:export".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def export_direct_mail(
    conn: psycopg.Connection,
    run_key: int,
    campaign_id: str,
    dag_run_id: str,
    step: DirectMailStep,
    connect: Callable[[], psycopg.Connection],
) -> dict[str, Any]:
    """Write the step's extract in each of ``step.formats`` and its manifest, then mark the
    exported rows sent; return the manifest.

    :param conn: a store connection for the checks before the export.
    :param run_key: the run.
    :param campaign_id: the campaign, the first folder under the destination.
    :param dag_run_id: the Airflow run id, the second folder (made path-safe).
    :param step: the direct-mail step: destination, formats, fields, connection_id.
    :param connect: opens the connection the rows are streamed from (a server-side cursor
        in a transaction of its own, which also marks the rows).
    """
    columns = extract_columns(step)
    check_fields(conn, columns[len(KEY_COLUMNS) :])
    formats = list(dict.fromkeys(step.formats))
    files = {fmt: output_path(step, campaign_id, dag_run_id, EXTENSIONS[fmt]) for fmt in formats}
    manifest_path = output_path(step, campaign_id, dag_run_id, "manifest.json")
    manifest_url = url_of(manifest_path)
    select = sql.SQL(EXPORT_ROWS).format(  # type: ignore[arg-type]  # this module's own SQL
        columns=sql.SQL(", ").join(
            sql.SQL("m.{}").format(sql.Identifier(c)) if c in KEY_COLUMNS else sql.SQL("p.{}").format(sql.Identifier(c))
            for c in columns
        )
    )
    params = {"run_key": run_key, "step_id": step.id}
    with connect() as read, read.transaction():
        read.execute("SELECT pg_advisory_xact_lock(%s)", (export_lock_key(run_key, step.id),))
        with read.cursor(name=f"direct_mail_{run_key}_{step.id}") as cur:
            cur.itersize = BATCH_ROWS
            cur.execute(select, params)
            kinds = [_type_name(read, col.type_code) for col in cur.description or ()]
            with _Outputs(files, columns, kinds) as outputs:
                while rows := cur.fetchmany(BATCH_ROWS):
                    outputs.write(rows)
            row_count = outputs.rows
        manifest = {
            "version": MANIFEST_VERSION,
            "campaign": campaign_id,
            "dag_run_id": dag_run_id,
            "run_key": run_key,
            "step": step.id,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "rows": row_count,
            "columns": columns,
            "files": [
                {"format": fmt, "name": files[fmt].name, "url": url_of(files[fmt]), **outputs.stats[fmt]}
                for fmt in formats
            ],
        }
        with atomic_write(manifest_path) as out:
            out.write(json.dumps(manifest, indent=2).encode("utf-8") + b"\n")
        marked = read.execute(MARK_SENT, {**params, "manifest": manifest_url}).rowcount
    log.info(
        "Exported %s rows of step %s to %s (%s); %s rows newly marked sent",
        f"{row_count:,}",
        step.id,
        manifest_url,
        ", ".join(f"{f['format']} {f['bytes']:,} bytes" for f in manifest["files"]),
        f"{marked:,}",
    )
    return manifest


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------


def _is_local(path: ObjectStoragePath) -> bool:
    return path.protocol in ("file", "local", "")


@contextmanager
def atomic_write(path: ObjectStoragePath) -> Iterator[HashingWriter]:
    """A binary sink whose content appears at ``path`` whole, or not at all (see the module
    docstring); it counts and hashes what is written."""
    fs = path.fs
    if _is_local(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
        handle = fs.open(temp.path, "wb")
        try:
            sink = HashingWriter(handle)
            yield sink
            sink.flush()
            handle.close()
            fs.mv(temp.path, path.path)
        except BaseException:
            handle.close()
            with suppress(OSError):
                fs.rm(temp.path)
            raise
        return
    handle = fs.open(path.path, "wb")
    try:
        sink = HashingWriter(handle)
        yield sink
        sink.flush()
    except BaseException:
        # fsspec's close() would complete the upload with what was written so far.
        discard = getattr(handle, "discard", None)
        if discard is not None:
            discard()
            handle.closed = True
        raise
    handle.close()


class HashingWriter:
    """Forwards bytes to ``raw`` in pieces of ``buffer_size``, counting and hashing them."""

    def __init__(self, raw: Any, buffer_size: int = 1 << 20) -> None:
        self.raw = raw
        self.size = 0
        self.closed = False
        self._sha256 = hashlib.sha256()
        self._buffer = bytearray()
        self._buffer_size = buffer_size

    def write(self, data: bytes | bytearray | memoryview) -> int:
        n = len(data)
        self._sha256.update(data)
        self.size += n
        self._buffer += data
        if len(self._buffer) >= self._buffer_size:
            self.flush()
        return n

    def flush(self) -> None:
        if self._buffer:
            self.raw.write(bytes(self._buffer))
            self._buffer.clear()

    def tell(self) -> int:
        return self.size

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        # The owner of ``raw`` closes it: pyarrow calls close() on the sink it was given.
        self.flush()

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()


def _type_name(conn: psycopg.Connection, oid: int) -> str:
    info = conn.adapters.types.get(oid)
    return info.name if info is not None else "unknown"


def _cell(value: Any) -> Any:
    """A value as CSV text and Parquet string columns write it."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return value
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def _arrow_type(kind: str) -> pa.DataType:
    import pyarrow as pa

    return {
        "int8": pa.int64(),
        "int4": pa.int32(),
        "int2": pa.int16(),
        "bool": pa.bool_(),
        "float4": pa.float32(),
        "float8": pa.float64(),
        "date": pa.date32(),
        "timestamptz": pa.timestamp("us", tz="UTC"),
        "timestamp": pa.timestamp("us"),
    }.get(kind, pa.string())


class _Outputs:
    """Every format of one extract, fed the same chunks of rows."""

    def __init__(self, files: dict[str, ObjectStoragePath], columns: list[str], kinds: list[str]) -> None:
        self.files = files
        self.columns = columns
        self.kinds = kinds
        self.rows = 0
        self.stats: dict[str, dict[str, Any]] = {}
        self._stack = ExitStack()
        self._parquet: Any = None

    def __enter__(self) -> _Outputs:
        try:
            self._sinks = {fmt: self._stack.enter_context(atomic_write(path)) for fmt, path in self.files.items()}
            if "csv" in self._sinks:
                self._write_csv([self.columns])
            if "parquet" in self._sinks:
                import pyarrow as pa
                import pyarrow.parquet as pq

                self._schema = pa.schema([pa.field(c, _arrow_type(k)) for c, k in zip(self.columns, self.kinds)])
                self._parquet = pq.ParquetWriter(self._sinks["parquet"], self._schema, compression="snappy")
        except BaseException:
            self._stack.close()
            raise
        return self

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows += len(rows)
        if "csv" in self._sinks:
            self._write_csv(rows)
        if self._parquet is not None:
            self._write_parquet(rows)

    def _write_csv(self, rows: list[Any]) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        for row in rows:
            writer.writerow(["" if (cell := _cell(v)) is None else cell for v in row])
        self._sinks["csv"].write(buffer.getvalue().encode("utf-8"))

    def _write_parquet(self, rows: list[tuple[Any, ...]]) -> None:
        import pyarrow as pa

        arrays = []
        for i, field in enumerate(self._schema):
            values = [row[i] for row in rows]
            if pa.types.is_string(field.type):
                values = [v if v is None or isinstance(v, str) else str(_cell(v)) for v in values]
            arrays.append(pa.array(values, type=field.type))
        self._parquet.write_batch(pa.RecordBatch.from_arrays(arrays, schema=self._schema))

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if self._parquet is not None:
                try:
                    self._parquet.close()  # the footer; on error, written only to be discarded
                except Exception:
                    if exc_type is None:
                        raise
        finally:
            # Completes every file, or on error discards them all: see atomic_write.
            self._stack.__exit__(exc_type, exc, tb)
        if exc_type is None:
            self.stats = {fmt: {"bytes": sink.size, "sha256": sink.sha256} for fmt, sink in self._sinks.items()}
