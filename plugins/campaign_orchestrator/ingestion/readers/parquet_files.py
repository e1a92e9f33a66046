"""Parquet files: read a record batch at a time with pyarrow, each batch written as CSV by
pyarrow's C++ writer straight into COPY. Only the columns the load uses are read."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

from campaign_orchestrator.ingestion.readers import ReadStats
from campaign_orchestrator.ingestion.staging import copy_csv_statement

if TYPE_CHECKING:
    import psycopg

    from campaign_orchestrator.config.ingestion import ParquetSource
    from campaign_orchestrator.ingestion.files import LandedFile
    from campaign_orchestrator.ingestion.schema import ColumnPlan


class _CsvShape:
    """The CSV dialect pyarrow writes: what the COPY statement reads."""

    delimiter, quote, null = ",", '"', ""


class ParquetReader:
    first_line = 1

    def __init__(self, source: ParquetSource, file: LandedFile) -> None:
        self.source = source
        self.file = file
        self._handle: Any = None
        self._parquet: Any = None

    def _file(self) -> Any:
        if self._parquet is None:
            import pyarrow.parquet as pq

            self._handle = self.file.path().open("rb")
            self._parquet = pq.ParquetFile(self._handle)
        return self._parquet

    def columns(self) -> list[str]:
        return list(self._file().schema_arrow.names)

    def types(self) -> dict[str, str]:
        return {f.name: str(f.type) for f in self._file().schema_arrow}

    def layout(self, plan: ColumnPlan) -> list[str]:
        return plan.used

    def stage(self, conn: psycopg.Connection, plan: ColumnPlan) -> ReadStats:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        layout = self.layout(plan)
        options = pacsv.WriteOptions(include_header=False)
        records = 0
        statement = copy_csv_statement(layout, _CsvShape)  # type: ignore[arg-type]
        with conn.cursor().copy(statement) as copy:
            for batch in self._file().iter_batches(batch_size=self.source.batch_rows, columns=layout):
                batch = _flatten_nested(batch, pa)
                buffer = io.BytesIO()
                pacsv.write_csv(batch, buffer, options)
                copy.write(buffer.getvalue())
                records += batch.num_rows
        return ReadStats(records=records, types=self.types())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        self._handle = self._parquet = None


def _flatten_nested(batch: Any, pa: Any) -> Any:
    """Lists, structs and maps become JSON text (CSV has no nesting)."""
    nested = [i for i, f in enumerate(batch.schema) if pa.types.is_nested(f.type)]
    if not nested:
        return batch
    arrays = list(batch.columns)
    for i in nested:
        arrays[i] = pa.array([None if v is None else json.dumps(v, default=str) for v in arrays[i].to_pylist()],
                             pa.string())
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)
