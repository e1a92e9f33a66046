"""JSON lines: one object per line, parsed here and copied as rows a chunk of COPY at a time.

A JSON file has no header: the reader stages the keys the target can use (its columns by
source name, the tombstone and as-of columns) and notes every key any record had, so that a
key the target lacks is reported as a new column and a column no record had is not loaded
(an absent key never overwrites a value with NULL). A line that is not a JSON object is kept,
with its line and raw text, as a reject.
"""

from __future__ import annotations

import io
import json
from typing import IO, TYPE_CHECKING

from campaign_orchestrator.ingestion.files import HashingReader, open_content
from campaign_orchestrator.ingestion.readers import ReadStats, close_all, text_of
from campaign_orchestrator.ingestion.staging import copy_rows_statement

if TYPE_CHECKING:
    import psycopg

    from campaign_orchestrator.config.ingestion import JsonLinesSource
    from campaign_orchestrator.ingestion.files import LandedFile
    from campaign_orchestrator.ingestion.schema import ColumnPlan


class JsonLinesReader:
    first_line = 1

    def __init__(self, source: JsonLinesSource, file: LandedFile, candidates: list[str]) -> None:
        self.source = source
        self.file = file
        self.candidates = candidates
        self._raw: HashingReader | None = None
        self._content: IO[bytes] | None = None

    def columns(self) -> list[str]:
        return list(self.candidates)

    def layout(self, plan: ColumnPlan) -> list[str]:
        return list(self.candidates)

    def stage(self, conn: psycopg.Connection, plan: ColumnPlan | None) -> ReadStats:
        self._raw = HashingReader(self.file.path().open("rb"))
        self._content = open_content(self._raw, self.file, self.source.compression)  # type: ignore[arg-type]
        text = io.TextIOWrapper(self._content, encoding=self.source.encoding, errors="replace")  # type: ignore[arg-type]
        width = len(self.candidates)
        seen: set[str] = set()
        records = 0
        with conn.cursor().copy(copy_rows_statement(self.candidates)) as copy:
            for number, line in enumerate(text, start=1):
                if not line.strip():
                    continue
                records += 1
                try:
                    record = json.loads(line)
                except ValueError as exc:
                    copy.write_row((number, f"not valid JSON: {exc}", line.rstrip("\r\n"), *([None] * width)))
                    continue
                if not isinstance(record, dict):
                    copy.write_row((number, f"a JSON {type(record).__name__}, not an object", line.rstrip("\r\n"),
                                    *([None] * width)))
                    continue
                seen.update(record)
                copy.write_row((number, None, None, *(text_of(record.get(c)) for c in self.candidates)))
        return ReadStats(records=records, sha256=self._raw.hexdigest(), seen=seen)

    def close(self) -> None:
        close_all(self._content, self._raw)
        self._content = self._raw = None
