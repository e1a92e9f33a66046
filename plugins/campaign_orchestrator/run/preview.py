"""Counts and messages without sending: ``campaigns preview`` and ``campaigns render``.

Both run the real evaluation and targeting SQL inside a transaction that is rolled back, so
the numbers are exactly those a run would see now, and nothing is recorded or sent.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from typing import TYPE_CHECKING, Any

from psycopg import sql

from campaign_orchestrator.audience.compile import compile_audience
from campaign_orchestrator.config.journey import in_flow_order
from campaign_orchestrator.run.audience import evaluate_audience
from campaign_orchestrator.run.runs import register_run
from campaign_orchestrator.run.targeting import plan_batches, target_step

if TYPE_CHECKING:
    import psycopg

    from campaign_orchestrator.config.campaign import CampaignConfig

    from campaign_orchestrator.config.channels import Step
    from campaign_orchestrator.paths import ProjectPaths


@dataclass
class StepPreview:
    step_id: str
    channel: str
    sendable: int
    excluded: dict[str, int]
    batches: int
    seconds: float


@dataclass
class Preview:
    campaign_id: str
    audience_size: int
    audience_seconds: float
    guardrail: int | None
    steps: list[StepPreview] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign_id,
            "audience": self.audience_size,
            "audience_seconds": round(self.audience_seconds, 3),
            "guardrail_max_audience": self.guardrail,
            "steps": [s.__dict__ for s in self.steps],
        }

    def format(self) -> str:
        over = self.guardrail is not None and self.audience_size > self.guardrail
        lines = [
            f"Campaign {self.campaign_id}",
            f"  audience            {self.audience_size:>10,}   ({self.audience_seconds:.2f}s)"
            + (f"  EXCEEDS guardrails.max_audience {self.guardrail:,}: a run would fail" if over else ""),
        ]
        for s in self.steps:
            lines.append(f"  step {s.step_id} ({s.channel})   ({s.seconds:.2f}s)")
            for reason, count in sorted(s.excluded.items(), key=lambda kv: -kv[1]):
                lines.append(f"    excluded {reason:<22} {count:>10,}")
            lines.append(f"    sendable            {s.sendable:>10,}   in {s.batches} batch(es)")
        return "\n".join(lines)


def preview_campaign(
    conn: psycopg.Connection, config: CampaignConfig, paths: ProjectPaths, params: dict[str, Any] | None = None
) -> Preview:
    with conn.transaction(force_rollback=True):
        run_key = register_run(conn, config.id, f"preview__{uuid.uuid4().hex}", None, {})
        started = time.perf_counter()
        compiled = compile_audience(config, paths, params)
        audience = evaluate_audience(
            conn, run_key, compiled, None, None, config.audience.holdout, config.audience.split
        )
        preview = Preview(config.id, audience.size, time.perf_counter() - started, config.guardrails.max_audience)
        # A later step of a journey targets who came through the steps before it, so they go
        # first; its conditions see no opens, clicks or sends yet (a run's first moments).
        for step in in_flow_order(config):
            if step.channel == "wait":
                continue
            started = time.perf_counter()
            result = target_step(conn, run_key, config, step)
            preview.steps.append(
                StepPreview(
                    step.id,
                    step.channel,
                    result.sendable,
                    result.excluded,
                    len(plan_batches(result.sendable, config.batch_size)),
                    time.perf_counter() - started,
                )
            )
    return preview


@dataclass
class RenderedMessage:
    excluded_reason: str | None = None
    payload: bytes | None = None
    variant: str | None = None
    """The template variant rendered (``default``, or a locale's)."""
    variant_reason: str | None = None
    """How the profile's locale chose it, when the template has locale variants."""

    def readable(self) -> str:
        assert self.payload is not None
        if isinstance(self.payload, str):  # an SMS
            return self.payload
        if not isinstance(self.payload, bytes):  # push, webhook: a JSON value
            import json

            return json.dumps(self.payload, indent=2, ensure_ascii=False, default=str)
        msg = message_from_bytes(self.payload, policy=policy.default)
        headers = "\n".join(f"{k}: {v}" for k, v in msg.items())
        text = msg.get_body(("plain",))
        html = msg.get_body(("html",))
        out = [headers, "", "--- text part ---", text.get_content() if text else "(none)"]
        if html is not None:
            out += ["", f"--- html part ({len(html.get_content()):,} characters; --raw shows it) ---"]
        return "\n".join(out)


def render_for_profile(
    conn: psycopg.Connection,
    config: CampaignConfig,
    step: Step,
    paths: ProjectPaths,
    profile_id: int,
    entity_key: str | None = None,
) -> RenderedMessage:
    """The message ``profile_id`` would get from ``step`` now (for one message per entity:
    the one of ``entity_key``, by default their first), or why they would get none."""
    from campaign_orchestrator.channels.base import Recipient
    from campaign_orchestrator.channels.factory import build_channel
    from campaign_orchestrator.run.enrichment import step_enrichment

    with conn.transaction(force_rollback=True):
        run_key = register_run(conn, config.id, f"render__{uuid.uuid4().hex}", None, {})
        evaluate_audience(
            conn, run_key, compile_audience(config, paths), None, None, config.audience.holdout, config.audience.split
        )
        target_step(conn, run_key, config, step)
        rows = conn.execute(
            """
            SELECT status, reason, address, entity_key FROM campaign.message
            WHERE run_key = %s AND step_id = %s AND profile_id = %s ORDER BY entity_key
            """,
            (run_key, step.id, profile_id),
        ).fetchall()
        if not rows:
            exists = conn.execute("SELECT 1 FROM crm.profile WHERE profile_id = %s", (profile_id,)).fetchone()
            return RenderedMessage("no such profile" if not exists else "not in the campaign's audience")
        chosen = [r for r in rows if entity_key is None or r[3] == str(entity_key)]
        if not chosen:
            keys = ", ".join(r[3] for r in rows[:20]) or "none (one message per profile)"
            return RenderedMessage(
                f"profile {profile_id} has no entity {entity_key!r} in the audience of step {step.id}; theirs: {keys}"
            )
        status, reason, address, entity_key = chosen[0]
        if status == "excluded":
            return RenderedMessage(reason)
        renderer, _ = build_channel(step, config, run_key, paths)
        fields = list(renderer.profile_fields)
        columns = sql.SQL(", ").join(map(sql.Identifier, fields)) if fields else sql.SQL("1")
        values = conn.execute(
            sql.SQL("SELECT {} FROM crm.profile WHERE profile_id = %s").format(columns), (profile_id,)
        ).fetchone()
        profile = dict(zip(fields, values)) if fields else {}
        recipient = Recipient(profile_id, entity_key, address, profile)
        enrichment = step_enrichment(config, step, renderer.template_fields, paths)
        if enrichment is not None and enrichment.attach(conn, run_key, [recipient]):
            return RenderedMessage(f"entity_not_found: its {enrichment.plan.entity} {entity_key} no longer exists")
        outbound = renderer.render(recipient)
        variants = getattr(renderer, "variants", None)
        chosen = None
        if variants is not None and variants.localized:
            chosen = variants.choose(profile.get("locale")).explain()
    return RenderedMessage(payload=outbound.payload, variant=outbound.variant, variant_reason=chosen)
