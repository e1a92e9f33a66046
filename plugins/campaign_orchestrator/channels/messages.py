"""What identifies a campaign's message on every channel: the campaign it belongs to and the
ids derived from its ledger key.

Every id is a UUID 5 of the ledger key ``run_key:step_id:profile_id:entity_key`` under one
namespace fixed forever, so the same message gets the same id across retries, attempts and
resends (a copy sent again after an uncertain outcome is recognisable as the same message):
the email's Message-ID, the SMS and push message id, the webhook's Idempotency-Key.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Protocol

MESSAGE_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/campaign-orchestrator/message-id")
"""Fixed forever: ids of past runs must stay reproducible."""
_NAMESPACE_BYTES = MESSAGE_ID_NAMESPACE.bytes
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
"""First hex digit of the clock_seq field: its top two bits set to the RFC 4122 variant (10)."""


class CampaignInfo(Protocol):
    """What a renderer needs of its campaign: the template context's ``campaign``."""

    id: str
    description: str


def message_uuid(name: str) -> str:
    """``str(uuid.uuid5(MESSAGE_ID_NAMESPACE, name))``, a quarter of its cost: the same SHA-1
    of namespace and name, formatted without building a :class:`uuid.UUID`."""
    digits = hashlib.sha1(_NAMESPACE_BYTES + name.encode("utf-8")).hexdigest()
    # The first 16 bytes, with the version (5) in the 13th digit and the variant in the 17th.
    return (
        f"{digits[:8]}-{digits[8:12]}-5{digits[13:16]}-{_VARIANT[digits[16]]}{digits[17:20]}-{digits[20:32]}"
    )


def ledger_uuid(run_key: int, step_id: str, profile_id: int, entity_key: str) -> str:
    """The message's UUID: the SMS and push message id, the webhook's Idempotency-Key."""
    return message_uuid(f"{run_key}:{step_id}:{profile_id}:{entity_key}")


def email_message_id(run_key: int, step_id: str, profile_id: int, entity_key: str, domain: str) -> str:
    """The email's ``Message-ID``: ``<uuid@domain>``."""
    return f"<{ledger_uuid(run_key, step_id, profile_id, entity_key)}@{domain}>"


__all__ = ["MESSAGE_ID_NAMESPACE", "CampaignInfo", "email_message_id", "ledger_uuid", "message_uuid"]
