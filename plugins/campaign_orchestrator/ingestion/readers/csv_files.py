"""CSV files: the header is read here, the data lines go to PostgreSQL's COPY as bytes.

The fast path hands the file's bytes (decompressed, re-encoded to UTF-8 when the file is in
another encoding) to ``COPY … (FORMAT csv)`` a megabyte at a time: no row crosses Python. A
file COPY cannot split (a line with too many or too few fields, an unclosed quote, bytes
that are not text in the file's encoding) is read again by Python's csv module, which stages
every record it can split and keeps the others, with their line and raw text, as rejects.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
from typing import IO, TYPE_CHECKING

import psycopg.errors

from campaign_orchestrator.ingestion.files import CHUNK, HashingReader, open_content
from campaign_orchestrator.ingestion.readers import ReadStats, close_all
from campaign_orchestrator.ingestion.staging import copy_csv_statement, copy_rows_statement

if TYPE_CHECKING:
    import psycopg

    from campaign_orchestrator.config.ingestion import CsvSource
    from campaign_orchestrator.ingestion.files import LandedFile
    from campaign_orchestrator.ingestion.schema import ColumnPlan

log = logging.getLogger(__name__)

_UNSPLIT = (psycopg.errors.BadCopyFileFormat, psycopg.errors.CharacterNotInRepertoire,
            psycopg.errors.UntranslatableCharacter)
"""What COPY raises for a file it cannot split into rows: the careful reader takes over."""


class CsvReader:
    def __init__(self, source: CsvSource, file: LandedFile) -> None:
        self.source = source
        self.file = file
        self.first_line = 2 if source.header else 1
        self._header: list[str] | None = None
        self._raw: HashingReader | None = None
        self._content: IO[bytes] | None = None
        self._rest = b""

    @property
    def _utf8(self) -> bool:
        return codecs.lookup(self.source.encoding).name == "utf-8"

    def _open(self) -> None:
        self.close()
        self._raw = HashingReader(self.file.path().open("rb"))
        self._content = open_content(self._raw, self.file, self.source.compression)  # type: ignore[arg-type]

    def columns(self) -> list[str]:
        if self._header is None:
            self._open()
            if not self.source.header:
                self._header = list(self.source.columns)
            else:
                line, self._rest = _first_line(self._content)  # type: ignore[arg-type]
                text = line.decode(self.source.encoding, errors="replace").lstrip("\ufeff").rstrip("\r\n")
                self._header = [c.strip() for c in next(csv.reader([text], **self._dialect()), [])]
        return list(self._header)

    def layout(self, plan: ColumnPlan) -> list[str]:
        return list(self.columns())  # COPY is positional: every column of the file is staged

    def stage(self, conn: psycopg.Connection, plan: ColumnPlan) -> ReadStats:
        layout = self.layout(plan)
        try:
            with conn.transaction():  # a savepoint: a file COPY cannot split leaves no row
                self._copy_bytes(conn, layout)
        except _UNSPLIT as exc:
            log.warning("%s: COPY cannot split every line (%s); reading it record by record",
                        self.file.url, str(exc).splitlines()[0])
            self._open()
            self._skip_header()
            self._copy_records(conn, layout)
        assert self._raw is not None
        return ReadStats(sha256=self._raw.hexdigest())  # the load counts the staged records

    def _skip_header(self) -> None:
        """After reopening: position past the header again."""
        if self.source.header:
            _line, self._rest = _first_line(self._content)  # type: ignore[arg-type]
        else:
            self._rest = b""

    def _copy_bytes(self, conn: psycopg.Connection, layout: list[str]) -> None:
        assert self._content is not None
        decoder = None if self._utf8 else codecs.getincrementaldecoder(self.source.encoding)()
        with conn.cursor().copy(copy_csv_statement(layout, self.source)) as copy:
            chunk = self._rest if self.source.header else _strip_bom(self._content.read(CHUNK))
            while chunk:
                copy.write(chunk if decoder is None else decoder.decode(chunk).encode("utf-8"))
                chunk = self._content.read(CHUNK)
            if decoder is not None:
                tail = decoder.decode(b"", final=True)
                if tail:
                    copy.write(tail.encode("utf-8"))

    def _copy_records(self, conn: psycopg.Connection, layout: list[str]) -> None:
        assert self._content is not None
        width = len(layout)
        null = self.source.null
        rest = io.BytesIO(self._rest)
        stream = _Chain(rest, self._content)
        text = io.TextIOWrapper(stream, encoding=self.source.encoding, errors="replace", newline="")  # type: ignore[arg-type]
        records = csv.reader(text, **self._dialect())
        lines_before = 0
        with conn.cursor().copy(copy_rows_statement(layout)) as copy:
            for record in records:
                # The record's first line: a quoted field may span several.
                start, lines_before = lines_before + self.first_line, records.line_num
                if not record:
                    continue  # a blank line is no record
                problem = None
                if len(record) != width:
                    problem = f"{len(record)} fields where the header has {width}"
                elif any("\ufffd" in value for value in record):
                    problem = f"not valid {self.source.encoding} text"
                if problem:
                    raw = self.source.delimiter.join(record)
                    copy.write_row((start, problem, raw, *([None] * width)))
                else:
                    copy.write_row((start, None, None, *(None if v == null else v for v in record)))

    def _dialect(self) -> dict[str, str]:
        return {"delimiter": self.source.delimiter, "quotechar": self.source.quote}

    def close(self) -> None:
        close_all(self._content, self._raw)
        self._content = self._raw = None


def _first_line(stream: IO[bytes]) -> tuple[bytes, bytes]:
    """The first line and what was read after it."""
    buffer = b""
    while b"\n" not in buffer:
        chunk = stream.read(64 * 1024)
        if not chunk:
            return _strip_bom(buffer), b""
        buffer += chunk
    line, rest = buffer.split(b"\n", 1)
    return _strip_bom(line), rest


def _strip_bom(data: bytes) -> bytes:
    return data[3:] if data.startswith(codecs.BOM_UTF8) else data


class _Chain(io.RawIOBase):
    """Bytes already read, then the rest of the stream."""

    def __init__(self, first: IO[bytes], then: IO[bytes]) -> None:
        self.first, self.then = first, then

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        data = self.first.read(len(buffer)) or self.then.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
