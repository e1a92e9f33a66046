"""DAG parsing at scale: 1,000 campaign configs through the real DAG files, beside bare DAGs.

    python bench/bench_parse.py [--campaigns 1000] [--repeat 3]

A temporary DAGs folder holds copies of ``dags/campaigns_dag.py`` and
``dags/campaign_config_errors.py`` (the two files that read the configs) and
``campaigns/`` with the shared ``_defaults.yaml`` and ``_policies.yaml`` and ``--campaigns``
YAML files generated from the demo campaigns (each copy with its own id, ``schedule.after``
pointing at the copies of its own group). Each figure is a ``DagBag`` fill in a fresh process
that has imported Airflow but not the project (as a DAG processor's parsing process), the
best of ``--repeat`` (the three interleaved):

- ``campaigns``: the whole folder, every DAG built;
- ``one task``: only ``campaigns_dag.py`` with Airflow's parsing context set to one campaign's
  DAG id, as a worker parses before it runs a task of that DAG;
- ``bare``: the baseline, one file building the same number of 5-task DAGs of
  ``EmptyOperator`` on a cron schedule, in the same kind of process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

BARE_DAGS = '''\
"""{count} bare 5-task DAGs in one file: the parsing baseline (airflow dag)."""
import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

for i in range({count}):
    with DAG(f"bare_{{i:05d}}", schedule="0 9 * * 1", start_date=datetime.datetime(2026, 1, 1), catchup=False) as dag:
        tasks = [EmptyOperator(task_id=f"task_{{n}}") for n in range(5)]
        for upstream, downstream in zip(tasks, tasks[1:]):
            upstream >> downstream
    globals()[dag.dag_id] = dag
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--campaigns", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", metavar="FOLDER", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(Path(args.child))

    work = Path(tempfile.mkdtemp(prefix="bench-parse-"))
    try:
        dags, ids = make_campaign_folder(work / "dags", args.campaigns)
        bare = work / "bare"
        bare.mkdir()
        (bare / "bare_dags.py").write_text(BARE_DAGS.format(count=args.campaigns))
        one_id = ids[len(ids) // 2]
        runs: dict[str, list[dict[str, Any]]] = {"campaigns_fill": [], "one_task": [], "bare": []}
        for _ in range(args.repeat):  # interleaved, so a busy moment of the machine hits all three
            runs["campaigns_fill"].append(parse_once(dags, dags / "campaigns"))
            runs["one_task"].append(parse_once(dags / "campaigns_dag.py", dags / "campaigns", dag_id=one_id))
            runs["bare"].append(parse_once(bare, None))
        figures = {kind: min(found, key=lambda r: r["seconds"]) for kind, found in runs.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    expected = {"campaigns_fill": args.campaigns, "one_task": 1, "bare": args.campaigns}
    for kind, count in expected.items():
        got = figures[kind]
        if got["dags"] != count or got["import_errors"]:
            raise RuntimeError(f"{kind}: expected {count} DAGs and no import error, got {got}")
    result = {"campaigns": args.campaigns, **figures,
              "ratio_to_bare": figures["campaigns_fill"]["seconds"] / figures["bare"]["seconds"]}
    print(f"DagBag fill, best of {args.repeat}, each in a fresh process with Airflow imported:")
    print(f"  {args.campaigns:,} campaign configs: {figures['campaigns_fill']['seconds']:6.2f} s "
          f"({figures['campaigns_fill']['seconds'] / args.campaigns * 1000:.2f} ms per campaign)")
    print(f"  {args.campaigns:,} bare 5-task DAGs: {figures['bare']['seconds']:6.2f} s "
          f"(campaigns take {result['ratio_to_bare']:.2f}x)")
    print(f"  one task's parse (parsing context {one_id}): {figures['one_task']['seconds']:6.2f} s, "
          f"{figures['one_task']['dags']} DAG built")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def make_campaign_folder(dags: Path, count: int) -> tuple[Path, list[str]]:
    """``count`` campaign files from the demo campaigns, in groups: copy ``g`` of every demo
    campaign gets the suffix ``_g`` and its ``schedule.after`` names copies of group ``g``."""
    import yaml

    from campaign_orchestrator.config.loader import campaign_files

    source = ROOT / "dags" / "campaigns"
    folder = dags / "campaigns"
    folder.mkdir(parents=True)
    for name in ("campaigns_dag.py", "campaign_config_errors.py"):
        shutil.copy(ROOT / "dags" / name, dags / name)
    for shared in source.glob("_*.yaml"):
        shutil.copy(shared, folder / shared.name)
    demos = [(path.stem, yaml.safe_load(path.read_text())) for path in campaign_files(source)]
    ids: list[str] = []
    group = 0
    while len(ids) < count:
        for stem, raw in demos:
            if len(ids) == count:
                break
            copy = dict(raw)
            copy["id"] = f"{raw.get('id', stem)}_{group:04d}"
            schedule = copy.get("schedule")
            if isinstance(schedule, dict) and schedule.get("after"):
                after = schedule["after"] if isinstance(schedule["after"], list) else [schedule["after"]]
                copy["schedule"] = {**schedule, "after": [f"{a}_{group:04d}" for a in after]}
            (folder / f"{copy['id']}.yaml").write_text(yaml.safe_dump(copy, sort_keys=False))
            ids.append(copy["id"])
        group += 1
    return dags, ids


def parse_once(target: Path, config_dir: Path | None, dag_id: str | None = None) -> dict[str, Any]:
    env = {
        **os.environ,
        "CAMPAIGNS_HOME": str(ROOT),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "600",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "plugins"), os.environ.get("PYTHONPATH")])),
        "PYTHONPYCACHEPREFIX": str(ROOT / "bench-results" / "pycache"),
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("_AIRFLOW_PARSING_CONTEXT_DAG_ID", None)
    if config_dir is not None:
        env["CAMPAIGNS_CONFIG_DIR"] = str(config_dir)
    if dag_id is not None:
        env["_AIRFLOW_PARSING_CONTEXT_DAG_ID"] = dag_id
    out = subprocess.run([sys.executable, __file__, "--child", str(target)], env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"parsing {target} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _child(target: Path) -> int:
    import logging

    logging.disable(logging.WARNING)
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import DAG  # noqa: F401 - what a DAG processor has imported before it parses

    started = time.perf_counter()
    bag = DagBag(dag_folder=str(target), safe_mode=True)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "dags": len(bag.dag_ids), "import_errors": len(bag.import_errors)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
