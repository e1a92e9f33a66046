"""The sender of a dry run: every rendered message becomes a file, nothing leaves the machine.

Files go to ``<folder>/<campaign>/<run>/<step>/<profile>[-<entity>].<ext>`` — ``.eml`` for
email (open it in any mail client), ``.txt`` for SMS, ``.json`` for push and webhooks.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from campaign_orchestrator.channels.base import Outcome, Sender

if TYPE_CHECKING:
    from collections.abc import Sequence

    from campaign_orchestrator.channels.base import Outbound

DRY_RUN_DIR_ENV = "CAMPAIGNS_DRY_RUN_DIR"


def dry_run_folder(root: Path, campaign_id: str, run_id: str, step_id: str) -> Path:
    base = Path(os.environ.get(DRY_RUN_DIR_ENV) or root / ".out" / "dry-runs")
    return base / campaign_id / re.sub(r"[^A-Za-z0-9_.-]", "_", run_id) / step_id


class FileSender(Sender):
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)

    def send(self, messages: Sequence[Outbound]) -> list[Outcome]:
        outcomes = []
        for message in messages:
            recipient = message.recipient
            stem = str(recipient.profile_id) + (f"-{recipient.entity_key}" if recipient.entity_key else "")
            stem = re.sub(r"[^A-Za-z0-9_.-]", "_", stem)
            payload = message.payload
            if isinstance(payload, bytes):
                path, data = self.folder / f"{stem}.eml", payload
            elif isinstance(payload, str):
                path, data = self.folder / f"{stem}.txt", f"To: {recipient.address}\n\n{payload}\n".encode()
            else:
                body = {"to": recipient.address, "payload": payload}
                path, data = self.folder / f"{stem}.json", json.dumps(body, indent=2, default=str).encode()
            path.write_bytes(data)
            outcomes.append(Outcome("sent", provider_message_id=f"dry-run:{path}"))
        return outcomes
