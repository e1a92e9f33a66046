"""The benchmarks' null transport: accepts every message, in order, and counts what it got."""

from __future__ import annotations

from campaign_orchestrator.channels.base import Outbound, Recipient
from campaign_orchestrator.channels.null import NullSender


def outbound(i: int, payload: bytes | str) -> Outbound:
    return Outbound(Recipient(i, "", f"user{i}@example.com", {}), payload, f"<{i}@bench.example>")


def test_every_message_is_accepted_in_order_and_counted() -> None:
    messages = [outbound(1, b"abc"), outbound(2, "hello"), outbound(3, {"json": "payload"})]
    with NullSender() as sender:
        first = sender.send(messages[:2])
        second = sender.send(messages[2:])
    assert [o.status for o in first + second] == ["sent", "sent", "sent"]
    assert sender.messages == 3
    assert sender.bytes == 3 + 5  # a dict payload (webhook JSON) has no byte length to count


def test_an_empty_chunk_gives_no_outcome() -> None:
    sender = NullSender()
    assert sender.send([]) == []
    assert (sender.messages, sender.bytes) == (0, 0)
