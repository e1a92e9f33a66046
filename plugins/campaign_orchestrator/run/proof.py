"""Proofs: one step's message, rendered with a chosen profile's data, sent to seed addresses.

Nothing is written to the ledger or the run tables: a proof is not a campaign message, and
sending one never changes what a real run sends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from psycopg import sql

from campaign_orchestrator.channels.base import Outcome, Recipient
from campaign_orchestrator.channels.factory import build_channel
from campaign_orchestrator.run.enrichment import EnrichmentError, step_enrichment

if TYPE_CHECKING:
    import psycopg

    from campaign_orchestrator.config.campaign import CampaignConfig

    from campaign_orchestrator.config.channels import Step
    from campaign_orchestrator.paths import ProjectPaths

PROOF_RUN_KEY = 0
"""Message-IDs of proofs are derived from run key 0, which no real run has."""


class ProofError(ValueError):
    pass


def send_proof(
    conn: psycopg.Connection,
    config: CampaignConfig,
    step: Step,
    paths: ProjectPaths,
    profile_id: int,
    seed_addresses: list[str],
) -> list[tuple[str, Outcome]]:
    if step.channel == "direct_mail":
        raise ProofError("direct mail has no proof send; run the step's export against a test destination")
    if not seed_addresses:
        raise ProofError("give at least one seed address (--to)")
    renderer, open_sender = build_channel(step, config, PROOF_RUN_KEY, paths)
    fields = list(renderer.profile_fields)
    columns = sql.SQL(", ").join(map(sql.Identifier, fields)) if fields else sql.SQL("1")
    row = conn.execute(
        sql.SQL("SELECT {} FROM crm.profile WHERE profile_id = %s").format(columns), (profile_id,)
    ).fetchone()
    if row is None:
        raise ProofError(f"no profile {profile_id} in crm.profile")
    profile = dict(zip(fields, row)) if fields else {}
    recipients = [Recipient(profile_id, f"proof:{address}", address, profile) for address in seed_addresses]
    try:
        enrichment = step_enrichment(config, step, renderer.template_fields, paths)
        if enrichment is not None:
            enrichment.attach_for_proof(conn, profile_id, recipients)
    except EnrichmentError as exc:
        raise ProofError(str(exc)) from exc
    if enrichment is not None and enrichment.per == "entity" and recipients[0].entity is None:
        raise ProofError(
            f"profile {profile_id} has no {enrichment.plan.entity} to fill entity with; choose a profile that has one"
        )
    outbound = [renderer.render(recipient) for recipient in recipients]
    with open_sender() as sender:
        outcomes = sender.send(outbound)
    return list(zip(seed_addresses, outcomes))
