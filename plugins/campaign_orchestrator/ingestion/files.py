"""The files of a source, through Airflow's ObjectStoragePath: ``s3://`` with the aws
connection, ``file://``, or a path relative to the project.

A file is known by its URL and an identity that changes when its content does (the S3 ETag,
or size and modification time locally): a file already loaded with the same identity is not
loaded again. ``landed_at`` is when the storage says it was written.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from campaign_orchestrator.config.ingestion import CsvSource, JsonLinesSource, ParquetSource
    from campaign_orchestrator.paths import ProjectPaths

    FileSource = CsvSource | JsonLinesSource | ParquetSource

CHUNK = 1 << 20
"""Bytes read at a time: what the load holds of a file in memory."""


@dataclass(frozen=True)
class LandedFile:
    """One file of a source, as listed."""

    url: str
    identity: str
    size: int
    landed_at: datetime
    conn_id: str | None = None

    def path(self) -> ObjectStoragePath:
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath(self.url, conn_id=self.conn_id)

    @property
    def name(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]


def source_folder(source: FileSource, paths: ProjectPaths) -> tuple[str, str]:
    """The folder URL and the file-name pattern of a source's ``path``."""
    path = source.path
    if "://" not in path:
        local = Path(path)
        path = "file://" + str(local if local.is_absolute() else paths.root / local)
    folder, _, pattern = path.rpartition("/")
    return folder, pattern


def conn_id_of(source: FileSource) -> str | None:
    return (source.conn_id or "aws_default") if source.is_s3 else None


def list_files(source: FileSource, paths: ProjectPaths) -> list[LandedFile]:
    """The source's files, oldest landed first (then by name): the order they are loaded in."""
    from airflow.sdk import ObjectStoragePath

    folder, pattern = source_folder(source, paths)
    conn_id = conn_id_of(source)
    base = ObjectStoragePath(folder + "/", conn_id=conn_id)
    try:
        entries = base.fs.ls(base.path, detail=True)
    except FileNotFoundError:
        return []
    files = []
    for info in entries:
        name = str(info["name"]).rstrip("/").rsplit("/", 1)[-1]
        if info.get("type") != "file" or not fnmatch.fnmatchcase(name, pattern):
            continue
        files.append(LandedFile(f"{folder}/{name}", identity_of(info), int(info.get("size") or 0),
                                landed_at_of(info), conn_id))
    return sorted(files, key=lambda f: (f.landed_at, f.url))


def file_at(url: str, source: FileSource) -> LandedFile:
    """One named file (``campaigns ingest run --file``), stat'ed like a listed one."""
    from airflow.sdk import ObjectStoragePath

    if "://" not in url:
        url = "file://" + str(Path(url).resolve())
    path = ObjectStoragePath(url, conn_id=conn_id_of(source))
    info = path.fs.info(path.path)
    return LandedFile(url, identity_of(info), int(info.get("size") or 0), landed_at_of(info), conn_id_of(source))


def identity_of(info: dict[str, Any]) -> str:
    etag = info.get("ETag") or info.get("etag")
    if etag:
        return str(etag).strip('"')
    mtime = info.get("mtime") or info.get("created") or 0
    return f"size={info.get('size')};mtime={float(mtime):.6f}"


def landed_at_of(info: dict[str, Any]) -> datetime:
    modified = info.get("LastModified")
    if isinstance(modified, datetime):
        return modified if modified.tzinfo else modified.replace(tzinfo=timezone.utc)
    mtime = info.get("mtime") or info.get("created")
    if isinstance(mtime, datetime):
        return mtime if mtime.tzinfo else mtime.replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(float(mtime or 0), tz=timezone.utc)


def is_gzip(file: LandedFile, compression: str) -> bool:
    return compression == "gzip" or (compression == "infer" and file.url.endswith(".gz"))


class HashingReader(io.RawIOBase):
    """A binary stream that hashes what is read through it (the file's SHA-256, as loaded)."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self.raw = raw
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
        data = self.raw.read(len(buffer))
        self.sha256.update(data)
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.raw.close()
        super().close()

    def hexdigest(self) -> str:
        return self.sha256.hexdigest()


def open_content(raw: HashingReader, file: LandedFile, compression: str) -> IO[bytes]:
    """The file's bytes, buffered, decompressed when it is gzip."""
    buffered = io.BufferedReader(raw, CHUNK)
    return gzip.GzipFile(fileobj=buffered, mode="rb") if is_gzip(file, compression) else buffered  # type: ignore[return-value]
