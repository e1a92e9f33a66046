"""One task of the benchmarked campaign run, in its own process (started by bench_run.py).

    python bench/pipeline_task.py SPEC.json FD

The process imports what the task needs, writes ``ready`` to the file descriptor FD (a pipe
to the parent; stdout and stderr are the task's log) and waits for a line on stdin, so the
parent times the work and not the interpreter start. Then it runs the stage and writes one
JSON line to FD: the stage's result and its seconds. The parent reads the process's peak
RSS from ``os.wait4``.

Stages run the project's own Airflow operators (``execute`` with a minimal context), as a
worker would, except ``seed`` (the demo data generator) and the baselines. The ``send`` stage
runs ``SendBatchOperator`` once per batch it was given, a new operator per batch as Airflow
does for mapped tasks, with one change: the step's provider is replaced by
:class:`~campaign_orchestrator.channels.null.NullSender`, so the transport costs nothing and
the figures are the orchestrator's (claim, re-check, render, MIME, ledger).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    report = os.fdopen(int(sys.argv[2]), "w")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stage = STAGES[spec["stage"]]
    prepared = stage(spec, None)  # imports and set-up, untimed
    print("ready", file=report, flush=True)
    sys.stdin.readline()
    profiler = None
    if spec.get("profile_dir"):  # bench_run.py --profile: where the time goes, per task
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.perf_counter()
    result = stage(spec, prepared)
    seconds = time.perf_counter() - started
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(Path(spec["profile_dir"]) / f"{spec['stage']}_{spec.get('worker', 0)}.prof")
    print(json.dumps({"seconds": seconds, "result": result}, default=str), file=report, flush=True)
    return 0


def _context(spec: dict[str, Any]) -> dict[str, Any]:
    return {"run_id": spec["run_id"], "params": {}, "logical_date": None, "dag_run": None}


def _common(spec: dict[str, Any]) -> dict[str, Any]:
    return {"campaign_file": spec["campaign_file"], "campaign_id": spec["campaign_id"]}


def seed(spec: dict[str, Any], prepared: Any) -> Any:
    import psycopg

    from campaign_orchestrator.paths import ProjectPaths
    from campaign_orchestrator.store.demo_data import generate_demo_data
    from campaign_orchestrator.store.migrations import migrate

    if prepared is None:
        return True
    with psycopg.connect(spec["dsn"], autocommit=True) as conn:
        migrate(conn, ProjectPaths.discover().migrations)
        return generate_demo_data(conn, profiles=spec["profiles"])


def prepare(spec: dict[str, Any], prepared: Any) -> Any:
    from campaign_orchestrator.operators.campaign import PrepareRunOperator

    if prepared is None:
        return True
    return PrepareRunOperator(task_id="prepare_run", **_common(spec)).execute(_context(spec))


def audience(spec: dict[str, Any], prepared: Any) -> Any:
    from campaign_orchestrator.operators.campaign import EvaluateAudienceOperator

    if prepared is None:
        return True
    return EvaluateAudienceOperator(task_id="evaluate_audience", **_common(spec)).execute(_context(spec))


def target(spec: dict[str, Any], prepared: Any) -> Any:
    from campaign_orchestrator.operators.campaign import TargetStepOperator

    if prepared is None:
        return True
    return TargetStepOperator(
        task_id=f"target_{spec['step_id']}", step_id=spec["step_id"], **_common(spec)
    ).execute(_context(spec))


def plan(spec: dict[str, Any], prepared: Any) -> Any:
    from campaign_orchestrator.operators.campaign import PlanBatchesOperator

    if prepared is None:
        return True
    return PlanBatchesOperator(task_id=f"plan_{spec['step_id']}", step_id=spec["step_id"], **_common(spec)).execute(
        _context(spec)
    )


def send(spec: dict[str, Any], prepared: Any) -> Any:
    import campaign_orchestrator.channels.factory as factory
    from campaign_orchestrator.channels.null import NullSender
    from campaign_orchestrator.operators.campaign import SendBatchOperator

    if prepared is None:
        transports: list[NullSender] = []
        if spec.get("transport") == "provider":  # bench_smtp.py: the step's own provider
            return transports
        # The one substitution of the benchmark: the provider becomes a sender that accepts
        # and discards. build_channel is looked up at each execute, so this takes effect.
        real_build_channel = factory.build_channel

        def build_channel_with_null_transport(*args, **kwargs):
            renderer, _provider = real_build_channel(*args, **kwargs)

            def open_sender() -> NullSender:
                transports.append(NullSender())
                return transports[-1]

            return renderer, open_sender

        factory.build_channel = build_channel_with_null_transport
        return transports
    totals = {"batches": 0, "sent": 0, "failed": 0, "excluded_late": 0, "uncertain": 0}
    for batch in spec["batches"]:
        operator = SendBatchOperator(
            task_id=f"send_{spec['step_id']}", step_id=spec["step_id"], batch=batch, **_common(spec)
        )
        stats = operator.execute(_context(spec))
        totals["batches"] += 1
        for key in ("sent", "failed", "excluded_late", "uncertain"):
            totals[key] += stats[key]
    totals["transport_messages"] = sum(t.messages for t in prepared)
    totals["transport_bytes"] = sum(t.bytes for t in prepared)
    return totals


def smtp_baseline(spec: dict[str, Any], prepared: Any) -> Any:
    """A bare smtplib loop: ``sendmail`` of pre-built messages over one connection to the
    sink, nothing else (no rendering, no ledger, no step-by-step transaction)."""
    import smtplib

    if prepared is None:
        payloads = [p.encode("latin-1") for p in spec["payloads"]]
        return [(spec["sender"], spec["addresses"][i % len(spec["addresses"])], payloads[i % len(payloads)])
                for i in range(spec["messages"])]
    with smtplib.SMTP("127.0.0.1", spec["port"]) as client:
        for sender, to, payload in prepared:
            client.sendmail(sender, [to], payload)
    return {"messages": len(prepared)}


def smtp_transport(spec: dict[str, Any], prepared: Any) -> Any:
    """The email channel's SMTP sender alone, on the same pre-built messages: the transport
    part of the channel (one session, a step-by-step transaction per message)."""
    from campaign_orchestrator.channels.base import Outbound, Recipient
    from campaign_orchestrator.channels.email.smtp import SmtpSender

    if prepared is None:
        payloads = [p.encode("latin-1") for p in spec["payloads"]]
        return [Outbound(Recipient(i, "", spec["addresses"][i % len(spec["addresses"])], {}),
                         payloads[i % len(payloads)], f"<{i}@bench.example>") for i in range(spec["messages"])]
    with SmtpSender(spec["sender"], spec["conn_id"]) as sender:
        outcomes = sender.send(prepared)
    return {"messages": sum(o.status == "sent" for o in outcomes)}


def report(spec: dict[str, Any], prepared: Any) -> Any:
    from campaign_orchestrator.operators.campaign import FinalizeRunOperator

    if prepared is None:
        return True
    return FinalizeRunOperator(task_id="finalize_report", **_common(spec)).execute(_context(spec))


def render_baseline(spec: dict[str, Any], prepared: Any) -> Any:
    """A bare Jinja loop over the step's three templates: the plain (non-sandboxed)
    environment, the same profile rows, no Message-ID, MIME, unsubscribe link or ledger."""
    import jinja2
    import psycopg

    if prepared is None:
        folder = ROOT / "include" / "templates" / spec["template"]
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(folder)), autoescape=jinja2.select_autoescape(["html"])
        )
        templates = [env.get_template(name) for name in ("subject.txt", "body.html", "body.txt")]
        with psycopg.connect(spec["dsn"]) as conn:
            rows = conn.execute(
                "SELECT profile_id, first_name, city FROM crm.profile ORDER BY profile_id LIMIT %s",
                (spec["messages"],),
            ).fetchall()
        return templates, rows
    templates, rows = prepared
    campaign = {"id": spec["campaign_id"], "description": "bench"}
    size = 0
    for profile_id, first_name, city in rows:
        context = {
            "profile": {"first_name": first_name, "city": city},
            "campaign": campaign,
            "message": {"id": f"<{profile_id}@bench.example>"},
            "entity_key": "",
            "unsubscribe_url": None,
        }
        for template in templates:
            size += len(template.render(context))
    return {"messages": len(rows), "chars": size}


def renderer_baseline(spec: dict[str, Any], prepared: Any) -> Any:
    """The step's own renderer (sandboxed Jinja, Message-ID, signed unsubscribe link, MIME)
    over the same rows, without the ledger: splits the send stage's per-message cost."""
    import psycopg

    from campaign_orchestrator.channels.base import Recipient
    from campaign_orchestrator.channels.email.render import EmailRenderer
    from campaign_orchestrator.config.loader import load_campaign
    from campaign_orchestrator.paths import ProjectPaths

    if prepared is None:
        paths = ProjectPaths.discover()
        path = Path(spec["campaign_file"])
        config = load_campaign(path, paths)
        step = config.step(spec["step_id"])
        renderer = EmailRenderer(step, config, 1, paths)
        fields = list(renderer.profile_fields)
        with psycopg.connect(spec["dsn"]) as conn:
            # The addresses and profiles the send stage just sent to.
            rows = conn.execute(
                "SELECT m.profile_id, m.address"
                + "".join(f", p.{f}" for f in fields)
                + " FROM campaign.message m JOIN crm.profile p USING (profile_id)"
                " WHERE m.status = 'sent' ORDER BY m.seq LIMIT %s",
                (spec["messages"],),
            ).fetchall()
        recipients = [Recipient(r[0], "", r[1], dict(zip(fields, r[2:]))) for r in rows]
        return renderer, recipients
    renderer, recipients = prepared
    size = sum(len(renderer.render(r).payload) for r in recipients)
    return {"messages": len(recipients), "bytes": size}


STAGES = {
    "seed": seed,
    "prepare": prepare,
    "audience": audience,
    "target": target,
    "plan": plan,
    "send": send,
    "report": report,
    "render_baseline": render_baseline,
    "smtp_baseline": smtp_baseline,
    "smtp_transport": smtp_transport,
    "renderer_baseline": renderer_baseline,
}

if __name__ == "__main__":
    os.environ.setdefault("CAMPAIGNS_HOME", str(ROOT))
    sys.exit(main())
