-- Reports kept for inspection (campaign.unmatched_feedback), one row per distinct raw
-- message: reading the same mailbox message again after a crash adds nothing.
INSERT INTO campaign.unmatched_feedback
    (source, digest, reason, report_type, subject, report_from, message_id, raw)
SELECT *
FROM unnest(%(source)s::text[], %(digest)s::text[], %(reason)s::text[], %(report_type)s::text[],
            %(subject)s::text[], %(report_from)s::text[], %(message_id)s::text[], %(raw)s::bytea[])
ON CONFLICT (digest) DO NOTHING
RETURNING feedback_id
