"""``campaigns ingest validate | preview <source> | run <source>``: ingestion without Airflow."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from campaign_orchestrator.paths import ProjectPaths


def add_ingest_commands(sub: Any) -> None:
    """Register ``ingest`` under the ``campaigns`` command's subparsers."""
    ingest = sub.add_parser("ingest", help="check, preview and run ingestion sources (dags/ingestion/)")
    actions = ingest.add_subparsers(metavar="ACTION")

    p = actions.add_parser("validate", help="check every ingestion source file")
    p.add_argument("path", nargs="?", help="a source file or folder (default: dags/ingestion)")
    p.add_argument("--store", action="store_true", help="also check each target table in the campaign store")
    p.set_defaults(handler=cmd_validate)

    p = actions.add_parser("preview", help="what loading a file would do: first rows, inferred types, rejects "
                                           "(nothing is kept)")
    p.add_argument("source")
    p.add_argument("--file", help="the file to preview (default: the first not loaded yet, else the newest)")
    p.add_argument("--rows", type=int, default=10, help="records to show")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_preview)

    p = actions.add_parser("run", help="load a source's pending files (or the query's new rows) now")
    p.add_argument("source")
    p.add_argument("--file", help="load only this file")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="log each step of the loads")
    p.set_defaults(handler=cmd_run)


def cmd_validate(args: argparse.Namespace) -> int:
    from campaign_orchestrator.config.ingestion_loader import load_sources

    paths = ProjectPaths.discover()
    target = Path(args.path) if args.path else paths.ingestion
    folder = target if target.is_dir() else target.parent
    result = load_sources(folder, paths)
    errors = [e for e in result.errors if target.is_dir() or e.path == target]
    configs = {sid: pc for sid, pc in result.configs.items() if target.is_dir() or pc[0] == target}
    messages = [e.render() for e in errors]
    messages += catalog_problems(paths)
    if args.store:
        from campaign_orchestrator.ingestion.schema import SchemaError, check_target, describe_table

        with _connect() as conn:
            for _source_id, (path, config) in configs.items():
                shape = describe_table(conn, config.target.table)
                if shape is None and not config.target.create:
                    messages.append(f"{path}: target.table: {config.target.table} does not exist in the store")
                elif shape is not None:
                    try:
                        check_target(config, shape)
                    except SchemaError as exc:
                        messages.append(f"{path}: {exc}")
    for message in messages:
        print(message, file=sys.stderr)
    checked = len(configs) + len(errors)
    if messages:
        print(f"{len(messages)} problem(s) in {checked} ingestion source file(s)", file=sys.stderr)
        return 1
    print(f"{checked} ingestion source file(s) OK" + (" (checked against the store)" if args.store else ""))
    return 0


def catalog_problems(paths: ProjectPaths) -> list[str]:
    """The entity catalog with the sources' entities merged must still hold together."""
    import yaml

    from campaign_orchestrator.ingestion.catalog import source_entities

    try:
        data = yaml.safe_load((paths.root / "include" / "entities.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        return [f"include/entities.yaml: {exc}"]
    return source_entities(paths.ingestion, set(data.get("entities") or {}))[1]


def cmd_preview(args: argparse.Namespace) -> int:
    from campaign_orchestrator.ingestion.preview import preview_source
    from campaign_orchestrator.ingestion.schema import SchemaError

    paths, config = _load_one(args.source)
    try:
        with _connect() as conn:
            preview = preview_source(conn, config, paths, args.file, args.rows)
    except (SchemaError, FileNotFoundError) as exc:
        raise _cli_error(str(exc)) from exc
    if args.json:
        print(json.dumps({"outcome": preview.outcome.as_dict() if preview.outcome else None,
                          "failure": preview.failure, "types": preview.types, "rejects": preview.rejects,
                          "rows": [list(map(_plain, r)) for r in preview.rows]}, indent=2, default=str))
    else:
        print(preview.format())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import logging

    from campaign_orchestrator.ingestion.load import LoadFailed, run_source
    from campaign_orchestrator.ingestion.schema import SchemaError

    if not args.verbose:  # the outcome lines below say what the load's own log would
        logging.getLogger("campaign_orchestrator.ingestion").setLevel(logging.WARNING)
    paths, config = _load_one(args.source)
    with _connect() as conn:
        try:
            outcomes = run_source(conn, config, paths, only_file=args.file)
        except LoadFailed as exc:
            print(exc.outcome.line(), file=sys.stderr)
            raise _cli_error(str(exc)) from exc
        except SchemaError as exc:
            raise _cli_error(str(exc)) from exc
    if args.json:
        print(json.dumps([o.as_dict() for o in outcomes], indent=2))
    else:
        for outcome in outcomes:
            print(outcome.line())
            for warning in outcome.warnings:
                print(f"  warning: {warning}")
        if not outcomes:
            print("nothing to load: every file is loaded already" if config.is_files else "no rows")
    return 0


def _load_one(source_id: str):
    from campaign_orchestrator.config.ingestion_loader import load_sources

    paths = ProjectPaths.discover()
    result = load_sources(paths.ingestion, paths)
    for error in result.errors:
        if error.campaign_id == f"ingest_{source_id}":
            raise _cli_error(f"the source config is invalid:\n{error.render()}")
    if source_id not in result.configs:
        known = ", ".join(sorted(result.configs)) or "none"
        raise _cli_error(f"no ingestion source {source_id!r} in {paths.ingestion}; known: {known}")
    return paths, result.configs[source_id][1]


def _connect():
    from campaign_orchestrator.cli import _connect as connect

    return connect()


def _cli_error(message: str) -> Exception:
    from campaign_orchestrator.cli import CliError

    return CliError(message)


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value
