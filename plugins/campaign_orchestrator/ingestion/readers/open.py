"""The reader for a source's format."""

from __future__ import annotations

from typing import TYPE_CHECKING

from campaign_orchestrator.config.ingestion import CsvSource, JsonLinesSource, ParquetSource, SqlSource

if TYPE_CHECKING:
    from campaign_orchestrator.config.ingestion import IngestionConfig
    from campaign_orchestrator.ingestion.files import LandedFile
    from campaign_orchestrator.ingestion.readers import Reader
    from campaign_orchestrator.ingestion.schema import TableShape
    from campaign_orchestrator.paths import ProjectPaths


def open_file_reader(config: IngestionConfig, shape: TableShape, file: LandedFile) -> Reader:
    source = config.source
    if isinstance(source, CsvSource):
        from campaign_orchestrator.ingestion.readers.csv_files import CsvReader

        return CsvReader(source, file)
    if isinstance(source, ParquetSource):
        from campaign_orchestrator.ingestion.readers.parquet_files import ParquetReader

        return ParquetReader(source, file)
    assert isinstance(source, JsonLinesSource)
    from campaign_orchestrator.ingestion.readers.jsonl_files import JsonLinesReader

    return JsonLinesReader(source, file, json_candidates(config, shape))


def json_candidates(config: IngestionConfig, shape: TableShape) -> list[str]:
    """The keys a JSON record may have that the load can use, by source name."""
    reverse = {target: source for source, target in config.target.rename.items()}
    names = [reverse.get(c.name, c.name) for c in shape.columns.values() if not c.generated]
    specials = [c for c in (config.deletes.tombstone if config.deletes else None, config.data_as_of) if c]
    return list(dict.fromkeys([*names, *specials]))


def open_query_reader(config: IngestionConfig, paths: ProjectPaths, watermark: str | None) -> Reader:
    from campaign_orchestrator.ingestion.readers.sql_query import SqlQueryReader

    source = config.source
    assert isinstance(source, SqlSource)
    text = (paths.sql / source.query).read_text(encoding="utf-8")
    return SqlQueryReader(source, text, watermark)
