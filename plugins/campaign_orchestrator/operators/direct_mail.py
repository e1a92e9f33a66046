"""The task of a direct-mail step: one export per run instead of mapped send batches."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from campaign_orchestrator.operators.campaign import CampaignOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)


class ExportDirectMailOperator(CampaignOperator):
    """Write a direct-mail step's extract and manifest, and mark the exported rows sent.

    Runs after the step's targeting. Consent and suppression are re-checked first (rows
    whose consent was withdrawn since targeting become ``excluded``, as a send's claim
    would make them). A step with no sendable row is skipped: no extract is written.
    Returns counts only.

    :param step_id: the direct-mail step of the campaign.
    """

    ui_color = "#fdf3e1"

    def __init__(self, *, step_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.step_id = step_id

    def execute(self, context: Context) -> dict[str, Any]:
        from campaign_orchestrator.channels.direct_mail.export import (
            ExportConfigError,
            exclude_withdrawn,
            export_direct_mail,
        )

        step = self.campaign.step(self.step_id)
        if step.channel != "direct_mail":
            raise AirflowFailException(f"step {self.step_id!r} is a {step.channel} step, not direct_mail")
        with self.connect() as conn:
            run_key = self.run_key(conn, context)
            excluded = exclude_withdrawn(conn, run_key, step)
            for reason, count in excluded.items():
                log.info("Excluded since targeting (%s): %s", reason, f"{count:,}")
            remaining = conn.execute(
                """
                SELECT count(*) FROM campaign.message
                WHERE run_key = %s AND step_id = %s AND status IN ('pending', 'sent') AND seq IS NOT NULL
                """,
                (run_key, step.id),
            ).fetchone()[0]
            if not remaining:
                raise AirflowSkipException(f"step {step.id} has nothing to export: no extract is written")
            dry_run = bool((context.get("params") or {}).get("dry_run"))
            if dry_run:
                from campaign_orchestrator.channels.dry_run import dry_run_folder

                # The extract goes to the dry-run folder, and its rows end 'rendered', not 'sent'.
                folder = dry_run_folder(self.paths.root, self.campaign_id, context["run_id"], step.id)
                step = step.model_copy(update={"destination": f"file://{folder}"})
            try:
                manifest = export_direct_mail(conn, run_key, self.campaign_id, context["run_id"], step, self.connect)
            except ExportConfigError as exc:  # a retry would fail the same way
                raise AirflowFailException(str(exc)) from exc
            if dry_run:
                conn.execute(
                    "UPDATE campaign.message SET status = 'rendered' "
                    "WHERE run_key = %s AND step_id = %s AND status = 'sent'",
                    (run_key, step.id),
                )
        return {
            "exported": manifest["rows"],
            "excluded_late": sum(excluded.values()),
            "files": len(manifest["files"]),
            "bytes": sum(f["bytes"] for f in manifest["files"]),
        }


__all__ = ["ExportDirectMailOperator"]
