"""The benchmark report: each figure gets its target, the measured value and met or missed
(with by how much), from the JSON the benchmarks write. Synthetic results, no timing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_report", ROOT / "bench" / "report.py")
report = importlib.util.module_from_spec(_spec)
sys.modules["bench_report"] = report  # dataclasses look their module up while the class is built
_spec.loader.exec_module(report)  # type: ignore[union-attr]


def task(seconds: float, rss: float, result=None, processes: int = 1) -> dict:
    return {"seconds": seconds, "process_s": seconds + 1, "peak_rss_mb": rss, "result": result,
            "processes": [{"seconds": seconds, "peak_rss_mb": rss}] * processes}


def pipeline(profiles: int, scale: float, rss: float) -> dict:
    tasks = {name: task(seconds * scale, rss) for name, seconds in
             (("seed", 3), ("prepare", 0.1), ("audience", 1), ("target", 2), ("plan", 0.1), ("report", 0.5))}
    tasks["send"] = task(8 * scale, rss, processes=2)
    return {"tasks": tasks, "campaign_s": sum(t["seconds"] for n, t in tasks.items() if n != "seed"),
            "check": {"statuses": {"sent": int(profiles * 0.67)}},
            "baselines": {"audience": {"seconds": 0.5 * scale, "rows": profiles}}}


def results(scale_1m: float, rss_1m: float) -> dict:
    return {
        "run": {"profiles": 1_000_000, "memory_profiles": 100_000, "workers": 2,
                "runs": {"100000": pipeline(100_000, 0.1, 150.0), "1000000": pipeline(1_000_000, scale_1m, rss_1m)}},
        "parse": {"campaigns": 1000, "campaigns_fill": {"seconds": 4.0}, "bare": {"seconds": 1.6},
                  "one_task": {"seconds": 0.4, "dags": 1}, "ratio_to_bare": 2.5},
    }


def by_figure(rows) -> dict:
    return {row.figure.strip(): row for row in rows}


def test_met_targets_are_marked_met() -> None:
    rows = by_figure(report.rows_for(results(scale_1m=1.0, rss_1m=155.0)))
    campaign = rows["1,000,000-recipient campaign, prepare to report (null transport, 2 send workers)"]
    assert campaign.met is True and campaign.measured.startswith("11.7 s")
    assert rows["peak RSS of task send, 100,000 → 1,000,000 recipients"].met is True
    assert rows["DagBag fill of 1,000 campaign configs"].met is True
    assert rows["one task's parse (parsing context set): DAGs built, seconds"].met is True


def test_missed_targets_say_by_how_much() -> None:
    rows = by_figure(report.rows_for(results(scale_1m=3.0, rss_1m=320.0)))
    campaign = rows["1,000,000-recipient campaign, prepare to report (null transport, 2 send workers)"]
    assert campaign.met is False
    assert "missed by 5.10 s (1.17x the target)" in campaign.note
    audience = rows["evaluate_audience vs the same audience SELECT as one bare INSERT…SELECT"]
    assert audience.met is False and audience.measured.startswith("2.00x")
    memory = rows["peak RSS of task send, 100,000 → 1,000,000 recipients"]
    assert memory.met is False and memory.note == "20 MB over; grows 113%"


def test_markdown_has_one_row_per_figure_and_the_machine() -> None:
    rows = report.rows_for(results(scale_1m=1.0, rss_1m=155.0))
    text = report.markdown(rows, {"cores": 2, "PostgreSQL": "15.20"})
    assert "Machine: cores 2, PostgreSQL 15.20" in text
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0] == "| figure | target | measured | status |"
    assert len(table) == len(rows) + 2  # the header and its separator
    assert all(line.count(" | ") == 3 for line in table)
