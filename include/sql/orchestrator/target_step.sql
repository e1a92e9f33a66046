-- Turn a run's audience into one ledger row per message of a step. Every member gets a
-- row: sendable ones status 'pending' with a dense seq (batches are seq ranges), the
-- control group status 'held_out', the others status 'excluded', each with the reason
-- target_reasoning.sql (composed in below) gives it.
INSERT INTO campaign.message
    (run_key, step_id, profile_id, entity_key, campaign_id, channel, purpose, seq, address, status, reason)
SELECT %(run_key)s, %(step_id)s, profile_id, entity_key, %(campaign_id)s, %(channel)s, %(purpose)s,
       -- The seq: the running count of the sendable rows in (profile, entity) order. Its sort
       -- also hands the rows to the ledger's primary key in the key's order.
       CASE WHEN final_reason IS NULL
            THEN count(*) FILTER (WHERE final_reason IS NULL)
                 OVER (ORDER BY profile_id, entity_key ROWS UNBOUNDED PRECEDING)
       END,
       address,
       CASE WHEN final_reason IS NULL THEN 'pending' WHEN final_reason = 'holdout' THEN 'held_out' ELSE 'excluded' END,
       final_reason
FROM ({reasoning}) AS targeted
-- No ON CONFLICT: a member is one row, and targeting.py runs this once per step under a lock
-- (speculative insertion was a fifth of the statement's time at 1,000,000 members).
