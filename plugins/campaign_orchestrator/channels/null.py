"""A transport that accepts every message and keeps nothing: for benchmarks only.

``make bench`` sends a whole campaign through the real pipeline (claim, re-check, render,
record in the ledger) with this sender in place of the provider, so the figures measure the
orchestrator rather than a mail server on the same two cores. It is not a channel a campaign
can choose; the benchmark hands it to :class:`~campaign_orchestrator.run.send.BatchSender`
instead of the step's own sender.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from campaign_orchestrator.channels.base import Outcome, Sender

if TYPE_CHECKING:
    from collections.abc import Sequence

    from campaign_orchestrator.channels.base import Outbound

_ACCEPTED = Outcome("sent")


class NullSender(Sender):
    """Accepts each message (outcome ``sent``) and discards it, counting messages and payload
    bytes so a benchmark can check everything rendered reached the transport."""

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0

    def send(self, messages: Sequence[Outbound]) -> list[Outcome]:
        for message in messages:
            payload = message.payload
            self.bytes += len(payload) if isinstance(payload, (bytes, str)) else 0
        self.messages += len(messages)
        return [_ACCEPTED] * len(messages)
