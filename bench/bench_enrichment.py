"""Split by rules and entity enrichment at scale, each beside a bare baseline from the same run.

    python bench/bench_enrichment.py --profiles 1000000 [--chunks 200] [--json bench-results/enrichment.json]

In a scratch database (demo data, ``--seed``), an audience of every confirmed booking (one
member per booking, ``entity_key: booking``):

- ``evaluate``: the run's evaluation without a split, then with a split by three rules (a
  linked-entity condition, a top 10,000 by ``created_at``, a catch-all); the difference is
  what the rules cost (a temporary draft of the audience, one ``INSERT … SELECT`` per rule);
- ``fetch by key``: what a one-email-per-booking send fetches per claimed chunk of 100
  (``entity.starts_on``, ``entity.product.name``, ``entity.product.inventory.quantity``: three
  tables, four columns), against the bare skinny baseline of one table by primary key
  (``SELECT booking_id, starts_on FROM crm.booking WHERE booking_id = ANY(…)``) and against
  fetching whole rows of the same three tables;
- ``fetch for profiles``: what a one-email-per-profile send fetches per chunk of 100 profiles
  (each profile's audience bookings, ordered, capped at 5, enriched the same way).

Chunks are random samples of the audience, the same for each variant. The scratch database
is dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import statistics
import sys
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parents[1]
try:
    import campaign_orchestrator  # noqa: F401
except ImportError:  # not installed: use the checkout
    sys.path.insert(0, str(ROOT / "plugins"))

from campaign_orchestrator.audience.catalog import load_catalog  # noqa: E402
from campaign_orchestrator.audience.compile import compile_audience  # noqa: E402
from campaign_orchestrator.channels.templating import TemplateFields  # noqa: E402
from campaign_orchestrator.config.campaign import CampaignConfig# noqa: E402
from campaign_orchestrator.paths import ProjectPaths  # noqa: E402
from campaign_orchestrator.run.audience import evaluate_audience  # noqa: E402
from campaign_orchestrator.run.enrichment import enrichment_for  # noqa: E402
from campaign_orchestrator.run.runs import register_run  # noqa: E402
from campaign_orchestrator.store.demo_data import generate_demo_data  # noqa: E402
from campaign_orchestrator.store.migrations import migrate  # noqa: E402

PATHS = ProjectPaths.discover()
CHUNK = 100
PATHS_READ = (("starts_on",), ("product", "name"), ("product", "inventory", "quantity"))
RULES = [
    {"segment": "subscribers", "where": {"subscription.status": "active"}},
    {"segment": "newest", "top": 10_000, "order_by": "created_at desc"},
    {"segment": "rest"},
]


def config(split: bool, **step) -> CampaignConfig:
    audience = {"blocks": {"bookings": {"from": "booking", "where": {"status": "confirmed"}, "entity_key": "booking"}}}
    if split:
        audience["split"] = {"rules": RULES}
    return CampaignConfig.model_validate({
        "id": "bench_enrichment", "schedule": "manual", "valid": {"start": "2026-01-01"}, "audience": audience,
        "steps": [{"id": "mail", "channel": "email", "template": "low_stock_alert", "sender": "W <w@w.example>", **step}],
    })


def timed(function, *args) -> tuple[float, object]:
    started = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - started, result


def per_chunk(conn: psycopg.Connection, chunks: list[list], fetch) -> dict[str, float]:
    fetch(conn, chunks[0])  # warm the plan and the key-type lookup
    times = [timed(fetch, conn, chunk)[0] * 1000 for chunk in chunks]
    return {"median_ms": round(statistics.median(times), 3), "p95_ms": round(sorted(times)[int(len(times) * 0.95)], 3),
            "total_s": round(sum(times) / 1000, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)

    scratch = f"bench_enrichment_{secrets.token_hex(4)}"
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{scratch}"')
    dsn = make_conninfo(**{**conninfo_to_dict(args.dsn), "dbname": scratch})
    results: dict[str, object] = {"profiles": args.profiles, "chunk": CHUNK, "chunks": args.chunks}
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn, PATHS.migrations)
            seconds, _ = timed(generate_demo_data, conn, args.profiles, args.seed)
            print(f"demo data: {args.profiles:,} profiles in {seconds:.1f}s")
            evaluate = {}
            for label, split in (("without split", False), ("split by 3 rules", True)):
                campaign = config(split)
                run_key = register_run(conn, campaign.id, f"bench-{label}", None, {})
                seconds, audience = timed(evaluate_audience, conn, run_key, compile_audience(campaign, PATHS), None,
                                          None, None, campaign.audience.split)
                evaluate[label] = {"seconds": round(seconds, 3), "members": audience.size}
                print(f"evaluate {label:<18} {audience.size:>10,} members  {seconds:7.2f}s")
            results["evaluate"] = evaluate
            segments = dict(conn.execute(
                "SELECT segment, count(DISTINCT profile_id) FROM campaign.audience_member WHERE run_key = %s "
                "GROUP BY segment", (run_key,)).fetchall())
            results["segments"] = segments
            print("  segments (profiles): " + ", ".join(f"{k} {v:,}" for k, v in sorted(segments.items())))

            rng = random.Random(args.seed)
            keys = [r[0] for r in conn.execute(
                "SELECT entity_key FROM campaign.audience_member WHERE run_key = %s", (run_key,))]
            profiles = sorted({r[0] for r in conn.execute(
                "SELECT profile_id FROM campaign.audience_member WHERE run_key = %s", (run_key,))})
            key_chunks = [rng.sample(keys, CHUNK) for _ in range(args.chunks)]
            profile_chunks = [rng.sample(profiles, CHUNK) for _ in range(args.chunks)]
            catalog = load_catalog(PATHS.root / "include" / "entities.yaml")
            by_key = enrichment_for(config(True), config(True).steps[0], TemplateFields(entity=PATHS_READ), catalog)
            listing_config = config(True, message_per="profile", entities_order_by="starts_on", max_entities=5)
            listing = enrichment_for(listing_config, listing_config.steps[0],
                                     TemplateFields(entities=PATHS_READ, uses_entities=True), catalog)
            assert by_key is not None and listing is not None
            fetch = {
                "enrichment by key (3 tables, 4 columns)": per_chunk(conn, key_chunks, by_key.fetch_by_keys),
                "baseline: one table by key, 2 columns": per_chunk(conn, key_chunks, lambda c, k: c.execute(
                    "SELECT booking_id, starts_on FROM crm.booking WHERE booking_id = ANY(%s::text[]::bigint[])",
                    (k,)).fetchall()),
                "baseline: whole rows of the 3 tables": per_chunk(conn, key_chunks, lambda c, k: c.execute(
                    "SELECT b.*, p.*, i.* FROM crm.booking b LEFT JOIN crm.product p USING (product_id) "
                    "LEFT JOIN crm.inventory i USING (product_id) WHERE b.booking_id = ANY(%s::text[]::bigint[])",
                    (k,)).fetchall()),
                "enrichment for profiles (lists, max 5)": per_chunk(
                    conn, profile_chunks, lambda c, p: listing.fetch_for_profiles(c, run_key, p)),
            }
            results["fetch_per_chunk"] = fetch
            for label, figures in fetch.items():
                print(f"fetch {label:<42} median {figures['median_ms']:7.2f} ms  p95 {figures['p95_ms']:7.2f} ms"
                      f"  ({args.chunks} chunks of {CHUNK}: {figures['total_s']:.2f}s)")
            plan = conn.execute(
                psycopg.sql.SQL("EXPLAIN ") + by_key.statement(conn, "by_key"), {"keys": key_chunks[0]}).fetchall()
            results["plan_by_key"] = [r[0] for r in plan]
            print("plan of the fetch by key:\n  " + "\n  ".join(r[0] for r in plan))
    finally:
        if not args.keep:
            with psycopg.connect(args.dsn, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
