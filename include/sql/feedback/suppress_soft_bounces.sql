-- The soft-bounce threshold: an address whose soft bounce was just ingested is suppressed
-- ('soft_bounce') once it has soft-bounced on at least %(threshold)s distinct messages within
-- %(within)s of their arrival (received_at: a report's own date may be anything). Messages, not events: a relay reporting each retry of one message counts once.
-- Run in the transaction that inserted the bounces, for their addresses only, so a
-- suppression lifted by hand stays lifted until the address soft-bounces again.
-- Counted on delivery_event_soft_bounce_idx (migration 0015).
INSERT INTO crm.suppression (channel, address, reason, source)
SELECT 'email', a.address, 'soft_bounce', %(source)s
FROM unnest(%(addresses)s::text[]) AS a(address)
WHERE (
    SELECT count(DISTINCT d.provider_message_id)
    FROM campaign.delivery_event d
    WHERE lower(btrim(d.detail ->> 'recipient')) = a.address
      AND d.event_type = 'bounced' AND d.bounce_type = 'Transient'
      AND d.channel = 'email'
      AND d.received_at >= now() - %(within)s::interval
) >= %(threshold)s
ON CONFLICT (channel, address) DO NOTHING
RETURNING address
