-- Claim the next chunk of a batch for sending, re-checking consent and suppression at send
-- time: a profile that opted out (or an address suppressed) after the audience was built is
-- excluded here instead of claimed. FOR UPDATE SKIP LOCKED keeps concurrent claimers apart.
-- Quiet hours in the recipient's time zone (the composed quiet-hours expression is true inside them, at the bound now): a
-- message whose rule defers is left pending for a later attempt; one that discards is
-- excluded as quiet_hours. A message with a not_before still ahead is left pending too.
WITH candidate AS (
    SELECT m.ctid AS row_id, m.profile_id, m.entity_key{profile_fields},
           CASE
               WHEN %(needs_consent)s AND c.status = 'opted_out' THEN 'consent_withdrawn'
               WHEN %(needs_opt_in)s AND c.status IS DISTINCT FROM 'opted_in' THEN 'consent_withdrawn'
               WHEN EXISTS (
                   SELECT 1 FROM crm.suppression s
                   WHERE s.channel = %(suppression_channel)s AND s.address = {normalized}
                     AND (%(needs_consent)s OR s.reason IN ('hard_bounce', 'complaint', 'invalid'))
               ) THEN 'suppressed_during_run'
               WHEN %(quiet_discard)s AND {quiet} THEN 'quiet_hours'
           END AS late_reason
    FROM campaign.message m
    JOIN crm.profile p ON p.profile_id = m.profile_id
    LEFT JOIN crm.consent c ON c.profile_id = m.profile_id AND c.channel = %(consent_channel)s
    -- lo moves past each claimed chunk (run/send.py): the index scan starts at the next
    -- unclaimed seq instead of stepping over the batch's settled rows, one heap visit each.
    WHERE m.run_key = %(run_key)s AND m.step_id = %(step_id)s
      AND m.seq BETWEEN %(lo)s AND %(hi)s AND m.status = 'pending'
      -- Timed by a wait until the recipient's local time of day: not before then.
      AND (m.not_before IS NULL OR m.not_before <= %(now)s)
      AND NOT (%(quiet_defer)s AND {quiet})
    ORDER BY m.seq
    LIMIT %(chunk)s
    FOR UPDATE OF m SKIP LOCKED
),
claimed AS (
    UPDATE campaign.message m
    SET status = CASE WHEN candidate.late_reason IS NULL THEN 'sending' ELSE 'excluded' END,
        reason = candidate.late_reason,
        attempts = m.attempts + (candidate.late_reason IS NULL)::int,
        claimed_at = now(),
        updated_at = now()
    FROM candidate
    -- The rows just locked, by physical address: a TID scan whatever the statistics say.
    WHERE m.ctid = candidate.row_id
    -- The profile fields the templates read come from the candidate's join: no second lookup.
    RETURNING m.profile_id, m.entity_key, m.address, m.seq, m.status{claimed_fields}
)
SELECT claimed.profile_id, claimed.entity_key, claimed.address, claimed.status, claimed.seq{returned_fields}
FROM claimed
ORDER BY claimed.seq
