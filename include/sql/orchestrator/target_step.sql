-- Turn a run's audience into one ledger row per message of a step. Every member gets a
-- row: sendable ones status 'pending' with a dense seq (batches are seq ranges), excluded
-- ones status 'excluded' with the first reason that applies, in this order:
--   holdout (status 'held_out': the control group, recorded for lift), missing_address, the channel's address checks (invalid_address, …), opted_out,
--   no_consent, suppressed, duplicate_address
-- The channel's address expressions and checks are composed in from channels/registry.py
-- (the project's own SQL, never user input); values are bound parameters.
WITH member AS (
    SELECT m.profile_id,
           m.entity_key,
           {address} AS address,
           {normalized} AS normalized,
           {check_reason} AS check_reason,
           c.status AS consent,
           m.held_out
    FROM campaign.audience_member m
    JOIN crm.profile p ON p.profile_id = m.profile_id
    LEFT JOIN crm.consent c ON c.profile_id = m.profile_id AND c.channel = %(consent_channel)s
    WHERE m.run_key = %(run_key)s
      -- A step routed to a split segment targets that segment (and records the holdout).
      AND (%(segment)s::text IS NULL OR m.segment = %(segment)s OR m.held_out)
),
reasoned AS (
    SELECT member.*,
           CASE
               WHEN held_out THEN 'holdout'
               WHEN address IS NULL THEN 'missing_address'
               WHEN check_reason IS NOT NULL THEN check_reason
               WHEN %(needs_consent)s AND consent = 'opted_out' THEN 'opted_out'
               WHEN %(needs_opt_in)s AND consent IS DISTINCT FROM 'opted_in' THEN 'no_consent'
               WHEN EXISTS (
                   SELECT 1 FROM crm.suppression s
                   WHERE s.channel = %(suppression_channel)s AND s.address = member.normalized
                     AND (%(needs_consent)s OR s.reason IN ('hard_bounce', 'complaint', 'invalid'))
               ) THEN 'suppressed'
           END AS reason
    FROM member
),
deduplicated AS (
    -- Two profiles sharing an address: the lowest profile id keeps it. With one message per
    -- entity, a profile gets at most %(max_per_profile)s of them (lowest entity keys first).
    SELECT reasoned.*,
           CASE
               WHEN reason IS NULL
                AND dense_rank() OVER (PARTITION BY reason IS NULL, normalized ORDER BY profile_id) > 1
               THEN 'duplicate_address'
               WHEN reason IS NULL AND %(max_per_profile)s::integer IS NOT NULL
                AND row_number() OVER (PARTITION BY reason IS NULL, profile_id ORDER BY entity_key)
                    > %(max_per_profile)s::integer
               THEN 'max_messages_per_profile'
               ELSE reason
           END AS final_reason
    FROM reasoned
)
INSERT INTO campaign.message
    (run_key, step_id, profile_id, entity_key, campaign_id, channel, purpose, seq, address, status, reason)
SELECT %(run_key)s, %(step_id)s, profile_id, entity_key, %(campaign_id)s, %(channel)s, %(purpose)s,
       CASE WHEN final_reason IS NULL
            THEN row_number() OVER (PARTITION BY final_reason IS NULL ORDER BY profile_id, entity_key)
       END,
       address,
       CASE WHEN final_reason IS NULL THEN 'pending' WHEN final_reason = 'holdout' THEN 'held_out' ELSE 'excluded' END,
       final_reason
FROM deduplicated
ON CONFLICT DO NOTHING
