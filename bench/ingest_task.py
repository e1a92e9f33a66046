"""One load task, in its own process (started by bench_ingest.py for its peak RSS).

    python bench/ingest_task.py SOURCE.yaml FILE

Loads FILE with the source's real load path, as the source's ``load`` task does, and prints
one JSON line: seconds and the counts. The parent reads the process's peak RSS (``os.wait4``).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from campaign_orchestrator.config.ingestion_loader import load_source
from campaign_orchestrator.ingestion.load import run_source
from campaign_orchestrator.paths import ProjectPaths
from campaign_orchestrator.store.connect import store_connection


def main() -> int:
    logging.getLogger("campaign_orchestrator").setLevel(logging.WARNING)
    config = load_source(Path(sys.argv[1]))
    with store_connection() as conn:
        started = time.perf_counter()
        (outcome,) = run_source(conn, config, ProjectPaths.discover(), only_file=sys.argv[2])
        seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "rows_read": outcome.rows_read, "inserted": outcome.inserted,
                      "updated": outcome.updated}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
